"""Areas: a rectangle (level 0), a triangle with its height dashed (1), a trapezoid or a circle in terms
of π (2) and a right triangle from its hypotenuse and a leg (3)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction

from mmdps.tasks.geometry_procedural.drawing import Figure, centroid, mul, polar
from mmdps.tasks.geometry_procedural.exact import Exact, format_number
from mmdps.tasks.geometry_procedural.families.common import (
    NAMES4,
    Builder,
    Problem,
    Value,
    circle_of_random_radius,
    label_polygon,
    labelled_radius,
    labelled_rectangle,
    named_figure,
    random_orientation,
    right_triangle,
    triple,
)


def _mirrored(fig: Figure, rng: random.Random, question: str, answer: Exact, wrong: Sequence[Value], variant: str
              ) -> Problem:
    fig.mirror = rng.random() < 0.5
    return Problem(fig, question, answer, wrong, variant)


def rectangle(rng: random.Random) -> Problem:
    fig, names = named_figure(rng, NAMES4)
    w, h = rng.randint(4, 20), rng.randint(3, 14)
    if w == h:
        w += 2
    labelled_rectangle(fig, names, w, h)
    question = f"Rectangle {names} has sides {w} and {h}, as shown. Find its area."
    wrong = [2 * (w + h), w * h // 2 or 1, w * h + w, (w + h) ** 2 // 2]
    return _mirrored(fig, rng, question, Exact.of(w * h), wrong, "rectangle_area")


def triangle_with_height(rng: random.Random) -> Problem:
    fig, names = named_figure(rng, NAMES4)
    base, height = rng.randint(5, 20), rng.randint(4, 14)
    if base * height % 2:
        base += 1
    apex_x = base * rng.uniform(0.2, 0.8)
    pa, pb, pc = (0.0, 0.0), (float(base), 0.0), (apex_x, float(height))
    foot = (apex_x, 0.0)
    fig.polygon([pa, pb, pc])
    fig.segment(pc, foot, dashed=True)
    fig.right_angle(foot, pb, pc)
    label_polygon(fig, names[:3], [pa, pb, pc])
    fig.side_label(format_number(base), pa, pb, pc)
    fig.side_label(format_number(height), pc, foot, pb if apex_x < base / 2 else pa)
    question = f"Find the area of triangle {names[:3]}. The dashed segment is its height."
    wrong: list[Value] = [base * height, base + height, Fraction(base * height, 4)]
    return _mirrored(fig, rng, question, Exact.of(Fraction(base * height, 2)), wrong, "triangle_area")


def trapezoid_or_circle(rng: random.Random) -> Problem:
    fig, names = named_figure(rng, NAMES4)
    return _circle(fig, rng) if rng.random() < 0.5 else _trapezoid(fig, rng, names)


def _circle(fig: Figure, rng: random.Random) -> Problem:
    """The area of a circle from its radius or diameter, in terms of π."""
    r, edge, edge_deg = circle_of_random_radius(fig, rng)
    if rng.random() < 0.5:  # a diameter; no center label, which would sit on the length label
        fig.segment(mul(edge, -1), edge)
        fig.side_label(format_number(2 * r), mul(edge, -1), edge, polar(1.0, edge_deg - 90))
        question = ("The marked segment is a diameter of the circle. "
                    "Find the area of the circle. Give your answer in terms of π.")
    else:
        labelled_radius(fig, r, edge, edge_deg)
        question = ("The marked segment is a radius of the circle with center O. "
                    "Find the area of the circle. Give your answer in terms of π.")
    wrong = [Exact(Fraction(2 * r), pi=True), Exact(Fraction(4 * r * r), pi=True), Exact(Fraction(r), pi=True),
             Exact(Fraction(r * r, 2), pi=True)]
    return _mirrored(fig, rng, question, Exact(Fraction(r * r), pi=True), wrong, "circle_area")


def _trapezoid(fig: Figure, rng: random.Random, names: str) -> Problem:
    bottom, top, height = rng.randint(8, 20), rng.randint(3, 12), rng.randint(3, 12)
    if top >= bottom:
        top = bottom - rng.randint(2, 5)
    if (bottom + top) * height % 2:
        height += 1
    right_trapezoid = rng.random() < 0.3
    shift = 0.0 if right_trapezoid else rng.uniform(0.2, 0.8) * (bottom - top)
    pts = [(0.0, 0.0), (float(bottom), 0.0), (shift + top, float(height)), (shift, float(height))]
    fig.polygon(pts)
    center = centroid(pts)
    label_polygon(fig, names, pts)
    fig.side_label(format_number(bottom), pts[0], pts[1], center)
    fig.side_label(format_number(top), pts[2], pts[3], center)
    if right_trapezoid:  # the perpendicular side is the height
        fig.right_angle(pts[0], pts[1], pts[3])
        fig.right_angle(pts[3], pts[0], pts[2])
        fig.side_label(format_number(height), pts[3], pts[0], center)
        where = f"Side {names[3]}{names[0]} is perpendicular to both bases."
    else:  # dashed height dropped from the top-left vertex, which lies over the base
        foot = (shift, 0.0)
        fig.segment(pts[3], foot, dashed=True)
        fig.right_angle(foot, pts[1], pts[3])
        fig.side_label(format_number(height), pts[3], foot, pts[0])
        where = "The dashed segment is its height."
    question = (f"{names} is a trapezoid with {names[0]}{names[1]} parallel to {names[3]}{names[2]}. "
                f"{where} Find its area.")
    area = Fraction((bottom + top) * height, 2)
    wrong = [(bottom + top) * height, bottom * height, bottom + top + height]
    return _mirrored(fig, rng, question, Exact.of(area), wrong, "trapezoid_area")


def right_triangle_area(rng: random.Random) -> Problem:
    """The other leg comes from the hypotenuse and one leg (a Pythagorean triple) first."""
    fig, names = named_figure(rng, NAMES4)
    leg, other, hyp = triple(rng, 30)
    (pa, pb, pc), center = right_triangle(fig, names[:3], leg, other)
    fig.side_label(format_number(leg), pb, pc, center)
    fig.side_label(format_number(hyp), pa, pb, center)
    question = f"Triangle {names[:3]} has a right angle at {names[2]}. Find its area."
    wrong: list[Value] = [Fraction(leg * hyp, 2), leg * other, Fraction(leg * other, 2) + leg, Fraction(hyp * other, 2)]
    random_orientation(fig, rng)
    return Problem(fig, question, Exact.of(Fraction(leg * other, 2)), wrong, "right_triangle_area")


LEVELS: dict[int, Builder] = {0: rectangle, 1: triangle_with_height, 2: trapezoid_or_circle, 3: right_triangle_area}
