"""Procedural geometry problems with labelled diagrams, exact answers and difficulty levels.

Every problem is a Pillow image plus an English question that refers to the labels drawn in the
figure (point names, side lengths, angle measures), an exact answer, and four multiple-choice
options. Nothing is downloaded: vision-language training and evaluation can run fully offline::

    from mmdps.tasks.geometry_procedural import generate_problems
    problems = generate_problems(100, seed=0, levels=[0, 1], kinds=["triangle_angle", "circle_arc"])
    problems[0]["image"].save("p0.png"); print(problems[0]["question"], problems[0]["answer"])

How it works: a builder per kind and level (``families/``) constructs the figure in world coordinates
(drawn to scale where the numbers allow) and records labels with an anchor and a preferred direction
(outward from the figure for point names, along the outward normal for side lengths, along the bisector
for angles). The renderer fits the figure into the canvas, then places each label at the nearest
candidate position whose text box clears the canvas border, the other labels and every stroke, and
draws at 3x with a LANCZOS downsample for anti-aliasing. Only Pillow and the standard library are used.

Difficulty: level 0 states the given values in the text as well as in the figure (one step);
levels 1-3 give them only in the figure and need two or more steps (exterior angles, cyclic
quadrilaterals, algebraic angle labels, intersecting chords, shared altitudes, composite shapes).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from PIL import Image

from mmdps.tasks.geometry_procedural.drawing import Figure, render
from mmdps.tasks.geometry_procedural.exact import Exact
from mmdps.tasks.geometry_procedural.families import FAMILIES, KINDS, build
from mmdps.tasks.geometry_procedural.families.common import triangle
from mmdps.tasks.geometry_procedural.options import choose_distractors

__all__ = ["KINDS", "LEVELS", "generate_problems", "generate_problem", "draw_triangle", "Exact"]

LEVELS: tuple[int, ...] = (0, 1, 2, 3)
LETTERS = "ABCD"


def generate_problem(kind: str, level: int, seed: int, image_size: tuple[int, int] = (336, 336)) -> dict[str, Any]:
    """One problem of ``kind`` at ``level``; the same arguments give the same image and text."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown geometry kind {kind!r}; choose from {list(KINDS)}")
    if level not in LEVELS:
        raise ValueError(f"unknown geometry level {level!r}; choose from {list(LEVELS)}")
    width, height = (int(v) for v in image_size)
    if width < 64 or height < 64:
        raise ValueError(f"image_size {tuple(image_size)} is too small for legible labels; use at least 64x64")
    rng = random.Random(seed)
    problem = build(kind, level, rng)
    image, layout = render(problem.figure, (width, height))
    options = [problem.answer] + choose_distractors(rng, problem.answer, problem.distractors, problem.upper)
    rng.shuffle(options)
    letter = LETTERS[options.index(problem.answer)]
    meta = dict(problem.meta)
    meta.update(variant=problem.variant,
                label_boxes=[{"text": text, "box": tuple(round(v, 2) for v in box)} for text, box in layout.labels],
                label_collisions=layout.collisions)
    return {
        "image": image,
        "question": problem.question,
        "answer": problem.answer.latex(),
        "answer_value": problem.answer.value,
        "choices": [option.latex() for option in options],
        "answer_letter": letter,
        "problem_type": kind,
        "kind": kind,
        "variant": problem.variant,
        "difficulty": level,
        "seed": seed,
        "meta": meta,
    }


def generate_problems(n: int, seed: int = 0, levels: Sequence[int] | None = None,
                      image_size: tuple[int, int] = (336, 336), kinds: Sequence[str] | None = None
                      ) -> list[dict[str, Any]]:
    """``n`` problems cycling through every (kind, level) pair in a seeded order.

    Each dict has ``image`` (RGB PIL image of ``image_size``), ``question``, ``answer`` (exact string:
    ``55``, ``17.5``, ``5\\sqrt{3}``, ``49\\pi``), ``answer_value`` (float), ``choices`` (4 distinct
    strings), ``answer_letter``, ``problem_type``/``kind``, ``variant``, ``difficulty`` (level),
    ``seed`` (rebuild one item with :func:`generate_problem`), ``index`` and ``meta`` (builder
    metadata plus ``label_boxes``: every label's text and pixel box, and ``label_collisions``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    kinds = list(KINDS) if kinds is None else list(kinds)
    levels = list(LEVELS) if levels is None else list(levels)
    for kind in kinds:
        if kind not in FAMILIES:
            raise ValueError(f"unknown geometry kind {kind!r}; choose from {list(KINDS)}")
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"unknown geometry level {level!r}; choose from {list(LEVELS)}")
    if not kinds or not levels:
        raise ValueError("kinds and levels must not be empty")
    combos = [(kind, level) for level in levels for kind in kinds]
    problems = []
    order: list[tuple[str, int]] = []
    for index in range(n):
        if index % len(combos) == 0:  # a fresh seeded permutation every cycle keeps the mix balanced
            order = list(combos)
            random.Random(seed * 7919 + index // len(combos)).shuffle(order)
        kind, level = order[index % len(combos)]
        item = generate_problem(kind, level, seed * 1_000_003 + index, image_size)
        item["index"] = index
        problems.append(item)
    return problems


def draw_triangle(angles: Sequence[float], labels: Sequence[str | None], *, size: tuple[int, int] = (112, 112),
                  font_size: int | None = None, rotation: float = 0.0, mirror: bool = False) -> Image.Image:
    """A triangle with interior ``angles`` (degrees, at its three vertices in order) and, for each
    vertex whose entry in ``labels`` is not None, an angle arc with that label: the problem
    families' drawing code, for small figures (``font_size`` keeps labels legible at 112 px).
    """
    if len(angles) != 3 or len(labels) != 3:
        raise ValueError(f"a triangle needs 3 angles and 3 labels, got {len(angles)} and {len(labels)}")
    if any(a <= 0 for a in angles) or abs(sum(angles) - 180) > 1e-6:
        raise ValueError(f"triangle angles must be positive and add up to 180, got {tuple(angles)}")
    fig = Figure(rotation=rotation, mirror=mirror)
    points = triangle(angles[0], angles[1])
    fig.polygon(list(points))
    for index, label in enumerate(labels):
        if label is not None:
            fig.angle(points[index], points[(index + 1) % 3], points[(index + 2) % 3], label)
    return render(fig, (int(size[0]), int(size[1])), font_size)[0]
