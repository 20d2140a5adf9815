"""Drawing the procedural geometry figures: vector helpers, the figure (strokes, marks, labels in world
coordinates) and the renderer that fits it into the canvas, places each label where its text box clears
the border, the other labels and every stroke, and draws at 3x with a LANCZOS downsample."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise

from PIL import Image, ImageDraw, ImageFont

_SUPERSAMPLE = 3
_INK = (20, 20, 20)
_MARK_INK = (60, 60, 60)

Point = tuple[float, float]


def add(p: Point, q: Point) -> Point:
    return (p[0] + q[0], p[1] + q[1])


def sub(p: Point, q: Point) -> Point:
    return (p[0] - q[0], p[1] - q[1])


def mul(p: Point, k: float) -> Point:
    return (p[0] * k, p[1] * k)


def unit_vector(p: Point) -> Point:
    length = math.hypot(*p)
    return (p[0] / length, p[1] / length) if length > 1e-12 else (0.0, -1.0)


def polar(radius: float, degrees: float, center: Point = (0.0, 0.0)) -> Point:
    return (center[0] + radius * math.cos(math.radians(degrees)), center[1] + radius * math.sin(math.radians(degrees)))


def midpoint(p: Point, q: Point) -> Point:
    return ((p[0] + q[0]) / 2, (p[1] + q[1]) / 2)


def centroid(points: Sequence[Point]) -> Point:
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


def _rotate(p: Point, degrees: float) -> Point:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return (p[0] * c - p[1] * s, p[0] * s + p[1] * c)


@dataclass
class Label:
    text: str
    anchor: Point            # world coordinates
    direction: Point         # world coordinates, preferred placement direction
    gap: float = 3.0         # pixels between the anchor and the nearest edge of the text box
    spread: float = 50.0     # how far (degrees) the placement may swing away from ``direction``
    angle_mark: int = -1     # index into ``marks`` when the label belongs to an angle mark


@dataclass
class Figure:
    """World-space drawing: strokes, pixel-sized marks (angles, ticks, arrows) and labels."""

    strokes: list[tuple[list[Point], float, bool]] = field(default_factory=list)  # points, width, dashed
    circles: list[tuple[Point, float]] = field(default_factory=list)
    dots: list[Point] = field(default_factory=list)
    marks: list[tuple[str, tuple]] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    rotation: float = 0.0
    mirror: bool = False

    # strokes ---------------------------------------------------------------------------------
    def segment(self, p: Point, q: Point, dashed: bool = False, width: float = 2.0) -> None:
        self.strokes.append(([p, q], width, dashed))

    def polygon(self, points: Sequence[Point]) -> None:
        self.strokes.append((list(points) + [points[0]], 2.0, False))

    def circle(self, center: Point, radius: float) -> None:
        self.circles.append((center, radius))

    def dot(self, p: Point) -> None:
        self.dots.append(p)

    # marks (sized in pixels, built after the figure is fitted) -------------------------------
    def angle(self, vertex: Point, p: Point, q: Point, text: str | None = None, arcs: int = 1) -> None:
        """Arc mark for the angle between rays vertex->p and vertex->q, optional label on its bisector."""
        self.marks.append(("angle", (vertex, p, q, arcs)))
        if text is not None:
            bisector = add(unit_vector(sub(p, vertex)), unit_vector(sub(q, vertex)))
            self.labels.append(Label(text, vertex, bisector, spread=12.0, angle_mark=len(self.marks) - 1))

    def right_angle(self, vertex: Point, p: Point, q: Point) -> None:
        self.marks.append(("right", (vertex, p, q)))

    def ticks(self, p: Point, q: Point, count: int = 1) -> None:
        self.marks.append(("ticks", (p, q, count)))

    def arrows(self, p: Point, q: Point, count: int = 1) -> None:
        self.marks.append(("arrows", (p, q, count)))

    # labels ----------------------------------------------------------------------------------
    def point_label(self, name: str, p: Point, away_from: Point, gap: float = 4.0) -> None:
        self.labels.append(Label(name, p, sub(p, away_from), gap=gap, spread=70.0))

    def side_label(self, text: str, p: Point, q: Point, away_from: Point) -> None:
        """Label the segment pq at its midpoint, on the side of the line away from ``away_from``."""
        mid = midpoint(p, q)
        normal = unit_vector((-(q[1] - p[1]), q[0] - p[0]))
        if (normal[0] * (away_from[0] - mid[0]) + normal[1] * (away_from[1] - mid[1])) > 0:
            normal = mul(normal, -1)
        self.labels.append(Label(text, mid, normal, gap=3.0, spread=25.0))

    def free_label(self, text: str, p: Point, direction: Point, gap: float = 3.0, spread: float = 60.0) -> None:
        self.labels.append(Label(text, p, direction, gap=gap, spread=spread))

    def world_points(self) -> list[Point]:
        points = [p for stroke in self.strokes for p in stroke[0]] + list(self.dots)
        for (cx, cy), r in self.circles:
            points += [(cx - r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx + r, cy - r)]
        return points


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow without FreeType has one fixed-size bitmap font
        raise RuntimeError("drawing geometry figures needs Pillow built with FreeType (see PIL.features)")
    return font


def _segment_hits_box(p: Point, q: Point, box: tuple[float, float, float, float]) -> bool:
    """Liang-Barsky clip: does segment pq touch the axis-aligned box (x0, y0, x1, y1)?"""
    x0, y0, x1, y1 = box
    dx, dy = q[0] - p[0], q[1] - p[1]
    t0, t1 = 0.0, 1.0
    for edge_p, edge_q in ((-dx, p[0] - x0), (dx, x1 - p[0]), (-dy, p[1] - y0), (dy, y1 - p[1])):
        if edge_p == 0:
            if edge_q < 0:
                return False
            continue
        t = edge_q / edge_p
        if edge_p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def _boxes_overlap(a: Sequence[float], b: Sequence[float], pad: float = 0.0) -> bool:
    return a[0] - pad < b[2] and b[0] - pad < a[2] and a[1] - pad < b[3] and b[1] - pad < a[3]


def _arc_points(center: Point, radius: float, start: float, sweep: float, steps: int) -> list[Point]:
    return [polar(radius, start + sweep * i / steps, center) for i in range(steps + 1)]


@dataclass
class Layout:
    polylines: list[tuple[list[Point], float, bool]]   # pixel space: points, width, dashed
    dots: list[Point]
    labels: list[tuple[str, tuple[float, float, float, float]]]  # text, box in output pixels
    collisions: int


def _transform(fig: Figure, size: tuple[int, int], margin: float) -> Callable[[Point], Point]:
    def world(p: Point) -> Point:
        x, y = _rotate(p, fig.rotation)
        return (-x if fig.mirror else x, -y)  # pixel y grows downwards

    points = [world(p) for p in fig.world_points()]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    width, height = size
    span_x, span_y = max(max(xs) - min(xs), 1e-9), max(max(ys) - min(ys), 1e-9)
    scale = min((width - 2 * margin) / span_x, (height - 2 * margin) / span_y)
    off_x = (width - scale * (max(xs) + min(xs))) / 2
    off_y = (height - scale * (max(ys) + min(ys))) / 2
    return lambda p: (off_x + scale * world(p)[0], off_y + scale * world(p)[1])


def _mark_polylines(kind: str, args: tuple, to_px: Callable[[Point], Point], unit: float
                    ) -> tuple[list[list[Point]], float]:
    """Pixel polylines of one mark, and for angle marks the radius used (labels sit beyond it)."""
    if kind == "angle":
        vertex, p, q, arcs = args
        v, a, b = to_px(vertex), to_px(p), to_px(q)
        start = math.degrees(math.atan2(a[1] - v[1], a[0] - v[0]))
        end = math.degrees(math.atan2(b[1] - v[1], b[0] - v[0]))
        sweep = (end - start + 540) % 360 - 180  # the non-reflex way round
        radius = unit * (1.1 + max(0.0, 60 - abs(sweep)) / 45)  # narrow angles get a wider arc
        lines = [_arc_points(v, radius + i * unit * 0.28, start, sweep, 16) for i in range(arcs)]
        return lines, radius + (arcs - 1) * unit * 0.28
    if kind == "right":
        vertex, p, q = args
        v = to_px(vertex)
        ua, ub = unit_vector(sub(to_px(p), v)), unit_vector(sub(to_px(q), v))
        s = unit * 0.7
        corner = add(v, add(mul(ua, s), mul(ub, s)))
        return [[add(v, mul(ua, s)), corner, add(v, mul(ub, s))]], s * 1.5
    p, q, count = args
    a, b = to_px(p), to_px(q)
    along = unit_vector(sub(b, a))
    normal = (-along[1], along[0])
    mid = midpoint(a, b)
    lines = []
    for i in range(count):
        center = add(mid, mul(along, (i - (count - 1) / 2) * unit * 0.32))
        if kind == "ticks":
            half = mul(normal, unit * 0.38)
            lines.append([sub(center, half), add(center, half)])
        else:  # parallel arrows: a small chevron pointing along the line
            back = sub(center, mul(along, unit * 0.35))
            wing = mul(normal, unit * 0.3)
            lines.append([add(back, wing), center, sub(back, wing)])
    return lines, 0.0


def _layout(fig: Figure, size: tuple[int, int], margin: float, font: ImageFont.FreeTypeFont) -> Layout:
    to_px = _transform(fig, size, margin)
    width, height = size
    unit = min(size) / 22.0  # mark size in pixels
    polylines: list[tuple[list[Point], float, bool]] = [([to_px(p) for p in pts], w, d) for pts, w, d in fig.strokes]
    for center, radius in fig.circles:
        edge = to_px(add(center, (radius, 0.0)))
        c = to_px(center)
        polylines.append((_arc_points(c, math.dist(c, edge), 0.0, 360.0, 96), 2.0, False))
    mark_radius: dict[int, float] = {}
    for index, (kind, args) in enumerate(fig.marks):
        lines, radius = _mark_polylines(kind, args, to_px, unit)
        mark_radius[index] = radius
        polylines += [(line, 1.5, False) for line in lines]
    segments = [(pts[i], pts[i + 1], w) for pts, w, _ in polylines for i in range(len(pts) - 1)]
    dots = [to_px(p) for p in fig.dots]

    placed: list[tuple[str, tuple[float, float, float, float]]] = []
    collisions = 0
    for label in fig.labels:
        anchor = to_px(label.anchor)
        d = unit_vector(sub(to_px(add(label.anchor, mul(unit_vector(label.direction), 1e-3))), anchor))
        x0, y0, x1, y1 = (v / _SUPERSAMPLE for v in _font_big(font).getbbox(label.text, anchor="mm"))
        half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
        gap = label.gap + mark_radius.get(label.angle_mark, 0.0)
        best, best_cost = None, math.inf
        for step in range(24):
            for swing in _swings(label.spread):
                direction = _rotate(d, swing)
                reach = gap + step * 2.5 + abs(direction[0]) * half_w + abs(direction[1]) * half_h
                cx, cy = anchor[0] + direction[0] * reach, anchor[1] + direction[1] * reach
                box = (cx + x0, cy + y0, cx + x1, cy + y1)
                cost = _placement_cost(box, size, placed, segments, dots)
                if cost < best_cost:
                    best, best_cost = box, cost + step * 1e-3
                if cost == 0:
                    break
            if best_cost < 1:
                break
        if best_cost >= 1:
            collisions += 1
        assert best is not None  # the first candidate's finite cost always beats math.inf
        placed.append((label.text, best))
    return Layout(polylines, dots, placed, collisions)


def _swings(spread: float) -> Iterable[float]:
    yield 0.0
    step = max(6.0, spread / 4)
    angle = step
    while angle <= spread + 1e-9:
        yield angle
        yield -angle
        angle += step


def _placement_cost(box, size, placed, segments, dots) -> float:
    width, height = size
    cost = 0.0
    if box[0] < 2 or box[1] < 2 or box[2] > width - 2 or box[3] > height - 2:
        cost += 100
    cost += 10 * sum(_boxes_overlap(box, other, pad=3) for _, other in placed)
    for p, q, w in segments:
        pad = w / 2 + 3.0
        if _segment_hits_box(p, q, (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)):
            cost += 1
    for x, y in dots:
        if box[0] - 4 < x < box[2] + 4 and box[1] - 4 < y < box[3] + 4:
            cost += 1
    return cost


@lru_cache(maxsize=16)
def _font_big(font: ImageFont.FreeTypeFont) -> ImageFont.FreeTypeFont:
    return _font(int(font.size) * _SUPERSAMPLE)


def _dash(points: list[Point], on: float, off: float) -> list[list[Point]]:
    pieces: list[list[Point]] = []
    for a, b in pairwise(points):
        length = math.dist(a, b)
        along = unit_vector(sub(b, a))
        t = 0.0
        while t < length:
            pieces.append([add(a, mul(along, t)), add(a, mul(along, min(t + on, length)))])
            t += on + off
    return pieces


def render(fig: Figure, size: tuple[int, int], font_size: int | None = None) -> tuple[Image.Image, Layout]:
    width, height = size
    font = _font(font_size or max(10, round(min(size) * 0.05)))
    base = font.size * 1.3 + min(size) * 0.03
    layout = _layout(fig, size, base, font)
    # A label that cannot be placed cleanly gets a bigger figure (room inside angles) or more margin.
    for grow in (0.75, 1.35, 1.75):
        if layout.collisions == 0:
            break
        attempt = _layout(fig, size, base * grow, font)
        if attempt.collisions < layout.collisions:
            layout = attempt
    s = _SUPERSAMPLE
    image = Image.new("RGB", (width * s, height * s), "white")
    draw = ImageDraw.Draw(image)
    for points, stroke_width, dashed in layout.polylines:
        ink = _INK if stroke_width >= 2 else _MARK_INK
        pieces = _dash(points, 6.0, 4.0) if dashed else [points]
        for piece in pieces:
            draw.line([(x * s, y * s) for x, y in piece], fill=ink, width=round(stroke_width * s), joint="curve")
    for x, y in layout.dots:
        r = 2.6 * s
        draw.ellipse((x * s - r, y * s - r, x * s + r, y * s + r), fill=_INK)
    big = _font_big(font)
    for text, box in layout.labels:
        center = ((box[0] + box[2]) / 2 * s, (box[1] + box[3]) / 2 * s)
        draw.text(center, text, font=big, fill=(0, 0, 0), anchor="mm")
    return image.resize(size, Image.Resampling.LANCZOS), layout
