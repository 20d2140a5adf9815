"""Perimeters: a rectangle (level 0), an isosceles triangle marked with ticks (1), a circumference in terms
of π or a right triangle missing its hypotenuse (2) and a rectilinear L shape (3)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

from mmdps.tasks.geometry_procedural.drawing import centroid
from mmdps.tasks.geometry_procedural.exact import Exact, format_number
from mmdps.tasks.geometry_procedural.families.common import (
    NAMES4,
    Builder,
    Problem,
    circle_of_random_radius,
    label_polygon,
    labelled_radius,
    labelled_rectangle,
    named_figure,
    random_orientation,
    right_triangle,
    triple,
)


def rectangle(rng: random.Random) -> Problem:
    fig, names = named_figure(rng, NAMES4)
    w, h = rng.randint(4, 20), rng.randint(3, 14)
    if w == h:
        w += 3
    labelled_rectangle(fig, names, w, h)
    question = f"Rectangle {names} has sides {w} and {h}, as shown. Find its perimeter."
    return Problem(fig, question, Exact.of(2 * (w + h)), [w * h, w + h, 2 * w + h], "rectangle_perimeter")


def isosceles(rng: random.Random) -> Problem:
    fig, names = named_figure(rng, NAMES4)
    base = rng.randint(4, 16)
    side = rng.randint(base // 2 + 3, base + 8)
    side += side == base  # not equilateral: the ticks must matter
    height = math.sqrt(side * side - base * base / 4)
    pa, pb, pc = (0.0, 0.0), (float(base), 0.0), (base / 2, height)
    fig.polygon([pa, pb, pc])
    fig.ticks(pa, pc)
    fig.ticks(pb, pc)
    center = centroid([pa, pb, pc])
    label_polygon(fig, names[:3], [pa, pb, pc])
    fig.side_label(format_number(base), pa, pb, center)
    fig.side_label(format_number(side), pc, pa if rng.random() < 0.5 else pb, center)
    question = (f"In triangle {names[:3]}, the sides marked with ticks are equal. Find the perimeter "
                f"of triangle {names[:3]}.")
    random_orientation(fig, rng, full=False, tilt=20)
    return Problem(fig, question, Exact.of(2 * side + base), [side + base, side + 2 * base, 3 * side],
                   "isosceles_perimeter")


def circumference_or_right_triangle(rng: random.Random) -> Problem:
    fig, names = named_figure(rng, NAMES4)
    if rng.random() < 0.5:
        r, edge, edge_deg = circle_of_random_radius(fig, rng)
        labelled_radius(fig, r, edge, edge_deg)
        question = ("The marked segment is a radius of the circle with center O. Find the circumference "
                    "of the circle. Give your answer in terms of π.")
        wrong = [Exact(Fraction(r * r), pi=True), Exact(Fraction(r), pi=True), Exact(Fraction(4 * r), pi=True)]
        return Problem(fig, question, Exact(Fraction(2 * r), pi=True), wrong, "circumference")
    a, b, c = triple(rng, 30)
    (pa, pb, pc), center = right_triangle(fig, names[:3], a, b)
    fig.side_label(format_number(a), pb, pc, center)
    fig.side_label(format_number(b), pc, pa, center)
    question = f"Triangle {names[:3]} has a right angle at {names[2]}. Find its perimeter."
    random_orientation(fig, rng)
    return Problem(fig, question, Exact.of(a + b + c), [a + b, 2 * (a + b), a + b + c + 2, a * b // 2],
                   "right_triangle_perimeter")


def rectilinear(rng: random.Random) -> Problem:
    """An L shape: a rectangle with its top-right corner cut away, so the perimeter is the bounding box's."""
    fig, _names = named_figure(rng, NAMES4)
    width, height = rng.randint(8, 20), rng.randint(6, 16)
    cut_w, cut_h = rng.randint(2, width - 4), rng.randint(2, height - 3)
    pts = [(0.0, 0.0), (float(width), 0.0), (float(width), float(height - cut_h)),
           (float(width - cut_w), float(height - cut_h)), (float(width - cut_w), float(height)),
           (0.0, float(height))]
    fig.polygon(pts)
    inside = (width * 0.25, height * 0.35)
    fig.side_label(format_number(width), pts[0], pts[1], inside)
    fig.side_label(format_number(height), pts[5], pts[0], inside)
    fig.side_label(format_number(width - cut_w), pts[4], pts[5], inside)
    fig.side_label(format_number(height - cut_h), pts[1], pts[2], inside)
    for corner in (0, 1, 5):
        fig.right_angle(pts[corner], pts[corner - 1], pts[(corner + 1) % 6])
    question = "All angles of the polygon are right angles. Find its perimeter, using the marked lengths."
    wrong = [width + height + (width - cut_w) + (height - cut_h), width * height - cut_w * cut_h,
             2 * (width + height) - 2 * cut_w, 2 * (width + height) + 2 * cut_h]
    fig.mirror = rng.random() < 0.5
    return Problem(fig, question, Exact.of(2 * (width + height)), wrong, "rectilinear_perimeter")


LEVELS: dict[int, Builder] = {0: rectangle, 1: isosceles, 2: circumference_or_right_triangle, 3: rectilinear}
