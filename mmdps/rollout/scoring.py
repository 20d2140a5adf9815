"""Generate, then score: :func:`rollout_and_score`, the one path from prompts to verified groups.

The trainer's rollout, the evaluation (``mmdps eval`` and eval-every-N-steps) and the selector benchmark all
call it, so a completion is scored the same way everywhere (:func:`mmdps.verifiers.score_completion`, with
the item's metadata) and a group's success rate has one definition (:func:`mmdps.verifiers.success_rate`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams
from mmdps.verifiers import base as verifier_base
from mmdps.verifiers import score_completion, success_rate

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.data.item import Item


@dataclass
class Group:
    """The rollouts of one prompt and their verdicts: one GRPO group (its size may differ between groups)."""

    completions: list[Completion]
    score: np.ndarray  # [size] the reward advantages are computed from
    acc: np.ndarray  # [size]
    format: np.ndarray  # [size]
    item: Item | None = None
    position: int = -1  # the prompt's index in the training list (the selector's id); -1 outside training

    @property
    def size(self) -> int:
        return len(self.score)

    @property
    def success_rate(self) -> float:
        return success_rate(self.acc)

    @property
    def num_correct(self) -> int:
        return int(np.sum(verifier_base.is_correct(self.acc)))

    @property
    def zero_variance(self) -> bool:
        """All rewards equal: every advantage is 0, so the group carries no policy gradient."""
        return bool(np.all(self.score == self.score[0]))

    @property
    def lengths(self) -> list[int]:
        return [len(c.token_ids) for c in self.completions]


@dataclass
class ScoredRollout:
    """What :func:`rollout_and_score` returns: the groups in ``items`` order and where the time went."""

    groups: list[Group]
    generate_seconds: float = 0.0
    score_seconds: float = 0.0
    verifier_errors: int = 0  # verifier calls that raised or returned an invalid verdict (each scored 0)
    verifier_timeouts: int = 0  # verifier calls that ran out of time, or waited too long for a worker (scored 0)


def rollout_and_score(engine: RolloutEngine, items: Sequence[Item], sizes: int | Sequence[int],
                      sampling: SamplingParams, *, reward_workers: int = 1,
                      positions: Sequence[int] | None = None) -> ScoredRollout:
    """Sample ``sizes`` completions of each item with ``engine`` and score each with the item's verifier.

    Args:
        sizes: rollouts per item, one int for all, or one per item (prompts of one size are generated in one
            ``engine.generate`` call, in ``items`` order; a size of 0 gives an empty group).
        reward_workers: threads scoring completions (the math verifier grades in worker processes, so threads
            overlap them).
        positions: each item's index in the caller's list, stored in :attr:`Group.position`.
    """
    per_item = [int(sizes)] * len(items) if isinstance(sizes, (int, np.integer)) else [int(s) for s in sizes]
    if len(per_item) != len(items) or any(size < 0 for size in per_item):
        raise ValueError(f"rollout_and_score: need one non-negative size per item, got {per_item} for "
                         f"{len(items)} items")
    t0 = time.perf_counter()
    outputs: list[list[Completion]] = [[] for _ in items]
    for size in sorted(set(per_item) - {0}):
        chosen = [i for i, s in enumerate(per_item) if s == size]
        rows = engine.generate([items[i] for i in chosen], size, sampling)
        if len(rows) != len(chosen) or any(len(row) != size for row in rows):
            raise RuntimeError(f"{type(engine).__name__}.generate returned {[len(r) for r in rows]} completions "
                               f"for {len(chosen)} items x k={size}; expected a {len(chosen)} x {size} nested list")
        for i, row in zip(chosen, rows, strict=True):
            outputs[i] = list(row)
    generate_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    errors_before, timeouts_before = verifier_base.error_count(), verifier_base.timeout_count()
    verdicts = _score(items, outputs, reward_workers)
    groups = [Group(completions=row, score=v[:, 0], acc=v[:, 1], format=v[:, 2], item=item,
                    position=-1 if positions is None else int(positions[i]))
              for i, (item, row, v) in enumerate(zip(items, outputs, verdicts, strict=True))]
    return ScoredRollout(groups=groups, generate_seconds=generate_seconds,
                         score_seconds=time.perf_counter() - t0,
                         verifier_errors=verifier_base.error_count() - errors_before,
                         verifier_timeouts=verifier_base.timeout_count() - timeouts_before)


def _score(items: Sequence[Item], outputs: Sequence[Sequence[Completion]], workers: int) -> list[np.ndarray]:
    """Per item, an array ``[size, 3]`` of (score, acc, format)."""
    from mmdps import verifiers

    jobs = [(item, completion) for item, row in zip(items, outputs, strict=True) for completion in row]
    verifier_of = {name: verifiers.get(name) for name in {item.verifier for item in items}}

    def score(job: tuple[Item, Completion]) -> tuple[float, float, float]:
        item, completion = job
        verdict = score_completion(item, completion.text, verifier_of[item.verifier])
        return verdict.score, verdict.acc, verdict.format

    if workers > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(workers) as pool:
            flat = list(pool.map(score, jobs))
    else:
        flat = [score(job) for job in jobs]
    out, start = [], 0
    for row in outputs:
        out.append(np.asarray(flat[start:start + len(row)], dtype=np.float64).reshape(len(row), 3))
        start += len(row)
    return out
