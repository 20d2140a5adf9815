"""The procedural geometry problem families: one builder per kind (triangle angles, parallel lines, circle
arcs and chords, right triangles, area, perimeter) constructing the figure, question, exact answer and
distractors at each difficulty level, and the choice of the multiple-choice options."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from mmdps.tasks.geometry_procedural.drawing import (
    Point,
    _add,
    _centroid,
    _Figure,
    _Label,
    _mid,
    _mul,
    _polar,
    _sub,
    _unit,
)
from mmdps.tasks.geometry_procedural.exact import Exact, _fmt

#: An answer or distractor before it becomes an option: a whole number, a fraction or an exact value.
Value = int | Fraction | Exact

KINDS: tuple[str, ...] = ("triangle_angle", "parallel_lines", "circle_arc", "circle_chord", "right_triangle",
                          "area", "perimeter")


@dataclass
class _Problem:
    figure: _Figure
    question: str
    answer: Exact
    distractors: Sequence[Value]
    variant: str
    upper: float | None = None           # distractors must stay below (180 for triangle angles, ...)
    meta: dict[str, Any] = field(default_factory=dict)


_NAMES3 = ("ABC", "PQR", "DEF", "XYZ", "KLM", "RST")


_NAMES4 = ("ABCD", "PQRS", "EFGH", "KLMN", "WXYZ")


def _deg(value: int | Fraction) -> str:
    return f"{_fmt(value)}°"


def _expr(p: int, q: int) -> str:
    """``p*x + q`` as printed: ``x``, ``3x``, ``2x+10``, ``x-5``."""
    head = "x" if p == 1 else f"{p}x"
    if q == 0:
        return head
    return f"{head}+{q}" if q > 0 else f"{head}-{-q}"  # compact: these labels sit inside angles


def _angle_label(p: int, q: int) -> str:
    return f"{_expr(p, q)}°" if q == 0 else f"({_expr(p, q)})°"


def _triangle(angle_a: float, angle_b: float) -> tuple[Point, Point, Point]:
    """Vertices with the given angles at A and B (degrees), AB = 1 on the x axis."""
    angle_c = 180.0 - angle_a - angle_b
    ac = math.sin(math.radians(angle_b)) / math.sin(math.radians(angle_c))
    return (0.0, 0.0), (1.0, 0.0), _polar(ac, angle_a)


def _label_polygon(fig: _Figure, names: str, points: Sequence[Point]) -> None:
    center = _centroid(points)
    for name, p in zip(names, points, strict=True):
        fig.point_label(name, p, center)


def _random_orientation(fig: _Figure, rng: random.Random, full: bool = True, tilt: float = 0.0) -> None:
    fig.rotation = rng.uniform(0, 360) if full else rng.uniform(-tilt, tilt)
    fig.mirror = rng.random() < 0.5


# -- triangle angles ---------------------------------------------------------------------------
def _triangle_angles(rng: random.Random, lo: int = 30, hi: int = 105) -> tuple[int, int, int]:
    while True:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        c = 180 - a - b
        if lo <= c <= hi + 5:
            return a, b, c


def _build_triangle_angle(rng: random.Random, level: int) -> _Problem:
    fig = _Figure()
    names = rng.choice(_NAMES3)
    n_a, n_b, n_c = tuple(names)
    if level == 0:
        a, b, c = _triangle_angles(rng)
        pa, pb, pc = _triangle(a, b)
        fig.polygon([pa, pb, pc])
        fig.angle(pa, pb, pc, _deg(a))
        fig.angle(pb, pc, pa, _deg(b))
        fig.angle(pc, pa, pb, "x°")
        _label_polygon(fig, names, [pa, pb, pc])
        question = (f"In triangle {names}, angle {n_a} = {a}° and angle {n_b} = {b}°. "
                    f"Find x, the measure of angle {n_c} in degrees.")
        answer, wrong = c, [180 - a, 180 - b, a + b, 90 - abs(a - b)]
        variant, angles = "angle_sum", (a, b, c)
    elif level == 1:
        a, b, c = _triangle_angles(rng, 35, 95)
        pa, pb, pc = _triangle(a, b)
        pd = _add(pc, _mul(_unit(_sub(pc, pb)), 0.55))  # BC extended beyond C
        fig.polygon([pa, pb, pc])
        fig.segment(pc, pd)
        center = _centroid([pa, pb, pc])
        _label_polygon(fig, names, [pa, pb, pc])
        fig.point_label("D", pd, center)
        exterior = a + b
        if rng.random() < 0.5:
            fig.angle(pa, pb, pc, _deg(a))
            fig.angle(pc, pa, pd, _deg(exterior))
            fig.angle(pb, pc, pa, "x°")
            question = (f"In the figure, side {n_b}{n_c} of triangle {names} is extended to D. "
                        f"Using the marked angles, find x, the measure of angle {n_a}{n_b}{n_c} in degrees.")
            answer, wrong = b, [c, 180 - a, a, exterior // 2]
            variant = "exterior_angle_remote"
        else:
            fig.angle(pa, pb, pc, _deg(a))
            fig.angle(pb, pc, pa, _deg(b))
            fig.angle(pc, pa, pd, "x°")
            question = (f"In the figure, side {n_b}{n_c} of triangle {names} is extended to D. "
                        f"Find x, the measure of exterior angle {n_a}{n_c}D in degrees.")
            answer, wrong = exterior, [c, 180 - a, 180 - b, 90 + abs(a - b)]
            variant = "exterior_angle"
        angles = (a, b, c)
    elif level == 2:
        apex = rng.randrange(30, 121, 2)
        base = (180 - apex) // 2
        pa, pb, pc = _triangle(base, base)  # base angles at the first two points
        apex_point, left, right = pc, pa, pb
        fig.polygon([left, right, apex_point])
        fig.ticks(apex_point, left)
        fig.ticks(apex_point, right)
        _label_polygon(fig, n_b + n_c + n_a, [left, right, apex_point])
        if rng.random() < 0.5:
            fig.angle(apex_point, left, right, _deg(apex))
            fig.angle(left, right, apex_point, "x°")
            question = (f"In triangle {names}, the sides marked with ticks are equal ({n_a}{n_b} = {n_a}{n_c}). "
                        f"Find x, the measure of angle {n_b} in degrees.")
            answer, wrong = base, [180 - apex, apex, 90 - apex // 4, base + apex // 2]
            variant = "isosceles_base_angle"
        else:
            fig.angle(left, right, apex_point, _deg(base))
            fig.angle(apex_point, left, right, "x°")
            question = (f"In triangle {names}, the sides marked with ticks are equal ({n_a}{n_b} = {n_a}{n_c}). "
                        f"Find x, the measure of angle {n_a} in degrees.")
            answer, wrong = apex, [180 - base, base, 90 - base // 2, 180 - 3 * base]
            variant = "isosceles_apex_angle"
        angles = (apex, base, base)
    else:
        while True:
            x = rng.randint(8, 30)
            coefs = [rng.randint(1, 4) for _ in range(3)]
            a, b, c = _triangle_angles(rng, 45, 90)  # wide angles leave room for long labels
            offsets = [a - coefs[0] * x, b - coefs[1] * x, c - coefs[2] * x]
            if all(-40 <= q <= 60 for q in offsets) and len({(coefs[i], offsets[i]) for i in range(3)}) == 3:
                break
        pa, pb, pc = _triangle(a, b)
        fig.polygon([pa, pb, pc])
        _label_polygon(fig, names, [pa, pb, pc])
        fig.angle(pa, pb, pc, _angle_label(coefs[0], offsets[0]))
        fig.angle(pb, pc, pa, _angle_label(coefs[1], offsets[1]))
        fig.angle(pc, pa, pb, _angle_label(coefs[2], offsets[2]))
        angles = (a, b, c)
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
    _random_orientation(fig, rng)
    return _Problem(fig, question, Exact.of(answer), wrong, variant, upper=180,
                    meta={"triangle_angles": list(angles)})


# -- parallel lines ----------------------------------------------------------------------------
_QUADRANTS = {"EU": ("E", "U"), "UW": ("U", "W"), "WD": ("W", "D"), "DE": ("D", "E")}


# (quadrant at the lower line, quadrant at the upper line, relation)
_PAIRS = {
    "corresponding": [("EU", "EU"), ("UW", "UW"), ("WD", "WD"), ("DE", "DE")],
    "alternate interior": [("EU", "WD"), ("UW", "DE")],
    "alternate exterior": [("WD", "EU"), ("DE", "UW")],
    "co-interior (same-side interior)": [("EU", "DE"), ("UW", "WD")],
}


def _build_parallel_lines(rng: random.Random, level: int) -> _Problem:
    fig = _Figure()
    wrong: Sequence[Value]
    if level == 3:
        return _build_zigzag(rng, fig)
    theta = rng.choice([rng.randint(40, 75), rng.randint(105, 140)])
    direction = _polar(1.0, theta)
    low = (0.0, 0.0)
    high = (direction[0] / direction[1], 1.0)
    xs = [low[0], high[0]]
    left, right = min(xs) - 1.1, max(xs) + 1.1
    for y in (0.0, 1.0):
        fig.segment((left, y), (right, y))
        fig.arrows((left, y), (right, y))
    t_start, t_end = _sub(low, _mul(direction, 0.75)), _add(high, _mul(direction, 0.75))
    fig.segment(t_start, t_end)
    fig.free_label("m", (right, 1.0), (1.0, 0.0), spread=30)
    fig.free_label("n", (right, 0.0), (1.0, 0.0), spread=30)
    fig.free_label("t", t_end, direction, spread=30)
    rays = {"E": (1.0, 0.0), "W": (-1.0, 0.0), "U": direction, "D": _mul(direction, -1)}
    measure = {"EU": theta, "UW": 180 - theta, "WD": theta, "DE": 180 - theta}

    def mark(point: Point, quadrant: str, text: str) -> None:
        r1, r2 = _QUADRANTS[quadrant]
        fig.angle(point, _add(point, rays[r1]), _add(point, rays[r2]), text)

    if level == 0:
        relation = rng.choice(["corresponding", "vertical"])
        if relation == "vertical":
            quad = rng.choice(list(_QUADRANTS))
            opposite = {"EU": "WD", "WD": "EU", "UW": "DE", "DE": "UW"}[quad]
            point = rng.choice([low, high])
            q_given, q_x, p_given, p_x = quad, opposite, point, point
        else:
            q_given, q_x = rng.choice(_PAIRS["corresponding"])
            p_given, p_x = (low, high) if rng.random() < 0.5 else (high, low)
        given = measure[q_given]
        mark(p_given, q_given, _deg(given))
        mark(p_x, q_x, "x°")
        name = "vertical angles" if relation == "vertical" else "corresponding angles"
        question = (f"Lines m and n are parallel and cut by transversal t. The marked angles are {name}; "
                    f"one measures {given}°. Find x.")
        answer, wrong = given, [180 - given, 90 - given if given < 90 else given - 90, given // 2]
        variant = relation
    elif level == 1:
        relation = rng.choice(list(_PAIRS)[1:])
        q_low, q_high = rng.choice(_PAIRS[relation])
        given, x = measure[q_low], measure[q_high]
        if rng.random() < 0.5:
            mark(low, q_low, _deg(given))
            mark(high, q_high, "x°")
        else:
            given, x = x, given
            mark(high, q_high, _deg(given))
            mark(low, q_low, "x°")
        question = "Lines m and n are parallel and cut by transversal t, as marked. Find x."
        answer, wrong = x, [180 - x, abs(90 - x), x // 2 + 45]
        variant = relation.split(" (")[0]
    else:
        relation = rng.choice(list(_PAIRS))
        q_low, q_high = rng.choice(_PAIRS[relation])
        angle_low, angle_high = measure[q_low], measure[q_high]
        while True:
            x = rng.randint(6, 30)
            p_low, p_high = rng.sample(range(1, 6), 2)
            off_low, off_high = angle_low - p_low * x, angle_high - p_high * x
            if -40 <= off_low <= 60 and -40 <= off_high <= 60:
                break
        mark(low, q_low, _angle_label(p_low, off_low))
        mark(high, q_high, _angle_label(p_high, off_high))
        question = "Lines m and n are parallel and cut by transversal t. Find the value of x."
        # the classic slip: treating equal angles as supplementary, or the other way round
        if relation.startswith("co"):
            slip = Fraction(off_high - off_low, p_low - p_high)
        else:
            slip = Fraction(180 - off_low - off_high, p_low + p_high)
        alt = slip if slip.denominator == 1 else x + 3
        answer, wrong = x, [alt, x + 5, x - 4, 2 * x]
        variant = f"{relation.split(' (')[0]}_algebra"
    fig.dot(low)
    fig.dot(high)
    _random_orientation(fig, rng, full=False, tilt=25)
    return _Problem(fig, question, Exact.of(answer), wrong, variant, upper=180,
                    meta={"transversal_angle": theta})


def _build_zigzag(rng: random.Random, fig: _Figure) -> _Problem:
    """Point E between two parallel lines: angle AEC = angle BAE + angle DCE."""
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
    fig.angle(pa, pb, e, _deg(a))
    fig.angle(pc, pd, e, _deg(b))
    fig.angle(e, pa, pc, "x°")
    question = "Lines AB and CD are parallel. Find x, the measure of angle AEC in degrees."
    _random_orientation(fig, rng, full=False, tilt=20)
    return _Problem(fig, question, Exact.of(a + b), [180 - a - b, abs(a - b) or 90, 360 - a - b, 2 * max(a, b)],
                    "parallel_zigzag", upper=360, meta={"given_angles": [a, b]})


# -- circle arcs and inscribed angles ----------------------------------------------------------
def _build_circle_arc(rng: random.Random, level: int) -> _Problem:
    fig = _Figure()
    o = (0.0, 0.0)
    fig.circle(o, 1.0)
    turn = rng.uniform(0, 360)

    def on(deg: float) -> Point:
        return _polar(1.0, deg + turn)

    if level == 0:
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
        fig.point_label("O", o, _mid(pa, pb))
        if rng.random() < 0.5:
            fig.angle(o, pa, pb, _deg(central))
            fig.angle(pc, pa, pb, "x°")
            question = (f"O is the center of the circle and central angle AOB = {central}°. "
                        f"Find x, the measure of inscribed angle ACB.")
            answer, wrong = central // 2, [central, 180 - central, 90 - central // 2]
            variant = "inscribed_from_central"
        else:
            fig.angle(o, pa, pb, "x°")
            fig.angle(pc, pa, pb, _deg(central // 2))
            question = (f"O is the center of the circle and inscribed angle ACB = {central // 2}°. "
                        f"Find x, the measure of central angle AOB.")
            answer, wrong = central, [central // 2, 180 - central // 2, 360 - central]
            variant = "central_from_inscribed"
        upper = 360
    elif level == 1:
        a = rng.randint(20, 70)
        pa, pb = on(0), on(180)
        pc = on(180 + 2 * a) if rng.random() < 0.5 else on(180 - 2 * a)  # angle CAB = a
        fig.polygon([pa, pb, pc])
        fig.dot(o)
        fig.point_label("O", o, pc)
        for name, p in zip("ABC", (pa, pb, pc), strict=True):
            fig.point_label(name, p, o)
        fig.angle(pa, pb, pc, _deg(a))
        fig.angle(pb, pa, pc, "x°")
        question = "AB is a diameter of the circle with center O. Find x, the measure of angle ABC in degrees."
        answer, wrong = 90 - a, [a, 180 - a, 2 * a, 90 + a]
        upper, variant = 180, "angle_in_semicircle"
    elif level == 2:
        angle_a = rng.randint(60, 120)
        names = rng.choice(_NAMES4)
        start = 0.0
        b_deg, d_deg = start, start + 2 * angle_a  # arc B->C->D, not containing A, is 2 * angle A
        c_deg = b_deg + rng.uniform(0.35, 0.65) * 2 * angle_a
        a_deg = d_deg + rng.uniform(0.35, 0.65) * (360 - 2 * angle_a)
        points = [on(a_deg), on(b_deg), on(c_deg), on(d_deg)]
        fig.polygon(points)
        for name, p in zip(names, points, strict=True):
            fig.point_label(name, p, o)
            fig.dot(p)
        fig.angle(points[0], points[1], points[3], _deg(angle_a))
        fig.angle(points[2], points[3], points[1], "x°")
        question = (f"Quadrilateral {names} is inscribed in the circle. "
                    f"Find x, the measure of angle {names[2]} in degrees.")
        answer, wrong = 180 - angle_a, [angle_a, 360 - 2 * angle_a, abs(90 - angle_a) or 45]
        upper, variant = 180, "cyclic_quadrilateral"
    else:
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
        fig.point_label("E", e, _mid(pa, pb), gap=6)
        fig.free_label(_deg(arc_ab), on(arc_ab / 2), on(arc_ab / 2), gap=5, spread=15)
        fig.free_label(_deg(arc_cd), on(c_deg + arc_cd / 2), on(c_deg + arc_cd / 2), gap=5, spread=15)
        fig.angle(e, pa, pb, "x°")
        question = ("Chords AC and BD intersect at E. The measures of arcs AB and CD are shown. "
                    "Find x, the measure of angle AEB in degrees.")
        answer = (arc_ab + arc_cd) // 2
        wrong = [abs(arc_ab - arc_cd) // 2 or 15, arc_ab + arc_cd, 180 - answer, arc_ab]
        upper, variant = 180, "intersecting_chords_angle"
    fig.mirror = rng.random() < 0.5
    return _Problem(fig, question, Exact.of(answer), wrong, variant, upper=upper)


def _intersect(p1: Point, p2: Point, p3: Point, p4: Point) -> Point:
    d1, d2 = _sub(p2, p1), _sub(p4, p3)
    denom = d1[0] * d2[1] - d1[1] * d2[0]
    t = ((p3[0] - p1[0]) * d2[1] - (p3[1] - p1[1]) * d2[0]) / denom
    return _add(p1, _mul(d1, t))


# -- chords ------------------------------------------------------------------------------------
_TRIPLES = sorted({(k * a, k * b, k * c) for a, b, c in ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25),
                                                          (20, 21, 29), (9, 40, 41), (12, 35, 37))
                   for k in range(1, 13) if k * c <= 60})


def _triple(rng: random.Random, max_hyp: int = 30) -> tuple[int, int, int]:
    a, b, c = rng.choice([t for t in _TRIPLES if t[2] <= max_hyp])
    return (a, b, c) if rng.random() < 0.5 else (b, a, c)


def _build_circle_chord(rng: random.Random, level: int) -> _Problem:
    fig = _Figure()
    wrong: Sequence[Value]
    o = (0.0, 0.0)
    turn = rng.uniform(0, 360)
    if level == 3:
        return _build_power_of_point(rng, fig)
    half: int | None = None  # the half-chord, when it is a whole number (a Pythagorean triple)
    if level < 2 or rng.random() < 0.5:
        half, dist, radius = _triple(rng)
    else:
        radius, dist = rng.choice([(r, d) for r in range(3, 13) for d in range(1, r)
                                   if math.isqrt(r * r - d * d) ** 2 != r * r - d * d])
    half_length = math.sqrt(radius * radius - dist * dist) if half is None else half
    scale = 1.0 / radius
    fig.circle(o, 1.0)
    m = _polar(dist * scale, turn)
    along = _polar(half_length * scale, turn + 90)
    pa, pb = _add(m, along), _sub(m, along)
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
    fig.labels.append(_Label("M", m, _add(_unit(_sub(pb, m)), _unit(_sub(o, m))), gap=4.0, spread=30.0))
    if half is None:  # level 2 without a whole half-chord: an exact surd
        fig.side_label(_fmt(radius), o, pa, pb)
        fig.side_label(_fmt(dist), o, m, pa)
        rad = radius * radius - dist * dist
        question = ("In circle O, OM is perpendicular to chord AB. Find the exact length of chord AB "
                    "(simplify any square root).")
        answer = Exact.surd(2, rad)
        wrong = [Exact.surd(1, rad), Exact.surd(2, radius * radius + dist * dist), 2 * (radius - dist),
                 Exact.surd(4, rad)]
        variant = "chord_length_surd"
    elif level == 0:
        chord = 2 * half
        fig.side_label(_fmt(radius), o, pa, pb)
        fig.side_label(_fmt(dist), o, m, pa)
        question = (f"In circle O, OM is perpendicular to chord AB, OA = {radius} and OM = {dist}. "
                    "Find the length of chord AB.")
        answer, wrong = Exact.of(chord), [half, radius + dist, 2 * radius, 2 * (radius - dist) or 1]
        variant = "chord_length"
    elif level == 1:
        chord = 2 * half
        fig.side_label(_fmt(radius), o, pa, pb)
        fig.side_label(_fmt(chord), pa, pb, o)
        question = "In circle O, OM is perpendicular to chord AB. Find the distance OM."
        answer, wrong = Exact.of(dist), [half, radius - half // 2 or 1, chord - radius, radius + 1]
        variant = "chord_distance"
    else:
        chord = 2 * half
        fig.side_label(_fmt(chord), pa, pb, o)
        fig.side_label(_fmt(dist), o, m, pa)
        question = "In circle O, OM is perpendicular to chord AB. Find the radius of the circle."
        answer, wrong = Exact.of(radius), [chord, half + dist, Exact.surd(1, chord * chord + dist * dist), dist + 2]
        variant = "chord_radius"
    fig.mirror = rng.random() < 0.5
    return _Problem(fig, question, answer, wrong, variant, meta={"radius": radius, "distance": dist})


def _build_power_of_point(rng: random.Random, fig: _Figure) -> _Problem:
    """Intersecting chords AB and CD at E, drawn exactly to the lengths: AE * EB = CE * ED."""
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
    u, v = _polar(1.0, alpha), _polar(1.0, beta)
    pb, pa = _add(e, _mul(u, eb)), _sub(e, _mul(u, ae))
    pd, pc = _add(e, _mul(v, ed)), _sub(e, _mul(v, ce))
    o = (0.0, 0.0)
    fig.circle(o, radius)
    fig.segment(pa, pb)
    fig.segment(pc, pd)
    for name, q in zip("ABCD", (pa, pb, pc, pd), strict=True):
        fig.point_label(name, q, o)
        fig.dot(q)
    fig.dot(e)
    fig.point_label("E", e, _mid(pa, pc), gap=6)
    fig.side_label(_fmt(ae), pa, e, pc)
    fig.side_label(_fmt(eb), e, pb, pd)
    fig.side_label(_fmt(ce), pc, e, pb)
    fig.side_label("x", e, pd, pa)
    fig.rotation = rng.uniform(0, 360)
    fig.mirror = rng.random() < 0.5
    question = "Chords AB and CD intersect at E. Find x, the length of ED."
    wrong: list[Value] = [Fraction(ae * ce, eb), ae + eb - ce, Fraction(eb * ce, ae), ed + 2]
    return _Problem(fig, question, Exact.of(ed), wrong, "intersecting_chords_length",
                    meta={"segments": [ae, eb, ce, ed]})


# -- right triangles -------------------------------------------------------------------------
def _right_triangle_points(leg_a: float, leg_b: float) -> tuple[Point, Point, Point]:
    """C is the right angle, CA = leg_b along x, CB = leg_a along y."""
    return (leg_b, 0.0), (0.0, leg_a), (0.0, 0.0)


def _build_right_triangle(rng: random.Random, level: int) -> _Problem:
    fig = _Figure()
    wrong: Sequence[Value]
    names = rng.choice(_NAMES3)
    n_a, n_b, n_c = tuple(names)
    if level == 3:
        return _build_shared_altitude(rng, fig)
    if level < 2:
        a, b, c = _triple(rng, 40)
        pa, pb, pc = _right_triangle_points(a, b)
    else:
        special = rng.choice([30, 45, 60])
        opposite, adjacent = math.sin(math.radians(special)), math.cos(math.radians(special))
        pa, pb, pc = _right_triangle_points(opposite, adjacent)  # angle at A is `special`
    fig.polygon([pa, pb, pc])
    fig.right_angle(pc, pa, pb)
    _label_polygon(fig, names, [pa, pb, pc])
    center = _centroid([pa, pb, pc])
    sides = {"BC": (pb, pc), "CA": (pc, pa), "AB": (pa, pb)}

    def label(side: str, text: str) -> None:
        fig.side_label(text, *sides[side], center)

    def side_name(side: str) -> str:
        return "".join(names["ABC".index(ch)] for ch in side)

    if level == 0:
        label("BC", _fmt(a))
        label("CA", _fmt(b))
        label("AB", "x")
        question = (f"Triangle {names} has a right angle at {n_c}, {side_name('BC')} = {a} and "
                    f"{side_name('CA')} = {b}. Find x, the length of {side_name('AB')}.")
        answer, wrong = Exact.of(c), [a + b, Exact.surd(1, abs(a * a - b * b)) if a != b else c + 2, c + 1, c - 2]
        variant = "pythagoras_hypotenuse"
    elif level == 1:
        label("BC", _fmt(a))
        label("AB", _fmt(c))
        label("CA", "x")
        question = f"Triangle {names} has a right angle at {n_c}. Find x, the length of {side_name('CA')}."
        answer, wrong = Exact.of(b), [Exact.surd(1, a * a + c * c), c - a, b + 2, b - 1 if b > 2 else b + 3]
        variant = "pythagoras_leg"
    else:
        # side lengths in units of k: opposite A = sin, adjacent = cos, hypotenuse = 1
        fig.angle(pa, pb, pc, _deg(special))
        given, asked = rng.sample(["BC", "CA", "AB"], 2)
        lengths = _special_sides(special)
        per_unit = _div_surd(lengths[asked], lengths[given], Fraction(1))
        given_length = rng.randint(2, 9) * per_unit.coef.denominator  # keeps the answer free of fractions
        given_value = Exact(Fraction(given_length))
        answer = per_unit.scaled(given_length)
        label(given, _fmt(given_value.coef))
        label(asked, "x")
        question = (f"Triangle {names} has a right angle at {n_c} and angle {n_a} = {special}°. "
                    f"Find x, the length of {side_name(asked)}. Give an exact answer.")
        wrong = _special_distractors(answer, given_value)
        variant = f"special_{special}"
    _random_orientation(fig, rng)
    return _Problem(fig, question, answer, wrong, variant)


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


def _build_shared_altitude(rng: random.Random, fig: _Figure) -> _Problem:
    """BD is perpendicular to AC; AB and AD give BD (Pythagoras), then DC gives BC."""
    by_leg: dict[int, list[tuple[int, int]]] = {}
    for leg_a, leg_b, hyp in _TRIPLES:
        by_leg.setdefault(leg_a, []).append((leg_b, hyp))
        by_leg.setdefault(leg_b, []).append((leg_a, hyp))
    shared = rng.choice(sorted(leg for leg, options in by_leg.items() if len(options) >= 2 and leg <= 24))
    (ad, ab), (dc, bc) = rng.sample(by_leg[shared], 2)
    d, b = (0.0, 0.0), (0.0, float(shared))
    a, c = (-float(ad), 0.0), (float(dc), 0.0)
    fig.polygon([a, b, c])
    fig.segment(b, d)
    fig.right_angle(d, c, b)
    center = _centroid([a, b, c])
    for name, p in (("A", a), ("B", b), ("C", c)):
        fig.point_label(name, p, center)
    fig.point_label("D", d, b)
    fig.dot(d)
    fig.side_label(_fmt(ab), a, b, c)
    fig.side_label(_fmt(ad), a, d, b)
    fig.side_label(_fmt(dc), d, c, b)
    fig.side_label("x", b, c, a)
    fig.mirror = rng.random() < 0.5
    fig.rotation = rng.uniform(-15, 15)
    question = "In triangle ABC, BD is perpendicular to AC. Find x, the length of BC."
    wrong: list[Value] = [Exact.surd(1, ab * ab + dc * dc), ab + dc - ad,
                          Exact.surd(1, abs(dc * dc - shared * shared) or 2), bc + 2]
    return _Problem(fig, question, Exact.of(bc), wrong, "shared_altitude",
                    meta={"BD": shared, "AB": ab, "AD": ad, "DC": dc})


# -- areas and perimeters --------------------------------------------------------------------
def _rectangle(fig: _Figure, w: float, h: float, names: str) -> list[Point]:
    points = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
    fig.polygon(points)
    fig.right_angle(points[0], points[1], points[3])
    _label_polygon(fig, names, points)
    return points


def _build_area(rng: random.Random, level: int) -> _Problem:
    fig = _Figure()
    wrong: Sequence[Value]
    names = rng.choice(_NAMES4)
    tilt = 0.0
    if level == 0:
        w, h = rng.randint(4, 20), rng.randint(3, 14)
        if w == h:
            w += 2
        pts = _rectangle(fig, w, h, names)
        center = _centroid(pts)
        fig.side_label(_fmt(w), pts[0], pts[1], center)
        fig.side_label(_fmt(h), pts[1], pts[2], center)
        question = f"Rectangle {names} has sides {w} and {h}, as shown. Find its area."
        answer, wrong = Exact.of(w * h), [2 * (w + h), w * h // 2 or 1, w * h + w, (w + h) ** 2 // 2]
        variant = "rectangle_area"
    elif level == 1:
        base, height = rng.randint(5, 20), rng.randint(4, 14)
        if base * height % 2:
            base += 1
        apex_x = base * rng.uniform(0.2, 0.8)
        pa, pb, pc = (0.0, 0.0), (float(base), 0.0), (apex_x, float(height))
        foot = (apex_x, 0.0)
        fig.polygon([pa, pb, pc])
        fig.segment(pc, foot, dashed=True)
        fig.right_angle(foot, pb, pc)
        _label_polygon(fig, names[:3], [pa, pb, pc])
        fig.side_label(_fmt(base), pa, pb, pc)
        fig.side_label(_fmt(height), pc, foot, pb if apex_x < base / 2 else pa)
        question = f"Find the area of triangle {names[:3]}. The dashed segment is its height."
        answer, wrong = Exact.of(Fraction(base * height, 2)), [base * height, base + height, Fraction(base * height, 4)]
        variant = "triangle_area"
    elif level == 2 and rng.random() < 0.5:
        r = rng.randint(2, 12)
        fig.circle((0.0, 0.0), float(r))
        edge = _polar(float(r), rng.uniform(0, 360))
        edge_deg = math.degrees(math.atan2(edge[1], edge[0]))
        if rng.random() < 0.5:  # a diameter; no center label, which would sit on the length label
            fig.segment(_mul(edge, -1), edge)
            fig.side_label(_fmt(2 * r), _mul(edge, -1), edge, _polar(1.0, edge_deg - 90))
            question = ("The marked segment is a diameter of the circle. "
                        "Find the area of the circle. Give your answer in terms of π.")
        else:
            fig.dot((0.0, 0.0))
            fig.segment((0.0, 0.0), edge)
            fig.point_label("O", (0.0, 0.0), _polar(1.0, edge_deg))
            fig.side_label(_fmt(r), (0.0, 0.0), edge, _polar(1.0, edge_deg - 90))
            question = ("The marked segment is a radius of the circle with center O. "
                        "Find the area of the circle. Give your answer in terms of π.")
        answer = Exact(Fraction(r * r), pi=True)
        wrong = [Exact(Fraction(2 * r), pi=True), Exact(Fraction(4 * r * r), pi=True), Exact(Fraction(r), pi=True),
                 Exact(Fraction(r * r, 2), pi=True)]
        variant = "circle_area"
    elif level == 2:
        bottom, top, height = rng.randint(8, 20), rng.randint(3, 12), rng.randint(3, 12)
        if top >= bottom:
            top = bottom - rng.randint(2, 5)
        if (bottom + top) * height % 2:
            height += 1
        right_trapezoid = rng.random() < 0.3
        shift = 0.0 if right_trapezoid else rng.uniform(0.2, 0.8) * (bottom - top)
        pts = [(0.0, 0.0), (float(bottom), 0.0), (shift + top, float(height)), (shift, float(height))]
        fig.polygon(pts)
        center = _centroid(pts)
        _label_polygon(fig, names, pts)
        fig.side_label(_fmt(bottom), pts[0], pts[1], center)
        fig.side_label(_fmt(top), pts[2], pts[3], center)
        if right_trapezoid:  # the perpendicular side is the height
            fig.right_angle(pts[0], pts[1], pts[3])
            fig.right_angle(pts[3], pts[0], pts[2])
            fig.side_label(_fmt(height), pts[3], pts[0], center)
            where = f"Side {names[3]}{names[0]} is perpendicular to both bases."
        else:  # dashed height dropped from the top-left vertex, which lies over the base
            foot = (shift, 0.0)
            fig.segment(pts[3], foot, dashed=True)
            fig.right_angle(foot, pts[1], pts[3])
            fig.side_label(_fmt(height), pts[3], foot, pts[0])
            where = "The dashed segment is its height."
        question = (f"{names} is a trapezoid with {names[0]}{names[1]} parallel to {names[3]}{names[2]}. "
                    f"{where} Find its area.")
        area = Fraction((bottom + top) * height, 2)
        answer, wrong = Exact.of(area), [(bottom + top) * height, bottom * height, bottom + top + height]
        variant = "trapezoid_area"
    else:
        leg, other, hyp = _triple(rng, 30)
        pa, pb, pc = _right_triangle_points(leg, other)
        fig.polygon([pa, pb, pc])
        fig.right_angle(pc, pa, pb)
        center = _centroid([pa, pb, pc])
        _label_polygon(fig, names[:3], [pa, pb, pc])
        fig.side_label(_fmt(leg), pb, pc, center)
        fig.side_label(_fmt(hyp), pa, pb, center)
        question = f"Triangle {names[:3]} has a right angle at {names[2]}. Find its area."
        answer = Exact.of(Fraction(leg * other, 2))
        wrong = [Fraction(leg * hyp, 2), leg * other, Fraction(leg * other, 2) + leg, Fraction(hyp * other, 2)]
        variant = "right_triangle_area"
        tilt = 360.0
    if tilt >= 360:
        _random_orientation(fig, rng)
    else:
        fig.mirror = rng.random() < 0.5
    return _Problem(fig, question, answer, wrong, variant)


def _build_perimeter(rng: random.Random, level: int) -> _Problem:
    fig = _Figure()
    wrong: Sequence[Value]
    names = rng.choice(_NAMES4)
    if level == 0:
        w, h = rng.randint(4, 20), rng.randint(3, 14)
        if w == h:
            w += 3
        pts = _rectangle(fig, w, h, names)
        center = _centroid(pts)
        fig.side_label(_fmt(w), pts[0], pts[1], center)
        fig.side_label(_fmt(h), pts[1], pts[2], center)
        question = f"Rectangle {names} has sides {w} and {h}, as shown. Find its perimeter."
        answer, wrong = Exact.of(2 * (w + h)), [w * h, w + h, 2 * w + h]
        variant = "rectangle_perimeter"
    elif level == 1:
        base = rng.randint(4, 16)
        side = rng.randint(base // 2 + 3, base + 8)
        side += side == base  # not equilateral: the ticks must matter
        height = math.sqrt(side * side - base * base / 4)
        pa, pb, pc = (0.0, 0.0), (float(base), 0.0), (base / 2, height)
        fig.polygon([pa, pb, pc])
        fig.ticks(pa, pc)
        fig.ticks(pb, pc)
        center = _centroid([pa, pb, pc])
        _label_polygon(fig, names[:3], [pa, pb, pc])
        fig.side_label(_fmt(base), pa, pb, center)
        fig.side_label(_fmt(side), pc, pa if rng.random() < 0.5 else pb, center)
        question = (f"In triangle {names[:3]}, the sides marked with ticks are equal. Find the perimeter "
                    f"of triangle {names[:3]}.")
        answer, wrong = Exact.of(2 * side + base), [side + base, side + 2 * base, 3 * side]
        variant = "isosceles_perimeter"
        _random_orientation(fig, rng, full=False, tilt=20)
    elif level == 2 and rng.random() < 0.5:
        r = rng.randint(2, 12)
        fig.circle((0.0, 0.0), float(r))
        fig.dot((0.0, 0.0))
        edge = _polar(float(r), rng.uniform(0, 360))
        fig.segment((0.0, 0.0), edge)
        edge_deg = math.degrees(math.atan2(edge[1], edge[0]))
        fig.point_label("O", (0.0, 0.0), _polar(1.0, edge_deg))
        fig.side_label(_fmt(r), (0.0, 0.0), edge, _polar(1.0, edge_deg - 90))
        question = ("The marked segment is a radius of the circle with center O. Find the circumference "
                    "of the circle. Give your answer in terms of π.")
        answer = Exact(Fraction(2 * r), pi=True)
        wrong = [Exact(Fraction(r * r), pi=True), Exact(Fraction(r), pi=True), Exact(Fraction(4 * r), pi=True)]
        variant = "circumference"
    elif level == 2:
        a, b, c = _triple(rng, 30)
        pa, pb, pc = _right_triangle_points(a, b)
        fig.polygon([pa, pb, pc])
        fig.right_angle(pc, pa, pb)
        center = _centroid([pa, pb, pc])
        _label_polygon(fig, names[:3], [pa, pb, pc])
        fig.side_label(_fmt(a), pb, pc, center)
        fig.side_label(_fmt(b), pc, pa, center)
        question = f"Triangle {names[:3]} has a right angle at {names[2]}. Find its perimeter."
        answer, wrong = Exact.of(a + b + c), [a + b, 2 * (a + b), a + b + c + 2, a * b // 2]
        variant = "right_triangle_perimeter"
        _random_orientation(fig, rng)
    else:
        width, height = rng.randint(8, 20), rng.randint(6, 16)
        cut_w, cut_h = rng.randint(2, width - 4), rng.randint(2, height - 3)
        # An L shape: a rectangle with its top-right corner cut away.
        pts = [(0.0, 0.0), (float(width), 0.0), (float(width), float(height - cut_h)),
               (float(width - cut_w), float(height - cut_h)), (float(width - cut_w), float(height)),
               (0.0, float(height))]
        fig.polygon(pts)
        inside = (width * 0.25, height * 0.35)
        fig.side_label(_fmt(width), pts[0], pts[1], inside)
        fig.side_label(_fmt(height), pts[5], pts[0], inside)
        fig.side_label(_fmt(width - cut_w), pts[4], pts[5], inside)
        fig.side_label(_fmt(height - cut_h), pts[1], pts[2], inside)
        for corner in (0, 1, 5):
            fig.right_angle(pts[corner], pts[corner - 1], pts[(corner + 1) % 6])
        question = "All angles of the polygon are right angles. Find its perimeter, using the marked lengths."
        answer = Exact.of(2 * (width + height))
        wrong = [width + height + (width - cut_w) + (height - cut_h), width * height - cut_w * cut_h,
                 2 * (width + height) - 2 * cut_w, 2 * (width + height) + 2 * cut_h]
        variant = "rectilinear_perimeter"
        fig.mirror = rng.random() < 0.5
    return _Problem(fig, question, answer, wrong, variant)


_BUILDERS: dict[str, Callable[[random.Random, int], _Problem]] = {
    "triangle_angle": _build_triangle_angle,
    "parallel_lines": _build_parallel_lines,
    "circle_arc": _build_circle_arc,
    "circle_chord": _build_circle_chord,
    "right_triangle": _build_right_triangle,
    "area": _build_area,
    "perimeter": _build_perimeter,
}


def _choices(rng: random.Random, answer: Exact, distractors: Sequence[Any], upper: float | None) -> list[Exact]:
    """Three distinct plausible wrong options (builder's first, then nearby values of the same form)."""
    chosen: list[Exact] = []

    def usable(option: Exact) -> bool:
        value = option.value
        if value <= 0 or (upper is not None and value >= upper) or abs(value - answer.value) < 1e-6:
            return False
        return all(abs(value - other.value) > 1e-6 and option.latex() != other.latex() for other in chosen)

    step = max(1, round(float(answer.coef) * 0.1))
    nearby = [answer.shifted(d * step) for d in (2, -2, 1, -1, 3, -3, 5, -5, 7, 10)]
    for option in [Exact.of(d) for d in distractors] + nearby:
        if usable(option):
            chosen.append(option)
        if len(chosen) == 3:
            return chosen
    raise AssertionError(f"could not find three distractors for {answer.latex()}")  # nearby always suffices
