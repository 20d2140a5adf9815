"""The visual pack: short questions that only the image can answer, sized for tiny VL models on a CPU.

    pack = mmdps.tasks.get("visual")
    items = pack.load(None, num=400, seed=0)                        # all levels, mixed evenly
    items = pack.load(None, num=100, levels=["digit", "sum"])       # a subset, by name or index
    blank = pack.load(None, num=400, seed=0, blank=True)            # same questions, white images

Each item is one image and a bare question such as ``sum=``; the answer is an integer and the
``integer`` verifier scores the whole completion against it. Levels:

========  ============  ========================================================  =======
index     name          image                                                     answer
========  ============  ========================================================  =======
0         digit         one digit (112x56)                                        it
1         number        two digits (112x56)                                       the 2-digit number
2         sum           two digits (112x56)                                       their sum
3         max           two different digits (112x56)                             the larger
4         angle         a triangle with one labelled angle (112x112)              the angle
5         complement    the same figure; ``complement=`` or ``supplement=``       90 - a or 180 - a
6         third         a triangle with two labelled angles (112x112)             the third angle
========  ============  ========================================================  =======

Digits are drawn in DejaVu Sans Bold (shipped with matplotlib, never read from the operating
system) at 30-40 px with a random position, gap and grey shade; triangles come from the procedural
geometry generator's drawing code (:func:`~mmdps.tasks.geometry_procedural.draw_triangle`) with
22 px labels, randomly rotated and mirrored. Angles are multiples of ``angle_step`` (10 by default,
so that reading a label is reading one or two digits) and at least 20 degrees. At these sizes a
Qwen2-VL image is 8 (digits) or 16 (triangles) image tokens.

``blank=True`` draws the same items (same questions, answers and ids) with a white image of the same
size: the control that shows whether a model reads the image at all.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from mmdps.data.item import Item
from mmdps.tasks import register
from mmdps.tasks.base import LOAD_KEYWORDS, TaskPack, check_options, loader_options

LEVELS: tuple[str, ...] = ("digit", "number", "sum", "max", "angle", "complement", "third")
DIGIT_LEVELS = LEVELS[:4]
DIGITS_SIZE = (112, 56)
FIGURE_SIZE = (112, 112)
LABEL_FONT_SIZE = 22
MIN_ANGLE = 20


@lru_cache(maxsize=16)
def digit_font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans Bold at ``size`` px, from matplotlib's bundled fonts (not the operating system's)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's DejaVu Sans Bold is missing at {path}; reinstall matplotlib")
    return ImageFont.truetype(str(path), size)


def draw_digits(digits: Sequence[int], rng: random.Random, size: tuple[int, int] = DIGITS_SIZE) -> Image.Image:
    """``digits`` in one random font size (30-40 px) and grey shade, with a random gap, at a random
    position that keeps every glyph inside the canvas."""
    font = digit_font(rng.randint(30, 40))
    shade = rng.randint(0, 100)
    gap = rng.randint(2, 14)
    boxes = [tuple(int(v) for v in font.getbbox(str(d))) for d in digits]  # FreeType boxes are whole pixels
    widths = [box[2] - box[0] for box in boxes]
    height = max(box[3] for box in boxes) - min(box[1] for box in boxes)
    total = sum(widths) + gap * (len(digits) - 1)
    x = rng.randint(2, max(2, size[0] - total - 2))
    y = rng.randint(2, max(2, size[1] - height - 2)) - min(box[1] for box in boxes)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for digit, box, width in zip(digits, boxes, widths, strict=True):
        draw.text((x - box[0], y), str(digit), font=font, fill=(shade, shade, shade))
        x += width + gap
    return image


def _triangle_angles(rng: random.Random, step: int) -> tuple[list[int], int]:
    """Three angles (multiples of ``step``, each at least MIN_ANGLE, summing to 180) and the vertex of
    the one drawn first, which is uniform over its range (the asked or labelled angle)."""
    low = -(-MIN_ANGLE // step) * step
    first = rng.randrange(low, 180 - 2 * low + 1, step)
    second = rng.randrange(low, 180 - first - low + 1, step)
    angles = [first, second, 180 - first - second]
    vertex = rng.randrange(3)
    angles[0], angles[vertex] = angles[vertex], angles[0]
    if rng.random() < 0.5:  # the other two in either order
        others = [i for i in range(3) if i != vertex]
        angles[others[0]], angles[others[1]] = angles[others[1]], angles[others[0]]
    return angles, vertex


def _figure(angles: Sequence[int], labelled: Sequence[int], rng: random.Random, blank: bool) -> Image.Image:
    rotation, mirror = rng.uniform(0, 360), rng.random() < 0.5
    if blank:
        return Image.new("RGB", FIGURE_SIZE, "white")
    from mmdps.tasks.geometry_procedural import draw_triangle

    labels = [f"{angle}°" if index in labelled else None for index, angle in enumerate(angles)]
    return draw_triangle(angles, labels, size=FIGURE_SIZE, font_size=LABEL_FONT_SIZE, rotation=rotation,
                         mirror=mirror)


def make_problem(level: str, rng: random.Random, *, angle_step: int = 10, blank: bool = False
                 ) -> tuple[Image.Image, str, int, dict[str, Any]]:
    """One problem of ``level``: (image, question, answer, facts). ``blank`` draws the same random
    numbers but returns a white image."""
    if level in DIGIT_LEVELS:
        if level == "digit":
            digits = [rng.randint(0, 9)]
        elif level == "number":
            digits = [rng.randint(1, 9), rng.randint(0, 9)]
        elif level == "sum":
            digits = [rng.randint(0, 9), rng.randint(0, 9)]
        else:
            digits = rng.sample(range(10), 2)
        image = draw_digits(digits, rng)
        if blank:
            image = Image.new("RGB", DIGITS_SIZE, "white")
        answer = {"digit": digits[0], "number": 10 * digits[0] + digits[-1], "sum": sum(digits),
                  "max": max(digits)}[level]
        return image, f"{level}=", answer, {"digits": digits}
    angles, vertex = _triangle_angles(rng, angle_step)
    if level == "third":
        labelled = [index for index in range(3) if index != vertex]
        return (_figure(angles, labelled, rng, blank), "third=", angles[vertex],
                {"angles": angles, "labelled": labelled})
    angle = angles[vertex]
    if level == "angle":
        question, answer = "angle=", angle
    elif level == "complement":
        if angle < 90 and rng.random() < 0.5:
            question, answer = "complement=", 90 - angle
        else:
            question, answer = "supplement=", 180 - angle
    else:
        raise ValueError(f"unknown visual level {level!r}; choose from {', '.join(LEVELS)}")
    return _figure(angles, [vertex], rng, blank), question, answer, {"angles": angles, "labelled": [vertex]}


def resolve_levels(levels: Sequence[str | int] | None) -> list[str]:
    """Level names from names or indices (None: all levels); ValueError names a bad entry."""
    if levels is None:
        return list(LEVELS)
    if isinstance(levels, (str, int)):
        levels = [levels]
    names = []
    for level in levels:
        if isinstance(level, int) and not isinstance(level, bool) and 0 <= level < len(LEVELS):
            names.append(LEVELS[level])
        elif level in LEVELS:
            names.append(str(level))
        else:
            raise ValueError(f"unknown visual level {level!r}; choose names from {', '.join(LEVELS)} "
                             f"or indices 0-{len(LEVELS) - 1}")
    if not names:
        raise ValueError("levels must not be empty")
    return names


@register
class VisualPack(TaskPack):
    """Generated image questions (digits and labelled triangles) with integer answers."""

    name = "visual"
    verifier = "integer"
    description = "read digits / angle labels from a small image; integer answers (generated, for tiny VL models)"
    templates = {"plain": "{question}"}
    default_template = "plain"

    def load(self, source: str | os.PathLike | None = None, *, split: str = "train", limit: int | None = None,
             skip_invalid: bool = False, seed: int | str = 0, num: int = 400, levels: Sequence[str | int] | None = None,
             blank: bool = False, angle_step: int = 10, **options: Any) -> list[Item]:
        """Generate ``num`` items cycling through ``levels`` (names or indices; default all).

        The split name is part of the seed, so ``train`` and ``test`` differ; ``blank`` gives the
        same items with white images; angles are multiples of ``angle_step`` (a divisor of 180 such as
        1, 5 or 10).
        """
        # TaskPack.load takes pack options by keyword; this pack has only the ones above
        valid = loader_options(self.load, exclude=(*LOAD_KEYWORDS, "source"))
        check_options(self.name, options, valid, mode="generator")
        if source is not None:
            raise ValueError(f"the visual pack generates its items; got source={os.fspath(source)!r}: "
                             "pass source=None (or use another pack for files)")
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        if angle_step < 1 or 180 % angle_step:
            raise ValueError(f"angle_step must divide 180 (e.g. 1, 5, 10), got {angle_step}")
        names = resolve_levels(levels)
        rng = random.Random(f"visual:{split}:{seed}")
        count = num if limit is None else min(num, limit)
        items = []
        for index in range(count):
            level = names[index % len(names)]
            image, question, answer, facts = make_problem(level, rng, angle_step=angle_step, blank=blank)
            items.append(self.make_item(id=index, question=question, ground_truth=answer, images=[image],
                                        metadata={"difficulty": LEVELS.index(level), "problem_type": level,
                                                  "answer": str(answer), **facts}))
        return items
