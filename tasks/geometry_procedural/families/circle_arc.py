"""Circle arcs and inscribed angles: inscribed and central angle (level 0), the angle in a semicircle (1),
a cyclic quadrilateral (2) and the angle between two chords from the arcs they cut off (3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from mmdps.tasks.geometry_procedural.drawing import Figure, Point, add, midpoint, mul, polar, sub
from mmdps.tasks.geometry_procedural.exact import Exact
from mmdps.tasks.geometry_procedural.families.common import NAMES4, ORIGIN, Builder, Problem, Value, deg


class _UnitCircle:
    """A unit circle about O, turned by a random angle; ``on(deg)`` is the point at ``deg`` degrees."""

    def __init__(self, rng: random.Random) -> None:
        self.fig = Figure()
        self.fig.circle(ORIGIN, 1.0)
        self.turn = rng.uniform(0, 360)

    def on(self, degrees: float) -> Point:
        return polar(1.0, degrees + self.turn)

    def problem(self, rng: random.Random, question: str, answer: int, wrong: Sequence[Value], variant: str,
                upper: float) -> Problem:
        self.fig.mirror = rng.random() < 0.5
        return Problem(self.fig, question, Exact.of(answer), wrong, variant, upper=upper)


def inscribed_and_central(rng: random.Random) -> Problem:
    """Inscribed angle ACB from central angle AOB, or the other way round."""
    circle = _UnitCircle(rng)
    fig, on, o = circle.fig, circle.on, ORIGIN
    central = rng.randrange(60, 161, 2)
    pa, pb = on(0), on(central)
    pc = on(central + (360 - central) / 2 + rng.uniform(-0.25, 0.25) * (360 - central))
    for p in (pa, pb, pc):
        fig.dot(p)
    fig.dot(o)
    fig.segment(o, pa)
    fig.segment(o, pb)
    fig.segment(pc, pa)
    fig.segment(pc, pb)
    for name, p in zip("ABC", (pa, pb, pc), strict=True):
        fig.point_label(name, p, o)
    fig.point_label("O", o, midpoint(pa, pb))
    wrong: list[Value]
    if rng.random() < 0.5:
        fig.angle(o, pa, pb, deg(central))
        fig.angle(pc, pa, pb, "x°")
        question = (f"O is the center of the circle and central angle AOB = {central}°. "
                    f"Find x, the measure of inscribed angle ACB.")
        answer, wrong = central // 2, [central, 180 - central, 90 - central // 2]
        variant = "inscribed_from_central"
    else:
        fig.angle(o, pa, pb, "x°")
        fig.angle(pc, pa, pb, deg(central // 2))
        question = (f"O is the center of the circle and inscribed angle ACB = {central // 2}°. "
                    f"Find x, the measure of central angle AOB.")
        answer, wrong = central, [central // 2, 180 - central // 2, 360 - central]
        variant = "central_from_inscribed"
    return circle.problem(rng, question, answer, wrong, variant, upper=360)


def semicircle(rng: random.Random) -> Problem:
    """AB a diameter: angle ABC from angle BAC (the angle at C is right)."""
    circle = _UnitCircle(rng)
    fig, on, o = circle.fig, circle.on, ORIGIN
    a = rng.randint(20, 70)
    pa, pb = on(0), on(180)
    pc = on(180 + 2 * a) if rng.random() < 0.5 else on(180 - 2 * a)  # angle CAB = a
    fig.polygon([pa, pb, pc])
    fig.dot(o)
    fig.point_label("O", o, pc)
    for name, p in zip("ABC", (pa, pb, pc), strict=True):
        fig.point_label(name, p, o)
    fig.angle(pa, pb, pc, deg(a))
    fig.angle(pb, pa, pc, "x°")
    question = "AB is a diameter of the circle with center O. Find x, the measure of angle ABC in degrees."
    return circle.problem(rng, question, 90 - a, [a, 180 - a, 2 * a, 90 + a], "angle_in_semicircle", upper=180)


def cyclic_quadrilateral(rng: random.Random) -> Problem:
    """Opposite angles of an inscribed quadrilateral add up to 180°."""
    circle = _UnitCircle(rng)
    fig, on, o = circle.fig, circle.on, ORIGIN
    angle_a = rng.randint(60, 120)
    names = rng.choice(NAMES4)
    start = 0.0
    b_deg, d_deg = start, start + 2 * angle_a  # arc B->C->D, not containing A, is 2 * angle A
    c_deg = b_deg + rng.uniform(0.35, 0.65) * 2 * angle_a
    a_deg = d_deg + rng.uniform(0.35, 0.65) * (360 - 2 * angle_a)
    points = [on(a_deg), on(b_deg), on(c_deg), on(d_deg)]
    fig.polygon(points)
    for name, p in zip(names, points, strict=True):
        fig.point_label(name, p, o)
        fig.dot(p)
    fig.angle(points[0], points[1], points[3], deg(angle_a))
    fig.angle(points[2], points[3], points[1], "x°")
    question = (f"Quadrilateral {names} is inscribed in the circle. "
                f"Find x, the measure of angle {names[2]} in degrees.")
    return circle.problem(rng, question, 180 - angle_a, [angle_a, 360 - 2 * angle_a, abs(90 - angle_a) or 45],
                          "cyclic_quadrilateral", upper=180)


def _intersect(p1: Point, p2: Point, p3: Point, p4: Point) -> Point:
    """Where line p1p2 meets line p3p4."""
    d1, d2 = sub(p2, p1), sub(p4, p3)
    denom = d1[0] * d2[1] - d1[1] * d2[0]
    t = ((p3[0] - p1[0]) * d2[1] - (p3[1] - p1[1]) * d2[0]) / denom
    return add(p1, mul(d1, t))


def chord_angle(rng: random.Random) -> Problem:
    """Chords AC and BD meet at E: angle AEB is half the sum of arcs AB and CD."""
    circle = _UnitCircle(rng)
    fig, on, o = circle.fig, circle.on, ORIGIN
    while True:
        arc_ab, arc_cd = rng.randint(50, 130), rng.randint(40, 120)
        rest = 360 - arc_ab - arc_cd
        if (arc_ab + arc_cd) % 2 == 0 and rest >= 100:
            break
    arc_bc = rng.randint(45, rest - 45)
    a_deg, b_deg = 0.0, float(arc_ab)
    c_deg, d_deg = b_deg + arc_bc, b_deg + arc_bc + arc_cd
    pa, pb, pc, pd = on(a_deg), on(b_deg), on(c_deg), on(d_deg)
    e = _intersect(pa, pc, pb, pd)
    fig.segment(pa, pc)
    fig.segment(pb, pd)
    for name, p in zip("ABCD", (pa, pb, pc, pd), strict=True):
        fig.point_label(name, p, o)
        fig.dot(p)
    fig.dot(e)
    fig.point_label("E", e, midpoint(pa, pb), gap=6)
    fig.free_label(deg(arc_ab), on(arc_ab / 2), on(arc_ab / 2), gap=5, spread=15)
    fig.free_label(deg(arc_cd), on(c_deg + arc_cd / 2), on(c_deg + arc_cd / 2), gap=5, spread=15)
    fig.angle(e, pa, pb, "x°")
    question = ("Chords AC and BD intersect at E. The measures of arcs AB and CD are shown. "
                "Find x, the measure of angle AEB in degrees.")
    answer = (arc_ab + arc_cd) // 2
    wrong = [abs(arc_ab - arc_cd) // 2 or 15, arc_ab + arc_cd, 180 - answer, arc_ab]
    return circle.problem(rng, question, answer, wrong, "intersecting_chords_angle", upper=180)


LEVELS: dict[int, Builder] = {0: inscribed_and_central, 1: semicircle, 2: cyclic_quadrilateral, 3: chord_angle}
