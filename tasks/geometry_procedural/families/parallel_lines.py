"""Parallel lines cut by a transversal: corresponding or vertical angles (level 0), alternate and
co-interior angles (1), the same pairs labelled as expressions in x (2), and the "zig-zag" through a
point between the lines (3)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mmdps.tasks.geometry_procedural.drawing import Figure, Point, add, mul, polar, sub
from mmdps.tasks.geometry_procedural.exact import Exact
from mmdps.tasks.geometry_procedural.families.common import (
    Builder,
    Problem,
    Value,
    angle_label,
    deg,
    random_orientation,
)

# the two rays bounding each angle at a crossing: East, Up the transversal, West, Down it
_QUADRANTS = {"EU": ("E", "U"), "UW": ("U", "W"), "WD": ("W", "D"), "DE": ("D", "E")}

# (quadrant at the lower line, quadrant at the upper line, relation)
_PAIRS = {
    "corresponding": [("EU", "EU"), ("UW", "UW"), ("WD", "WD"), ("DE", "DE")],
    "alternate interior": [("EU", "WD"), ("UW", "DE")],
    "alternate exterior": [("WD", "EU"), ("DE", "UW")],
    "co-interior (same-side interior)": [("EU", "DE"), ("UW", "WD")],
}


@dataclass
class _Transversal:
    """Lines m (upper) and n (lower) crossed by t at ``high`` and ``low``, t at ``theta`` degrees."""

    fig: Figure
    theta: int
    low: Point
    high: Point
    rays: dict[str, Point]

    def measure(self, quadrant: str) -> int:
        return self.theta if quadrant in ("EU", "WD") else 180 - self.theta

    def mark(self, point: Point, quadrant: str, text: str) -> None:
        r1, r2 = _QUADRANTS[quadrant]
        self.fig.angle(point, add(point, self.rays[r1]), add(point, self.rays[r2]), text)

    def problem(self, rng: random.Random, question: str, answer: int, wrong: Sequence[Value], variant: str
                ) -> Problem:
        self.fig.dot(self.low)
        self.fig.dot(self.high)
        random_orientation(self.fig, rng, full=False, tilt=25)
        return Problem(self.fig, question, Exact.of(answer), wrong, variant, upper=180,
                       meta={"transversal_angle": self.theta})


def _transversal(rng: random.Random) -> _Transversal:
    fig = Figure()
    theta = rng.choice([rng.randint(40, 75), rng.randint(105, 140)])
    direction = polar(1.0, theta)
    low = (0.0, 0.0)
    high = (direction[0] / direction[1], 1.0)
    xs = [low[0], high[0]]
    left, right = min(xs) - 1.1, max(xs) + 1.1
    for y in (0.0, 1.0):
        fig.segment((left, y), (right, y))
        fig.arrows((left, y), (right, y))
    t_start, t_end = sub(low, mul(direction, 0.75)), add(high, mul(direction, 0.75))
    fig.segment(t_start, t_end)
    fig.free_label("m", (right, 1.0), (1.0, 0.0), spread=30)
    fig.free_label("n", (right, 0.0), (1.0, 0.0), spread=30)
    fig.free_label("t", t_end, direction, spread=30)
    rays = {"E": (1.0, 0.0), "W": (-1.0, 0.0), "U": direction, "D": mul(direction, -1)}
    return _Transversal(fig, theta, low, high, rays)


def corresponding_or_vertical(rng: random.Random) -> Problem:
    """The given angle and x are corresponding or vertical angles; the text names the relation."""
    t = _transversal(rng)
    relation = rng.choice(["corresponding", "vertical"])
    if relation == "vertical":
        quad = rng.choice(list(_QUADRANTS))
        opposite = {"EU": "WD", "WD": "EU", "UW": "DE", "DE": "UW"}[quad]
        point = rng.choice([t.low, t.high])
        q_given, q_x, p_given, p_x = quad, opposite, point, point
    else:
        q_given, q_x = rng.choice(_PAIRS["corresponding"])
        p_given, p_x = (t.low, t.high) if rng.random() < 0.5 else (t.high, t.low)
    given = t.measure(q_given)
    t.mark(p_given, q_given, deg(given))
    t.mark(p_x, q_x, "x°")
    name = "vertical angles" if relation == "vertical" else "corresponding angles"
    question = (f"Lines m and n are parallel and cut by transversal t. The marked angles are {name}; "
                f"one measures {given}°. Find x.")
    return t.problem(rng, question, given, [180 - given, 90 - given if given < 90 else given - 90, given // 2],
                     relation)


def related_pair(rng: random.Random) -> Problem:
    """Alternate interior, alternate exterior or co-interior angles, the relation left to the reader."""
    t = _transversal(rng)
    relation = rng.choice(list(_PAIRS)[1:])
    q_low, q_high = rng.choice(_PAIRS[relation])
    given, x = t.measure(q_low), t.measure(q_high)
    if rng.random() < 0.5:
        t.mark(t.low, q_low, deg(given))
        t.mark(t.high, q_high, "x°")
    else:
        given, x = x, given
        t.mark(t.high, q_high, deg(given))
        t.mark(t.low, q_low, "x°")
    question = "Lines m and n are parallel and cut by transversal t, as marked. Find x."
    return t.problem(rng, question, x, [180 - x, abs(90 - x), x // 2 + 45], relation.split(" (")[0])


def algebraic_pair(rng: random.Random) -> Problem:
    """A related pair labelled ``(p x + q)°``: find x."""
    t = _transversal(rng)
    relation = rng.choice(list(_PAIRS))
    q_low, q_high = rng.choice(_PAIRS[relation])
    angle_low, angle_high = t.measure(q_low), t.measure(q_high)
    while True:
        x = rng.randint(6, 30)
        p_low, p_high = rng.sample(range(1, 6), 2)
        off_low, off_high = angle_low - p_low * x, angle_high - p_high * x
        if -40 <= off_low <= 60 and -40 <= off_high <= 60:
            break
    t.mark(t.low, q_low, angle_label(p_low, off_low))
    t.mark(t.high, q_high, angle_label(p_high, off_high))
    question = "Lines m and n are parallel and cut by transversal t. Find the value of x."
    # the classic slip: treating equal angles as supplementary, or the other way round
    if relation.startswith("co"):
        slip = Fraction(off_high - off_low, p_low - p_high)
    else:
        slip = Fraction(180 - off_low - off_high, p_low + p_high)
    alt = slip if slip.denominator == 1 else x + 3
    return t.problem(rng, question, x, [alt, x + 5, x - 4, 2 * x], f"{relation.split(' (')[0]}_algebra")


def zigzag(rng: random.Random) -> Problem:
    """Point E between two parallel lines: angle AEC = angle BAE + angle DCE."""
    fig = Figure()
    a, b = rng.randint(25, 65), rng.randint(25, 65)
    ye = rng.uniform(0.4, 0.6)
    e = (0.0, ye)
    pa = (-(1 - ye) / math.tan(math.radians(a)), 1.0)
    pc = (-ye / math.tan(math.radians(b)), 0.0)
    left, right = min(pa[0], pc[0]) - 0.5, 0.6
    pb, pd = (right, 1.0), (right, 0.0)
    for y, end in ((1.0, pb), (0.0, pd)):
        fig.segment((left, y), end)
        fig.arrows((left, y), end)
    fig.segment(pa, e)
    fig.segment(e, pc)
    for p in (pa, pc, e):
        fig.dot(p)
    fig.point_label("A", pa, (pa[0], 0.0))
    fig.point_label("C", pc, (pc[0], 1.0))
    fig.point_label("B", pb, (pb[0], 0.0))
    fig.point_label("D", pd, (pd[0], 1.0))
    fig.point_label("E", e, (-1.0, ye))
    fig.angle(pa, pb, e, deg(a))
    fig.angle(pc, pd, e, deg(b))
    fig.angle(e, pa, pc, "x°")
    question = "Lines AB and CD are parallel. Find x, the measure of angle AEC in degrees."
    random_orientation(fig, rng, full=False, tilt=20)
    return Problem(fig, question, Exact.of(a + b), [180 - a - b, abs(a - b) or 90, 360 - a - b, 2 * max(a, b)],
                   "parallel_zigzag", upper=360, meta={"given_angles": [a, b]})


LEVELS: dict[int, Builder] = {0: corresponding_or_vertical, 1: related_pair, 2: algebraic_pair, 3: zigzag}
