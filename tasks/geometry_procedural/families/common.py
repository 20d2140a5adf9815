"""What the problem families share: the :class:`Problem` a builder returns, point names, angle labels,
triangle and rectangle constructions, Pythagorean triples and the seeded orientation of a figure."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from mmdps.tasks.geometry_procedural.drawing import Figure, Point, centroid, polar
from mmdps.tasks.geometry_procedural.exact import Exact, format_number

#: An answer or distractor before it becomes an option: a whole number, a fraction or an exact value.
Value = int | Fraction | Exact


@dataclass
class Problem:
    """One built problem: the figure, the question, the exact answer and the builder's distractors."""

    figure: Figure
    question: str
    answer: Exact
    distractors: Sequence[Value]
    variant: str
    upper: float | None = None           # distractors must stay below (180 for triangle angles, ...)
    meta: dict[str, Any] = field(default_factory=dict)


#: A builder of one (family, level): the seeded random generator in, the problem out.
Builder = Callable[[random.Random], Problem]

NAMES3 = ("ABC", "PQR", "DEF", "XYZ", "KLM", "RST")
NAMES4 = ("ABCD", "PQRS", "EFGH", "KLMN", "WXYZ")
ORIGIN: Point = (0.0, 0.0)


def named_figure(rng: random.Random, names: Sequence[str]) -> tuple[Figure, str]:
    """An empty figure and the vertex names drawn from ``names`` (``NAMES3`` or ``NAMES4``)."""
    return Figure(), rng.choice(names)


def deg(value: int | Fraction) -> str:
    return f"{format_number(value)}°"


def _expr(p: int, q: int) -> str:
    """``p*x + q`` as printed: ``x``, ``3x``, ``2x+10``, ``x-5``."""
    head = "x" if p == 1 else f"{p}x"
    if q == 0:
        return head
    return f"{head}+{q}" if q > 0 else f"{head}-{-q}"  # compact: these labels sit inside angles


def angle_label(p: int, q: int) -> str:
    """The label of an angle measuring ``p*x + q`` degrees: ``3x°``, ``(2x+10)°``."""
    return f"{_expr(p, q)}°" if q == 0 else f"({_expr(p, q)})°"


def triangle(angle_a: float, angle_b: float) -> tuple[Point, Point, Point]:
    """Vertices with the given angles at A and B (degrees), AB = 1 on the x axis."""
    angle_c = 180.0 - angle_a - angle_b
    ac = math.sin(math.radians(angle_b)) / math.sin(math.radians(angle_c))
    return (0.0, 0.0), (1.0, 0.0), polar(ac, angle_a)


def label_polygon(fig: Figure, names: str, points: Sequence[Point]) -> None:
    """Name each vertex, the name placed outward from the polygon's centroid."""
    center = centroid(points)
    for name, p in zip(names, points, strict=True):
        fig.point_label(name, p, center)


def random_orientation(fig: Figure, rng: random.Random, full: bool = True, tilt: float = 0.0) -> None:
    """Any rotation (``full``) or one within ``tilt`` degrees, and a mirror half the time."""
    fig.rotation = rng.uniform(0, 360) if full else rng.uniform(-tilt, tilt)
    fig.mirror = rng.random() < 0.5


TRIPLES = sorted({(k * a, k * b, k * c) for a, b, c in ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25),
                                                         (20, 21, 29), (9, 40, 41), (12, 35, 37))
                  for k in range(1, 13) if k * c <= 60})


def triple(rng: random.Random, max_hyp: int = 30) -> tuple[int, int, int]:
    """A Pythagorean triple (leg, leg, hypotenuse) with the legs in random order."""
    a, b, c = rng.choice([t for t in TRIPLES if t[2] <= max_hyp])
    return (a, b, c) if rng.random() < 0.5 else (b, a, c)


def right_triangle(fig: Figure, names: str, leg_a: float, leg_b: float) -> tuple[tuple[Point, Point, Point], Point]:
    """Draw right triangle ABC (named ``names``) with the right angle at C, CB = ``leg_a`` and CA = ``leg_b``;
    return its vertices and centroid."""
    pa, pb, pc = (leg_b, 0.0), (0.0, leg_a), (0.0, 0.0)
    fig.polygon([pa, pb, pc])
    fig.right_angle(pc, pa, pb)
    label_polygon(fig, names, [pa, pb, pc])
    return (pa, pb, pc), centroid([pa, pb, pc])


def labelled_rectangle(fig: Figure, names: str, width: int, height: int) -> None:
    """Rectangle ``names`` with its width and height written beside two sides."""
    points = [(0.0, 0.0), (width, 0.0), (width, height), (0.0, height)]
    fig.polygon(points)
    fig.right_angle(points[0], points[1], points[3])
    label_polygon(fig, names, points)
    center = centroid(points)
    fig.side_label(format_number(width), points[0], points[1], center)
    fig.side_label(format_number(height), points[1], points[2], center)


def circle_of_random_radius(fig: Figure, rng: random.Random) -> tuple[int, Point, float]:
    """A circle about the origin with a whole radius r; return r, a random point on it and that point's bearing."""
    r = rng.randint(2, 12)
    fig.circle(ORIGIN, float(r))
    edge = polar(float(r), rng.uniform(0, 360))
    return r, edge, math.degrees(math.atan2(edge[1], edge[0]))


def labelled_radius(fig: Figure, r: int, edge: Point, edge_deg: float) -> None:
    """Center O, the radius to ``edge`` and its length ``r`` beside it."""
    fig.dot(ORIGIN)
    fig.segment(ORIGIN, edge)
    fig.point_label("O", ORIGIN, polar(1.0, edge_deg))
    fig.side_label(format_number(r), ORIGIN, edge, polar(1.0, edge_deg - 90))
