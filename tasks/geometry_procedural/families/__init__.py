"""The problem families: one module per kind, each with a ``LEVELS`` table mapping a difficulty level to
the builder of that level's problems. ``FAMILIES`` is the registry ``kind -> {level: builder}``."""

from __future__ import annotations

import random

from mmdps.tasks.geometry_procedural.families import (
    area,
    circle_arc,
    circle_chord,
    parallel_lines,
    perimeter,
    right_triangle,
    triangle_angle,
)
from mmdps.tasks.geometry_procedural.families.common import Builder, Problem

FAMILIES: dict[str, dict[int, Builder]] = {
    "triangle_angle": triangle_angle.LEVELS,
    "parallel_lines": parallel_lines.LEVELS,
    "circle_arc": circle_arc.LEVELS,
    "circle_chord": circle_chord.LEVELS,
    "right_triangle": right_triangle.LEVELS,
    "area": area.LEVELS,
    "perimeter": perimeter.LEVELS,
}

KINDS: tuple[str, ...] = tuple(FAMILIES)


def build(kind: str, level: int, rng: random.Random) -> Problem:
    """The problem of family ``kind`` at ``level`` drawn from ``rng`` (the caller checks both names)."""
    return FAMILIES[kind][level](rng)


__all__ = ["FAMILIES", "KINDS", "Builder", "Problem", "build"]
