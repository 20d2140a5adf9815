"""The math pack: MATH-style JSON, GSM8K JSONL, DeepScaleR test sets, verl parquet rows, and a seeded
generator of arithmetic / algebra problems with exact answers for CPU runs.

    pack = mmdps.tasks.get("math")                                   # template "boxed"
    items = pack.load("data/math/test/math500.json")                 # MATH / DeepScaleR JSON
    items = pack.load("data/gsm8k/test.jsonl")                       # answer after "####"
    items = pack.load(None, split="train", num=500, levels=[0, 1])   # generated

The ground truth is the gold answer as a string, or a list of equivalent forms when the source gives
several (Minerva); the ``math`` verifier accepts either.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from mmdps.data.item import Item
from mmdps.data.layouts import is_missing
from mmdps.data.loaders import (
    Row,
    build_items,
    default_image_dir,
    normalize_row,
    read_rows,
    record_to_item,
    source_name,
)
from mmdps.tasks import register
from mmdps.tasks.base import TaskPack

LEVELS = (0, 1, 2, 3, 4)
LEVEL_NAMES = {0: "add_sub", 1: "mul_div", 2: "multi_step", 3: "linear_equation", 4: "fractions"}


# ------------------------------------------------------------------------------------------- answers
def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution (after the last ``####``), commas removed; ``None`` if absent."""
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "").rstrip(".")


def normalize_answer(value: Any, where: str) -> str | list[str]:
    """Gold answer(s) of a row as a string, or a list of equivalent strings (Minerva lists several)."""
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays and scalars from parquet
        value = value.tolist()
    if isinstance(value, bool):
        raise ValueError(f"{where}: answer must be text or a number, got a boolean")
    if is_missing(value):
        value = None  # a NaN in a numeric answer column is a missing answer, not the gold "nan"
    elif isinstance(value, (int, float)):
        return _number_text(value)
    if isinstance(value, (list, tuple)):
        answers = [_number_text(v) if isinstance(v, (int, float)) else str(v).strip() for v in value
                   if not is_missing(v)]
        answers = [a for a in answers if a]
        if not answers:
            raise ValueError(f"{where}: the answer list is empty; fix the row or pass skip_invalid=True")
        return answers[0] if len(answers) == 1 else answers
    if isinstance(value, str):
        gsm8k = parse_gsm8k_answer(value)
        answer = gsm8k if gsm8k is not None else value.strip()
        if answer:
            return answer
        raise ValueError(f"{where}: the answer is empty; fix the row or pass skip_invalid=True")
    if value is None:
        raise ValueError(f"{where}: the row has no answer (looked for answer / ground_truth / label / solution, "
                         "or reward_model.ground_truth); name the column with columns={'answer': ...} "
                         "or pass skip_invalid=True")
    raise ValueError(f"{where}: unsupported answer type {type(value).__name__}")


# ------------------------------------------------------------------------------------------- generator
def _signed(value: int) -> str:
    return f"+ {value}" if value >= 0 else f"- {-value}"


def _fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _add_sub(rng: random.Random) -> tuple[str, Fraction]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    if rng.random() < 0.5:
        return f"What is {a} + {b}?", Fraction(a + b)
    a, b = max(a, b), min(a, b)
    return f"What is {a} - {b}?", Fraction(a - b)


def _mul_div(rng: random.Random) -> tuple[str, Fraction]:
    a, b = rng.randint(2, 19), rng.randint(2, 12)
    if rng.random() < 0.5:
        return f"What is {a} \\times {b}?", Fraction(a * b)
    return f"What is {a * b} \\div {b}?", Fraction(a)


def _multi_step(rng: random.Random) -> tuple[str, Fraction]:
    a, b, c, d = (rng.randint(2, 15) for _ in range(4))
    shape = rng.randrange(3)
    if shape == 0:
        return f"Compute ${a} + {b} \\times {c} - {d}$.", Fraction(a + b * c - d)
    if shape == 1:
        return f"Compute $({a} + {b}) \\times {c} - {d}$.", Fraction((a + b) * c - d)
    return f"Compute ${a} \\times {b} - {c} \\times {d}$.", Fraction(a * b - c * d)


def _linear_equation(rng: random.Random) -> tuple[str, Fraction]:
    x = rng.randint(-12, 12)
    a = rng.choice([n for n in range(-9, 10) if n not in (-1, 0, 1)])
    b = rng.randint(-20, 20)
    return f"Solve for $x$: ${a}x {_signed(b)} = {a * x + b}$.", Fraction(x)


def _reduced_fraction(rng: random.Random) -> Fraction:
    """A fraction a/b with 2 <= b <= 9 already in lowest terms, so it prints as drawn."""
    while True:
        a, b = rng.randint(1, 9), rng.randint(2, 9)
        if math.gcd(a, b) == 1:
            return Fraction(a, b)


def _fractions(rng: random.Random) -> tuple[str, Fraction]:
    # Re-draw until the answer is a proper fraction, so that level 4 always exercises fractions.
    while True:
        if rng.random() < 0.5:
            p, q = _reduced_fraction(rng), _reduced_fraction(rng)
            op = rng.choice(["+", "-"])
            value = p + q if op == "+" else p - q
            question = (f"Compute $\\frac{{{p.numerator}}}{{{p.denominator}}} {op} \\frac{{{q.numerator}}}"
                        f"{{{q.denominator}}}$. Give the answer as a fraction in lowest terms.")
        else:
            a = rng.randint(2, 9)
            b, c = rng.randint(-15, 15), rng.randint(-15, 15)
            value = Fraction(c - b, a)
            question = f"Solve for $x$: ${a}x {_signed(b)} = {c}$. Give the answer as a fraction in lowest terms."
        if value.denominator != 1:
            return question, value


_GENERATORS: dict[int, Callable[[random.Random], tuple[str, Fraction]]] = {
    0: _add_sub, 1: _mul_div, 2: _multi_step, 3: _linear_equation, 4: _fractions,
}


def _levels(levels: Any) -> tuple[int, ...]:
    if levels is None:
        return LEVELS
    chosen = (levels,) if isinstance(levels, int) else tuple(int(level) for level in levels)
    bad = [level for level in chosen if level not in _GENERATORS]
    if not chosen or bad:
        raise ValueError(f"math levels must be a non-empty subset of {list(LEVELS)}, got {levels!r}")
    return chosen


def generate_problems(n: int, *, seed: int | str = 0, levels: Any = None) -> list[dict[str, Any]]:
    """``n`` distinct arithmetic / algebra problems with exact answers, reproducible from ``seed``.

    Levels: 0 add/subtract, 1 multiply/divide, 2 multi-step expressions, 3 linear equations,
    4 fractions (sums and equations with fractional solutions). Each problem is a dict with
    ``question``, ``answer`` (an integer or ``p/q`` in lowest terms), ``difficulty`` (the level) and
    ``problem_type``.
    """
    if n < 0:
        raise ValueError(f"num must be >= 0, got {n}")
    chosen = _levels(levels)
    rng = random.Random(f"math:{seed}")
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    stale = 0  # draws in a row that gave nothing new: the space is exhausted when this grows large
    while len(problems) < n:
        stale += 1
        if stale > 20_000:
            raise ValueError(f"could only generate {len(problems)} distinct problems at levels {list(chosen)}; "
                             "ask for fewer or allow more levels")
        level = rng.choice(chosen)
        question, value = _GENERATORS[level](rng)
        if question in seen:
            continue
        seen.add(question)
        stale = 0
        problems.append({"question": question, "answer": _fraction_text(value), "difficulty": level,
                         "problem_type": LEVEL_NAMES[level]})
    return problems


# ------------------------------------------------------------------------------------------- the pack
@register
class MathPack(TaskPack):
    """Math word problems and competition math, verified by ``math`` (math-verify on the last ``\\boxed{}``).

    ``load`` options (files): ``columns`` (flat-layout column names, e.g. ``{"question": "query"}``),
    ``layout``, ``raw_prompt`` (use a verl / conversational row's prompt as it is; default for those
    layouts), ``image_dir``. Options (generator, ``source=None``): ``num`` (default 1000), ``levels``.
    """

    name = "math"
    verifier = "math"
    description = "MATH / GSM8K / DeepScaleR test sets / verl rows, and generated arithmetic-algebra (levels 0-4)"
    templates = {
        "boxed": "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
        "think_boxed": ("{question}\n\nFirst think the problem through inside <think> </think> tags, then give "
                        "your final answer within \\boxed{}."),
        "plain": "{question}",
    }
    default_template = "boxed"

    def load(self, source: str | os.PathLike | None = None, *, split: str = "train", limit: int | None = None,
             skip_invalid: bool = False, seed: int | str = 0, **options: Any) -> list[Item]:
        if source is None:
            return self.call_loader(self._generate, options, mode="generator, source=None", split=split,
                                    limit=limit, seed=seed)
        return self.call_loader(self._load_file, options, mode="files", source=source, split=split, limit=limit,
                                skip_invalid=skip_invalid)

    def _generate(self, *, split: str, limit: int | None, seed: int | str, num: int = 1000,
                  levels: Any = None) -> list[Item]:
        count = num if limit is None else min(num, limit)
        # The split is part of the seed so that "train" and "test" with the same seed differ.
        problems = generate_problems(count, seed=f"{split}:{seed}", levels=levels)
        return [self.make_item(id=index, question=p["question"], ground_truth=p["answer"],
                               metadata={"row": index, "source": f"generated/{split}", "difficulty": p["difficulty"],
                                         "problem_type": p["problem_type"]})
                for index, p in enumerate(problems)]

    def _load_file(self, source: str | os.PathLike, *, split: str, limit: int | None, skip_invalid: bool,
                   columns: dict[str, str] | None = None, layout: str = "auto", raw_prompt: bool | None = None,
                   image_dir: str | os.PathLike | None = None) -> list[Item]:
        name = source_name(source)
        image_dir = default_image_dir(source) if image_dir is None else image_dir

        def convert(row: Row) -> Item:
            record = normalize_row(row, columns=columns, layout=layout)
            answer = normalize_answer(record.answer, row.where)
            data = record.data
            metadata: dict[str, Any] = {"row": record.index, "source": data.get("data_source") or name}
            difficulty = data.get("difficulty", data.get("level"))
            if difficulty is not None:
                metadata["difficulty"] = _maybe_float(difficulty)
            problem_type = data.get("type") or data.get("subject") or data.get("subfield")
            if problem_type:
                metadata["problem_type"] = str(problem_type)
            unit = data.get("unit")
            if unit not in (None, "", "None"):
                metadata["unit"] = str(unit)
            if data.get("unique_id"):
                metadata["unique_id"] = str(data["unique_id"])
            return record_to_item(record, self, ground_truth=answer, metadata=metadata, raw_prompt=raw_prompt,
                                  image_dir=image_dir)

        rows = read_rows(source, split=split, keep_bad_rows=True)  # skip_invalid skips unparsable lines too
        return build_items(rows, convert, source=source, limit=limit, skip_invalid=skip_invalid)


def _maybe_float(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


__all__ = ["MathPack", "generate_problems", "parse_gsm8k_answer", "normalize_answer", "LEVELS"]
