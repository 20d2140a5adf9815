"""Triangle angles: the angle sum (level 0), an exterior angle (1), an isosceles triangle marked with
ticks (2) and angles given as expressions in x (3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from mmdps.tasks.geometry_procedural.drawing import Figure, add, centroid, mul, sub, unit_vector
from mmdps.tasks.geometry_procedural.exact import Exact
from mmdps.tasks.geometry_procedural.families.common import (
    NAMES3,
    Builder,
    Problem,
    Value,
    angle_label,
    deg,
    label_polygon,
    named_figure,
    random_orientation,
    triangle,
)


def _triangle_angles(rng: random.Random, lo: int = 30, hi: int = 105) -> tuple[int, int, int]:
    while True:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        c = 180 - a - b
        if lo <= c <= hi + 5:
            return a, b, c


def _problem(fig: Figure, rng: random.Random, question: str, answer: int, wrong: Sequence[Value], variant: str,
             angles: Sequence[int]) -> Problem:
    random_orientation(fig, rng)
    return Problem(fig, question, Exact.of(answer), wrong, variant, upper=180,
                   meta={"triangle_angles": list(angles)})


def angle_sum(rng: random.Random) -> Problem:
    """Two angles given, find the third."""
    fig, names = named_figure(rng, NAMES3)
    n_a, n_b, n_c = tuple(names)
    a, b, c = _triangle_angles(rng)
    pa, pb, pc = triangle(a, b)
    fig.polygon([pa, pb, pc])
    fig.angle(pa, pb, pc, deg(a))
    fig.angle(pb, pc, pa, deg(b))
    fig.angle(pc, pa, pb, "x°")
    label_polygon(fig, names, [pa, pb, pc])
    question = (f"In triangle {names}, angle {n_a} = {a}° and angle {n_b} = {b}°. "
                f"Find x, the measure of angle {n_c} in degrees.")
    return _problem(fig, rng, question, c, [180 - a, 180 - b, a + b, 90 - abs(a - b)], "angle_sum", (a, b, c))


def exterior_angle(rng: random.Random) -> Problem:
    """Side BC extended to D: find the exterior angle, or a remote interior angle from it."""
    fig, names = named_figure(rng, NAMES3)
    n_a, n_b, n_c = tuple(names)
    a, b, c = _triangle_angles(rng, 35, 95)
    pa, pb, pc = triangle(a, b)
    pd = add(pc, mul(unit_vector(sub(pc, pb)), 0.55))  # BC extended beyond C
    fig.polygon([pa, pb, pc])
    fig.segment(pc, pd)
    center = centroid([pa, pb, pc])
    label_polygon(fig, names, [pa, pb, pc])
    fig.point_label("D", pd, center)
    exterior = a + b
    wrong: list[Value]
    if rng.random() < 0.5:
        fig.angle(pa, pb, pc, deg(a))
        fig.angle(pc, pa, pd, deg(exterior))
        fig.angle(pb, pc, pa, "x°")
        question = (f"In the figure, side {n_b}{n_c} of triangle {names} is extended to D. "
                    f"Using the marked angles, find x, the measure of angle {n_a}{n_b}{n_c} in degrees.")
        answer, wrong = b, [c, 180 - a, a, exterior // 2]
        variant = "exterior_angle_remote"
    else:
        fig.angle(pa, pb, pc, deg(a))
        fig.angle(pb, pc, pa, deg(b))
        fig.angle(pc, pa, pd, "x°")
        question = (f"In the figure, side {n_b}{n_c} of triangle {names} is extended to D. "
                    f"Find x, the measure of exterior angle {n_a}{n_c}D in degrees.")
        answer, wrong = exterior, [c, 180 - a, 180 - b, 90 + abs(a - b)]
        variant = "exterior_angle"
    return _problem(fig, rng, question, answer, wrong, variant, (a, b, c))


def isosceles(rng: random.Random) -> Problem:
    """Two sides marked equal: the apex angle from a base angle, or the other way round."""
    fig, names = named_figure(rng, NAMES3)
    n_a, n_b, n_c = tuple(names)
    apex = rng.randrange(30, 121, 2)
    base = (180 - apex) // 2
    left, right, apex_point = triangle(base, base)  # base angles at the first two points
    fig.polygon([left, right, apex_point])
    fig.ticks(apex_point, left)
    fig.ticks(apex_point, right)
    label_polygon(fig, n_b + n_c + n_a, [left, right, apex_point])
    wrong: list[Value]
    if rng.random() < 0.5:
        fig.angle(apex_point, left, right, deg(apex))
        fig.angle(left, right, apex_point, "x°")
        question = (f"In triangle {names}, the sides marked with ticks are equal ({n_a}{n_b} = {n_a}{n_c}). "
                    f"Find x, the measure of angle {n_b} in degrees.")
        answer, wrong = base, [180 - apex, apex, 90 - apex // 4, base + apex // 2]
        variant = "isosceles_base_angle"
    else:
        fig.angle(left, right, apex_point, deg(base))
        fig.angle(apex_point, left, right, "x°")
        question = (f"In triangle {names}, the sides marked with ticks are equal ({n_a}{n_b} = {n_a}{n_c}). "
                    f"Find x, the measure of angle {n_a} in degrees.")
        answer, wrong = apex, [180 - base, base, 90 - base // 2, 180 - 3 * base]
        variant = "isosceles_apex_angle"
    return _problem(fig, rng, question, answer, wrong, variant, (apex, base, base))


def algebraic_angles(rng: random.Random) -> Problem:
    """Angles labelled ``(p x + q)°``: find x, or the largest angle."""
    fig, names = named_figure(rng, NAMES3)
    while True:
        x = rng.randint(8, 30)
        coefs = [rng.randint(1, 4) for _ in range(3)]
        a, b, c = _triangle_angles(rng, 45, 90)  # wide angles leave room for long labels
        offsets = [a - coefs[0] * x, b - coefs[1] * x, c - coefs[2] * x]
        if all(-40 <= q <= 60 for q in offsets) and len({(coefs[i], offsets[i]) for i in range(3)}) == 3:
            break
    pa, pb, pc = triangle(a, b)
    fig.polygon([pa, pb, pc])
    label_polygon(fig, names, [pa, pb, pc])
    fig.angle(pa, pb, pc, angle_label(coefs[0], offsets[0]))
    fig.angle(pb, pc, pa, angle_label(coefs[1], offsets[1]))
    fig.angle(pc, pa, pb, angle_label(coefs[2], offsets[2]))
    angles = (a, b, c)
    wrong: list[Value]
    if rng.random() < 0.5:
        question = f"The angles of triangle {names} are given in terms of x. Find the value of x."
        answer, wrong = x, [x + 5, x - 3, round(180 / sum(coefs)), 2 * x]
        variant = "algebraic_angles_x"
    else:
        largest = max(range(3), key=lambda i: angles[i])
        question = (f"The angles of triangle {names} are given in terms of x. "
                    f"Find the measure of angle {names[largest]} in degrees.")
        answer, wrong = angles[largest], [x, 180 - angles[largest], angles[largest] - offsets[largest], 90]
        variant = "algebraic_angles_value"
    return _problem(fig, rng, question, answer, wrong, variant, angles)


LEVELS: dict[int, Builder] = {0: angle_sum, 1: exterior_angle, 2: isosceles, 3: algebraic_angles}
