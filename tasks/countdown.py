"""The Countdown pack: reach a target with each given number used once and + - * /.

    pack = mmdps.tasks.get("countdown")                      # template "answer"
    items = pack.load(None, split="cd34", num=2000, seed=0)  # generated, like Countdown-Tasks-3to4
    items = pack.load(None, split="cd4", num=512, seed=1)    # 4 numbers, harder
    items = pack.load(None, split="tiny", num=400)           # 4 small levels, for tiny CPU runs
    items = pack.load("countdown.jsonl")                     # rows {"target": 24, "nums": [...]}

Generated problems are solvable by construction: the numbers are combined by a random expression
tree whose intermediate results are all positive integers, and that tree's expression is kept in
``metadata["solution"]``. The ground truth is ``{"target": int, "numbers": [int, ...]}``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from typing import Any

from mmdps.data.item import Item
from mmdps.data.loaders import Row, build_items, normalize_row, read_rows, record_to_item, source_name
from mmdps.tasks import register
from mmdps.tasks.base import TaskPack


@dataclass(frozen=True)
class CountdownConfig:
    """How problems are drawn: how many numbers, their range, the target range, the operators."""

    min_numbers: int
    max_numbers: int
    max_number: int
    max_target: int
    min_number: int = 1
    min_target: int = 1
    ops: str = "+-*/"


# CD-34 / CD-4 follow the ranges of Countdown-Tasks-3to4 / -4 (numbers 1-99, targets up to 100).
CD34 = CountdownConfig(min_numbers=3, max_numbers=4, max_number=99, max_target=100)
CD4 = CountdownConfig(min_numbers=4, max_numbers=4, max_number=99, max_target=100)
# Levels for tiny models on CPU (the ones a 1M-parameter model learns in minutes): + - * only.
TINY_LEVELS = (
    CountdownConfig(min_numbers=2, max_numbers=2, max_number=20, max_target=999, ops="+-*"),
    CountdownConfig(min_numbers=3, max_numbers=3, max_number=9, max_target=999, ops="+-*"),
    CountdownConfig(min_numbers=3, max_numbers=3, max_number=25, max_target=999, ops="+-*"),
    CountdownConfig(min_numbers=4, max_numbers=4, max_number=9, max_target=999, ops="+-*"),
)
# split -> the levels it mixes uniformly ("levels" picks a subset by index).
SPLITS: dict[str, tuple[CountdownConfig, ...]] = {
    "cd34": (CD34,), "cd4": (CD4,), "cd2": TINY_LEVELS[:1], "tiny": TINY_LEVELS,
}
# "train" / "test" draw CD-34 problems from separate random streams.
SPLIT_ALIASES = {"train": "cd34", "test": "cd34", "validation": "cd34"}

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


@dataclass(frozen=True)
class _Node:
    value: int
    text: str
    precedence: int  # 3 for a bare number


def _combine(left: _Node, op: str, right: _Node) -> _Node:
    """Join two sub-expressions, adding only the parentheses the operator needs."""
    level = _PRECEDENCE[op]
    left_text = f"({left.text})" if left.precedence < level else left.text
    # Right operands of - and / need parentheses at equal precedence: a - (b + c), a / (b * c).
    tight = right.precedence < level or (right.precedence == level and op in "-/")
    right_text = f"({right.text})" if tight else right.text
    value = {"+": left.value + right.value, "-": left.value - right.value, "*": left.value * right.value,
             "/": left.value // right.value}[op]  # callers only divide exactly
    return _Node(value, f"{left_text} {op} {right_text}", level)


def _random_expression(numbers: list[int], ops: str, rng: random.Random) -> _Node:
    """Combine all ``numbers`` by a random tree whose intermediate results are positive integers."""
    pool = [_Node(n, str(n), 3) for n in numbers]
    while len(pool) > 1:
        i, j = rng.sample(range(len(pool)), 2)
        a, b = pool[i], pool[j]
        allowed = [op for op in "+*" if op in ops]
        if "-" in ops and a.value > b.value:
            allowed.append("-")  # keep every intermediate result positive
        if "/" in ops and b.value > 1 and a.value % b.value == 0:
            allowed.append("/")  # exact division only
        node = _combine(a, rng.choice(allowed), b)
        pool = [n for k, n in enumerate(pool) if k not in (i, j)] + [node]
    return pool[0]


def _check_config(config: CountdownConfig) -> None:
    if not 2 <= config.min_numbers <= config.max_numbers:
        raise ValueError(f"need 2 <= min_numbers <= max_numbers, got {config.min_numbers}, {config.max_numbers}")
    if not 1 <= config.min_number <= config.max_number or not config.min_target <= config.max_target:
        raise ValueError(f"empty number or target range in {config}")
    if not set(config.ops) <= set("+-*/") or not set(config.ops) & set("+*"):
        raise ValueError(f"ops must be drawn from '+-*/' and include + or *, got {config.ops!r}")


def generate_problems(n: int, *, levels: CountdownConfig | tuple[CountdownConfig, ...],
                      seed: int | str = 0) -> list[dict[str, Any]]:
    """``n`` distinct solvable problems, each from a level drawn uniformly from ``levels``.

    Returns dicts with ``target``, ``numbers``, a reference ``solution`` expression and ``level`` (the
    index into ``levels``).
    """
    if n < 0:
        raise ValueError(f"num must be >= 0, got {n}")
    levels = (levels,) if isinstance(levels, CountdownConfig) else tuple(levels)
    if not levels:
        raise ValueError("need at least one level")
    for config in levels:
        _check_config(config)
    rng = random.Random(f"countdown:{seed}")
    problems: list[dict[str, Any]] = []
    seen: set[tuple[int, tuple[int, ...]]] = set()
    stale = 0  # draws in a row that gave nothing new: the space is exhausted when this grows large
    while len(problems) < n:
        stale += 1
        if stale > 20_000:
            raise ValueError(f"could only generate {len(problems)} distinct problems from {levels}; "
                             "ask for fewer or widen the ranges")
        level = rng.randrange(len(levels))
        config = levels[level]
        count = rng.randint(config.min_numbers, config.max_numbers)
        numbers = [rng.randint(config.min_number, config.max_number) for _ in range(count)]
        node = _random_expression(numbers, config.ops, rng)
        if not config.min_target <= node.value <= config.max_target:
            continue
        key = (node.value, tuple(sorted(numbers)))
        if key in seen:
            continue
        seen.add(key)
        stale = 0
        problems.append({"target": node.value, "numbers": numbers, "solution": node.text, "level": level})
    return problems


def countdown_question(target: int, numbers: list[int]) -> str:
    return f"Numbers: {' '.join(str(n) for n in numbers)}. Target: {target}."


def _as_int(value: Any, what: str, where: str) -> int:
    if hasattr(value, "tolist"):  # a numpy scalar from a parquet / pandas row
        value = value.tolist()
    if isinstance(value, bool):
        raise ValueError(f"{where}: {what} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError(f"{where}: {what} must be an integer, got {value!r}; fix the row or pass skip_invalid=True")


def parse_ground_truth(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``{"target", "numbers"}`` from a ``{target, nums}`` row or verl's ``reward_model.ground_truth``."""
    source = data
    reward_model = data.get("reward_model")
    if isinstance(reward_model, dict) and isinstance(reward_model.get("ground_truth"), dict):
        source = reward_model["ground_truth"]
    target = source.get("target")
    numbers = source.get("numbers", source.get("nums"))
    if target is None or numbers is None:
        missing = "target" if target is None else "nums / numbers"
        raise ValueError(f"{where}: missing field {missing!r} (row has: {', '.join(sorted(data))}); Countdown rows "
                         "need 'target' and 'nums' (or verl's reward_model.ground_truth {target, numbers}); "
                         "fix the row or pass skip_invalid=True")
    if hasattr(numbers, "tolist"):
        numbers = numbers.tolist()
    if not isinstance(numbers, (list, tuple)) or len(numbers) < 1:
        raise ValueError(f"{where}: 'nums' must be a non-empty list of integers, got {numbers!r}")
    return {"target": _as_int(target, "target", where), "numbers": [_as_int(n, "a number", where) for n in numbers]}


#: Most numbers :func:`solve` searches (the search grows factorially; Countdown rows have 3-4).
MAX_SOLVE_NUMBERS = 6


def solve(target: int, numbers: list[int]) -> str | None:
    """An expression using each of ``numbers`` once with + - * / (exact division) equal to ``target``,
    or ``None`` when there is none (or more than :data:`MAX_SOLVE_NUMBERS` numbers)."""
    if not numbers or len(numbers) > MAX_SOLVE_NUMBERS:
        return None
    from fractions import Fraction

    seen: set[tuple[Fraction, ...]] = set()

    def search(pool: list[tuple[Fraction, str]]) -> str | None:
        if len(pool) == 1:
            return pool[0][1] if pool[0][0] == target else None
        key = tuple(sorted(value for value, _ in pool))
        if key in seen:
            return None
        seen.add(key)
        for i in range(len(pool)):
            for j in range(len(pool)):
                if i == j:
                    continue
                (a, a_text), (b, b_text) = pool[i], pool[j]
                rest = [pool[k] for k in range(len(pool)) if k not in (i, j)]
                options = [(a + b, "+"), (a - b, "-"), (a * b, "*")] + ([(a / b, "/")] if b != 0 else [])
                for value, op in options:
                    if op in "+*" and i > j:
                        continue  # commutative: one order is enough
                    found = search(rest + [(value, f"({a_text} {op} {b_text})")])
                    if found is not None:
                        return found
        return None

    found = search([(Fraction(n), str(n)) for n in numbers])
    if found is not None and found.startswith("(") and found.endswith(")") and len(numbers) > 1:
        found = found[1:-1]
    return found


@register
class CountdownPack(TaskPack):
    """Countdown arithmetic planning, verified by ``countdown`` (the last ``<answer>`` expression).

    ``load`` options (generator, ``source=None``): ``num`` (default 1000), ``levels`` (a subset of the
    split's levels) and overrides of ``min_numbers``, ``max_numbers``, ``min_number``, ``max_number``,
    ``min_target``, ``max_target``, ``ops``. Splits: ``cd34`` (3-4 numbers in 1-99, targets 1-100),
    ``cd4`` (4 numbers, harder), ``tiny`` (4 levels for tiny CPU models: 2 numbers in 1-20, 3 in 1-9,
    3 in 1-25, 4 in 1-9; + - * only), ``cd2`` (tiny level 0); ``train`` / ``test`` are CD-34 drawn
    from separate random streams.
    Options (files): ``raw_prompt`` (use a verl row's prompt as it is; default for verl rows).
    """

    name = "countdown"
    verifier = "countdown"
    description = "Countdown: generated cd34 / cd4 / tiny / cd2 splits or {target, nums} rows"
    templates = {
        "answer": ("Use each of the given numbers exactly once, with + - * / and parentheses, to write an "
                   "expression equal to the target.\n{question}\nThink it through inside <think> </think> tags, "
                   "then give only the final expression inside <answer> </answer> tags, for example "
                   "<answer> (1 + 2) / 3 </answer>."),
        "base": ("A conversation between User and Assistant. The user gives a task; the Assistant first reasons "
                 "about it privately and then gives the answer.\nUser: Use each of the given numbers exactly "
                 "once, with + - * / and parentheses, to write an expression equal to the target. {question} "
                 "Show your reasoning inside <think> </think> tags and the final expression inside <answer> "
                 "</answer> tags, for example <answer> (1 + 2) / 3 </answer>.\nAssistant: Let me solve this "
                 "step by step.\n<think>"),
        "compact": "{question}",
    }
    default_template = "answer"

    def reference_completion(self, item: Item) -> str | None:
        """The item's stored solution, else one found by :func:`solve`, inside ``<answer>`` tags; ``ValueError``
        when no expression reaches the target (an unsolvable problem, or columns mapped wrong)."""
        truth = item.ground_truth
        if item.verifier not in ("", self.verifier):  # another verifier's answer format is not ours to write
            return super().reference_completion(item)
        if not isinstance(truth, dict) or "target" not in truth or "numbers" not in truth:
            return None
        solution = item.metadata.get("solution")
        numbers = [int(n) for n in truth["numbers"]]
        if not isinstance(solution, str):
            if len(numbers) > MAX_SOLVE_NUMBERS:
                return None  # too many numbers to search
            solution = solve(int(truth["target"]), numbers)
        if solution is None:
            raise ValueError(f"no expression of {numbers} reaches the target {truth['target']} (are the target "
                             "and the numbers the right columns?)")
        return f"<think>The reference solution.</think><answer> {solution} </answer>"

    def load(self, source: str | os.PathLike | None = None, *, split: str = "train", limit: int | None = None,
             skip_invalid: bool = False, seed: int | str = 0, **options: Any) -> list[Item]:
        if source is None:  # **ranges takes the CountdownConfig fields
            return self.call_loader(self._generate, options, mode="generator, source=None",
                                    extra_options=CountdownConfig.__dataclass_fields__, split=split, limit=limit,
                                    seed=seed)
        return self.call_loader(self._load_file, options, mode="files", source=source, split=split, limit=limit,
                                skip_invalid=skip_invalid)

    def _generate(self, *, split: str, limit: int | None, seed: int | str, num: int = 1000, levels: Any = None,
                  **ranges: Any) -> list[Item]:
        base = SPLIT_ALIASES.get(split, split)
        if base not in SPLITS:
            raise ValueError(f"unknown countdown split {split!r}; generated splits are "
                             f"{sorted(SPLITS) + sorted(SPLIT_ALIASES)}")
        configs = SPLITS[base]
        if levels is not None:
            chosen = [levels] if isinstance(levels, int) else [int(level) for level in levels]
            if not chosen or any(not 0 <= level < len(configs) for level in chosen):
                raise ValueError(f"countdown split {split!r} has levels 0..{len(configs) - 1}, got {levels!r}")
        else:
            chosen = list(range(len(configs)))
        overrides: dict[str, Any] = {k: (str(v) if k == "ops" else int(v)) for k, v in ranges.items()}
        picked = tuple(replace(configs[level], **overrides) for level in chosen)
        count = num if limit is None else min(num, limit)
        problems = generate_problems(count, levels=picked, seed=f"{split}:{seed}")
        items = []
        for index, p in enumerate(problems):
            level = chosen[p["level"]]
            metadata = {"row": index, "source": f"generated/{split}", "solution": p["solution"],
                        "difficulty": level if len(configs) > 1 else len(p["numbers"]),
                        "problem_type": f"{len(p['numbers'])}_numbers"}
            items.append(self.make_item(id=index, question=countdown_question(p["target"], p["numbers"]),
                                        ground_truth={"target": p["target"], "numbers": p["numbers"]},
                                        metadata=metadata))
        return items

    def _load_file(self, source: str | os.PathLike, *, split: str, limit: int | None, skip_invalid: bool,
                   raw_prompt: bool | None = None) -> list[Item]:
        name = source_name(source)

        def convert(row: Row) -> Item:
            truth = parse_ground_truth(row.data, row.where)
            question = countdown_question(truth["target"], truth["numbers"])
            data = dict(row.data)
            if "prompt" not in data:
                data["prompt"] = question  # flat {target, nums} rows have no text of their own
            record = normalize_row(Row(data, row.index, row.where))
            metadata: dict[str, Any] = {"row": row.index, "source": data.get("data_source") or name,
                                        "difficulty": len(truth["numbers"]),
                                        "problem_type": f"{len(truth['numbers'])}_numbers"}
            if isinstance(data.get("solution"), str):
                metadata["solution"] = data["solution"]
            return record_to_item(record, self, ground_truth=truth, metadata=metadata, question=question,
                                  raw_prompt=raw_prompt)

        rows = read_rows(source, split=split, keep_bad_rows=True)  # skip_invalid skips unparsable lines too
        return build_items(rows, convert, source=source, limit=limit, skip_invalid=skip_invalid)


__all__ = ["CountdownPack", "CountdownConfig", "SPLITS", "TINY_LEVELS", "generate_problems", "parse_ground_truth",
           "countdown_question", "solve"]
