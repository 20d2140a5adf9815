"""Right triangles: the hypotenuse (level 0) or a leg (1) by Pythagoras, 30°/45°/60° triangles with exact
surd sides (2) and two right triangles sharing an altitude (3)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from fractions import Fraction

from mmdps.tasks.geometry_procedural.drawing import Figure, Point, centroid
from mmdps.tasks.geometry_procedural.exact import Exact, format_number
from mmdps.tasks.geometry_procedural.families.common import (
    NAMES3,
    TRIPLES,
    Builder,
    Problem,
    Value,
    deg,
    named_figure,
    random_orientation,
    right_triangle,
    triple,
)


class _Triangle:
    """Right triangle ABC (printed with ``names``), right angle at C, sides labelled by their ABC names."""

    def __init__(self, fig: Figure, names: str, leg_a: float, leg_b: float) -> None:
        self.fig, self.names = fig, names
        self.points, self.center = right_triangle(fig, names, leg_a, leg_b)
        pa, pb, pc = self.points
        self.sides: dict[str, tuple[Point, Point]] = {"BC": (pb, pc), "CA": (pc, pa), "AB": (pa, pb)}

    def label(self, side: str, text: str) -> None:
        self.fig.side_label(text, *self.sides[side], self.center)

    def side_name(self, side: str) -> str:
        return "".join(self.names["ABC".index(ch)] for ch in side)

    def problem(self, rng: random.Random, question: str, answer: Exact, wrong: Sequence[Value], variant: str
                ) -> Problem:
        random_orientation(self.fig, rng)
        return Problem(self.fig, question, answer, wrong, variant)


def hypotenuse(rng: random.Random) -> Problem:
    """Both legs given (also in the text)."""
    fig, names = named_figure(rng, NAMES3)
    a, b, c = triple(rng, 40)
    tri = _Triangle(fig, names, a, b)
    tri.label("BC", format_number(a))
    tri.label("CA", format_number(b))
    tri.label("AB", "x")
    question = (f"Triangle {names} has a right angle at {names[2]}, {tri.side_name('BC')} = {a} and "
                f"{tri.side_name('CA')} = {b}. Find x, the length of {tri.side_name('AB')}.")
    wrong: list[Value] = [a + b, Exact.surd(1, abs(a * a - b * b)) if a != b else c + 2, c + 1, c - 2]
    return tri.problem(rng, question, Exact.of(c), wrong, "pythagoras_hypotenuse")


def leg(rng: random.Random) -> Problem:
    """A leg from the other leg and the hypotenuse."""
    fig, names = named_figure(rng, NAMES3)
    a, b, c = triple(rng, 40)
    tri = _Triangle(fig, names, a, b)
    tri.label("BC", format_number(a))
    tri.label("AB", format_number(c))
    tri.label("CA", "x")
    question = f"Triangle {names} has a right angle at {names[2]}. Find x, the length of {tri.side_name('CA')}."
    wrong: list[Value] = [Exact.surd(1, a * a + c * c), c - a, b + 2, b - 1 if b > 2 else b + 3]
    return tri.problem(rng, question, Exact.of(b), wrong, "pythagoras_leg")


def special_angle(rng: random.Random) -> Problem:
    """A 30°, 45° or 60° right triangle: one side given, another asked, as an exact surd."""
    fig, names = named_figure(rng, NAMES3)
    special = rng.choice([30, 45, 60])
    opposite, adjacent = math.sin(math.radians(special)), math.cos(math.radians(special))
    tri = _Triangle(fig, names, opposite, adjacent)  # angle at A is `special`
    pa, pb, pc = tri.points
    fig.angle(pa, pb, pc, deg(special))
    given, asked = rng.sample(["BC", "CA", "AB"], 2)
    lengths = _special_sides(special)
    per_unit = _div_surd(lengths[asked], lengths[given], Fraction(1))
    given_length = rng.randint(2, 9) * per_unit.coef.denominator  # keeps the answer free of fractions
    given_value = Exact(Fraction(given_length))
    answer = per_unit.scaled(given_length)
    tri.label(given, format_number(given_value.coef))
    tri.label(asked, "x")
    question = (f"Triangle {names} has a right angle at {names[2]} and angle {names[0]} = {special}°. "
                f"Find x, the length of {tri.side_name(asked)}. Give an exact answer.")
    return tri.problem(rng, question, answer, _special_distractors(answer, given_value), f"special_{special}")


def _special_sides(angle: int) -> dict[str, Exact]:
    """Side lengths (hypotenuse AB = 1) of a right triangle with angle A = ``angle`` and the right angle at C."""
    half, root3_half, root2_half = Exact(Fraction(1, 2)), Exact(Fraction(1, 2), 3), Exact(Fraction(1, 2), 2)
    one = Exact(Fraction(1))
    if angle == 30:
        return {"BC": half, "CA": root3_half, "AB": one}
    if angle == 60:
        return {"BC": root3_half, "CA": half, "AB": one}
    return {"BC": root2_half, "CA": root2_half, "AB": one}


def _div_surd(asked: Exact, given: Exact, given_length: Fraction) -> Exact:
    """``asked / given * given_length`` for surds whose radicands are 1 or one prime p."""
    coef = asked.coef / given.coef * given_length
    if asked.radicand == given.radicand:
        return Exact(coef)
    if given.radicand == 1:
        return Exact(coef, asked.radicand)
    if asked.radicand == 1:  # divide by sqrt(p) -> multiply by sqrt(p) / p
        return Exact(coef / given.radicand, given.radicand)
    return Exact.surd(coef / given.radicand, asked.radicand * given.radicand)


def _special_distractors(answer: Exact, given: Exact) -> list[Exact]:
    out = [Exact(answer.coef, 3 if answer.radicand != 3 else 2), Exact(answer.coef * answer.radicand),
           given.scaled(2), Exact(answer.coef * 2, answer.radicand)]
    if answer.radicand != 1:
        out.insert(1, Exact(answer.coef))
    return out


def shared_altitude(rng: random.Random) -> Problem:
    """BD is perpendicular to AC; AB and AD give BD (Pythagoras), then DC gives BC."""
    rng.choice(NAMES3)  # drawn at every level (this one prints no names), so that a seed keeps its problem
    fig = Figure()
    by_leg: dict[int, list[tuple[int, int]]] = {}
    for leg_a, leg_b, hyp in TRIPLES:
        by_leg.setdefault(leg_a, []).append((leg_b, hyp))
        by_leg.setdefault(leg_b, []).append((leg_a, hyp))
    shared = rng.choice(sorted(leg for leg, options in by_leg.items() if len(options) >= 2 and leg <= 24))
    (ad, ab), (dc, bc) = rng.sample(by_leg[shared], 2)
    d, b = (0.0, 0.0), (0.0, float(shared))
    a, c = (-float(ad), 0.0), (float(dc), 0.0)
    fig.polygon([a, b, c])
    fig.segment(b, d)
    fig.right_angle(d, c, b)
    center = centroid([a, b, c])
    for name, p in (("A", a), ("B", b), ("C", c)):
        fig.point_label(name, p, center)
    fig.point_label("D", d, b)
    fig.dot(d)
    fig.side_label(format_number(ab), a, b, c)
    fig.side_label(format_number(ad), a, d, b)
    fig.side_label(format_number(dc), d, c, b)
    fig.side_label("x", b, c, a)
    fig.mirror = rng.random() < 0.5
    fig.rotation = rng.uniform(-15, 15)
    question = "In triangle ABC, BD is perpendicular to AC. Find x, the length of BC."
    wrong: list[Value] = [Exact.surd(1, ab * ab + dc * dc), ab + dc - ad,
                          Exact.surd(1, abs(dc * dc - shared * shared) or 2), bc + 2]
    return Problem(fig, question, Exact.of(bc), wrong, "shared_altitude",
                   meta={"BD": shared, "AB": ab, "AD": ad, "DC": dc})


LEVELS: dict[int, Builder] = {0: hypotenuse, 1: leg, 2: special_angle, 3: shared_altitude}
