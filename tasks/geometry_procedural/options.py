"""The multiple-choice options of a procedural geometry problem: three distinct plausible wrong answers."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from mmdps.tasks.geometry_procedural.exact import Exact


def choose_distractors(rng: random.Random, answer: Exact, distractors: Sequence[Any], upper: float | None
                       ) -> list[Exact]:
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
