"""Chords: a chord perpendicular to a radius gives a right triangle with the radius and the distance
from the center (chord length at level 0, distance at 1, radius or a surd chord length at 2), and two
intersecting chords satisfy AE * EB = CE * ED (3)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from fractions import Fraction

from mmdps.tasks.geometry_procedural.drawing import Figure, Label, Point, add, midpoint, mul, polar, sub, unit_vector
from mmdps.tasks.geometry_procedural.exact import Exact, format_number
from mmdps.tasks.geometry_procedural.families.common import ORIGIN, Builder, Problem, Value, triple


def _turn(rng: random.Random) -> float:
    # every level draws the turn first (level 3 does not use it), so that a seed keeps its problem
    return rng.uniform(0, 360)


def _chord_figure(turn: float, radius: int, dist: int, half_length: float
                  ) -> tuple[Figure, tuple[Point, Point, Point]]:
    """Unit circle O with chord AB at distance ``dist`` of ``radius`` from O, OM perpendicular to it and
    radius OA drawn; return the figure, A, B and M."""
    fig = Figure()
    o = ORIGIN
    scale = 1.0 / radius
    fig.circle(o, 1.0)
    m = polar(dist * scale, turn)
    along = polar(half_length * scale, turn + 90)
    pa, pb = add(m, along), sub(m, along)
    fig.segment(pa, pb)
    fig.segment(o, m, dashed=False)
    fig.segment(o, pa)
    fig.right_angle(m, pa, o)
    for name, p in (("A", pa), ("B", pb)):
        fig.point_label(name, p, o)
        fig.dot(p)
    fig.dot(o)
    fig.dot(m)
    fig.point_label("O", o, m)
    # M goes in the unmarked right angle BMO, clear of the chord's own length label
    fig.labels.append(Label("M", m, add(unit_vector(sub(pb, m)), unit_vector(sub(o, m))), gap=4.0, spread=30.0))
    return fig, (pa, pb, m)


def _whole_chord(rng: random.Random, turn: float) -> tuple[Figure, tuple[Point, Point, Point], tuple[int, int, int]]:
    """The chord figure for a Pythagorean triple (half-chord, distance, radius); return it, A, B, M and the triple."""
    half, dist, radius = triple(rng)
    return (*_chord_figure(turn, radius, dist, half), (half, dist, radius))


def _problem(fig: Figure, rng: random.Random, question: str, answer: Exact, wrong: Sequence[Value], variant: str,
             radius: int, dist: int) -> Problem:
    fig.mirror = rng.random() < 0.5
    return Problem(fig, question, answer, wrong, variant, meta={"radius": radius, "distance": dist})


def chord_length(rng: random.Random) -> Problem:
    """Chord AB from the radius and the distance OM (a Pythagorean triple), both also in the text."""
    fig, (pa, pb, m), (half, dist, radius) = _whole_chord(rng, _turn(rng))
    chord = 2 * half
    fig.side_label(format_number(radius), ORIGIN, pa, pb)
    fig.side_label(format_number(dist), ORIGIN, m, pa)
    question = (f"In circle O, OM is perpendicular to chord AB, OA = {radius} and OM = {dist}. "
                "Find the length of chord AB.")
    wrong = [half, radius + dist, 2 * radius, 2 * (radius - dist) or 1]
    return _problem(fig, rng, question, Exact.of(chord), wrong, "chord_length", radius, dist)


def chord_distance(rng: random.Random) -> Problem:
    """The distance OM from the radius and the chord."""
    fig, (pa, pb, m), (half, dist, radius) = _whole_chord(rng, _turn(rng))
    chord = 2 * half
    fig.side_label(format_number(radius), ORIGIN, pa, pb)
    fig.side_label(format_number(chord), pa, pb, ORIGIN)
    question = "In circle O, OM is perpendicular to chord AB. Find the distance OM."
    wrong = [half, radius - half // 2 or 1, chord - radius, radius + 1]
    return _problem(fig, rng, question, Exact.of(dist), wrong, "chord_distance", radius, dist)


def chord_radius_or_surd(rng: random.Random) -> Problem:
    """The radius from the chord and OM, or (half the time) a chord whose length is a surd like ``4\\sqrt{5}``."""
    turn = _turn(rng)
    wrong: list[Value]
    if rng.random() < 0.5:
        fig, (pa, pb, m), (half, dist, radius) = _whole_chord(rng, turn)
        chord = 2 * half
        fig.side_label(format_number(chord), pa, pb, ORIGIN)
        fig.side_label(format_number(dist), ORIGIN, m, pa)
        question = "In circle O, OM is perpendicular to chord AB. Find the radius of the circle."
        answer = Exact.of(radius)
        wrong = [chord, half + dist, Exact.surd(1, chord * chord + dist * dist), dist + 2]
        return _problem(fig, rng, question, answer, wrong, "chord_radius", radius, dist)
    radius, dist = rng.choice([(r, d) for r in range(3, 13) for d in range(1, r)
                               if math.isqrt(r * r - d * d) ** 2 != r * r - d * d])
    fig, (pa, pb, m) = _chord_figure(turn, radius, dist, math.sqrt(radius * radius - dist * dist))
    fig.side_label(format_number(radius), ORIGIN, pa, pb)
    fig.side_label(format_number(dist), ORIGIN, m, pa)
    rad = radius * radius - dist * dist
    question = ("In circle O, OM is perpendicular to chord AB. Find the exact length of chord AB "
                "(simplify any square root).")
    answer = Exact.surd(2, rad)
    wrong = [Exact.surd(1, rad), Exact.surd(2, radius * radius + dist * dist), 2 * (radius - dist), Exact.surd(4, rad)]
    return _problem(fig, rng, question, answer, wrong, "chord_length_surd", radius, dist)


def intersecting_chords(rng: random.Random) -> Problem:
    """Intersecting chords AB and CD at E, drawn exactly to the lengths: AE * EB = CE * ED."""
    _turn(rng)
    fig = Figure()
    while True:
        product = rng.choice([12, 18, 20, 24, 28, 30, 36, 40, 42, 48])
        pairs = [(a, product // a) for a in range(2, product) if product % a == 0 and a <= product // a * 3
                 and product // a <= a * 3]
        if len(pairs) >= 2:
            (ae, eb), (ce, ed) = rng.sample(pairs, 2)
            break
    p = max(abs(eb - ae), abs(ed - ce)) / 2 + rng.uniform(0.6, 1.6)
    radius = math.sqrt(ae * eb + p * p)
    e = (p, 0.0)
    # A chord through E with direction u has E-segments t satisfying t^2 + 2 t (E.u) - (R^2 - p^2) = 0.
    alpha = math.degrees(math.acos((ae - eb) / (2 * p)))   # direction E->B is u; then |EA| - |EB| = 2 E.u
    beta = math.degrees(math.acos((ce - ed) / (2 * p)))
    if rng.random() < 0.5:
        beta = -beta
    if abs(((alpha - beta) + 180) % 360 - 180) < 35 or abs(((alpha - beta) + 360) % 180) < 35:
        beta = -beta
    u, v = polar(1.0, alpha), polar(1.0, beta)
    pb, pa = add(e, mul(u, eb)), sub(e, mul(u, ae))
    pd, pc = add(e, mul(v, ed)), sub(e, mul(v, ce))
    o = ORIGIN
    fig.circle(o, radius)
    fig.segment(pa, pb)
    fig.segment(pc, pd)
    for name, q in zip("ABCD", (pa, pb, pc, pd), strict=True):
        fig.point_label(name, q, o)
        fig.dot(q)
    fig.dot(e)
    fig.point_label("E", e, midpoint(pa, pc), gap=6)
    fig.side_label(format_number(ae), pa, e, pc)
    fig.side_label(format_number(eb), e, pb, pd)
    fig.side_label(format_number(ce), pc, e, pb)
    fig.side_label("x", e, pd, pa)
    fig.rotation = rng.uniform(0, 360)
    fig.mirror = rng.random() < 0.5
    question = "Chords AB and CD intersect at E. Find x, the length of ED."
    wrong: list[Value] = [Fraction(ae * ce, eb), ae + eb - ce, Fraction(eb * ce, ae), ed + 2]
    return Problem(fig, question, Exact.of(ed), wrong, "intersecting_chords_length",
                   meta={"segments": [ae, eb, ce, ed]})


LEVELS: dict[int, Builder] = {0: chord_length, 1: chord_distance, 2: chord_radius_or_surd, 3: intersecting_chords}
