"""Draw a contact sheet of procedural geometry problems (one row per kind, one column per level) and
time the generator.

    python scripts/render_geometry_samples.py                       # geometry_samples.png, seed 0
    python scripts/render_geometry_samples.py --seed 3 --out /tmp/sheet.png --size 336
    python scripts/render_geometry_samples.py --bench 200           # also print problems per second

Each cell shows the diagram with its variant, answer and choices underneath, so a person can check
that labels are legible, clear of the lines, and that the answer matches the figure.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mmdps.tasks.geometry_procedural import KINDS, LEVELS, generate_problem, generate_problems


def contact_sheet(seed: int, size: int, kinds: list[str], levels: list[int]) -> Image.Image:
    caption_h, pad = 92, 8
    font = ImageFont.load_default(size=12)
    cell_w, cell_h = size + pad, size + caption_h + pad
    sheet = Image.new("RGB", (cell_w * len(levels) + pad, cell_h * len(kinds) + pad), (225, 225, 225))
    draw = ImageDraw.Draw(sheet)
    for row, kind in enumerate(kinds):
        for col, level in enumerate(levels):
            problem = generate_problem(kind, level, seed * 1_000_003 + row * 10 + col, (size, size))
            x, y = pad + col * cell_w, pad + row * cell_h
            sheet.paste(problem["image"], (x, y))
            choices = "  ".join(f"{letter}) {c}" for letter, c in zip("ABCD", problem["choices"], strict=True))
            answer = f"{problem['answer']} ({problem['answer_letter']})"
            lines = [f"{kind} L{level} · {problem['variant']} · answer {answer}"]
            question = problem["question"].replace("π", "pi")  # the bundled font has no pi glyph
            lines += textwrap.wrap(question, width=size // 6)[:3] + [choices]
            for i, line in enumerate(lines):
                draw.text((x + 2, y + size + 3 + i * 15), line, fill=(0, 0, 0), font=font)
    return sheet


def bench(n: int, size: int) -> dict[str, float]:
    generate_problems(7, seed=123, image_size=(size, size))  # warm caches (fonts)
    start = time.perf_counter()
    generate_problems(n, seed=0, image_size=(size, size))
    elapsed = time.perf_counter() - start
    return {"problems": n, "image_size": size, "seconds": round(elapsed, 3),
            "problems_per_second": round(n / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=336, help="image side in pixels")
    parser.add_argument("--out", type=Path, default=Path("geometry_samples.png"))
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    parser.add_argument("--levels", nargs="*", type=int, default=list(LEVELS))
    parser.add_argument("--bench", type=int, default=0, help="also time generating this many problems")
    args = parser.parse_args()
    sheet = contact_sheet(args.seed, args.size, args.kinds, args.levels)
    sheet.save(args.out)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")
    if args.bench:
        print(json.dumps(bench(args.bench, args.size)))


if __name__ == "__main__":
    main()
