"""DAPO Dynamic Sampling (Yu et al. 2025, arXiv 2503.14476): over-sample, keep non-degenerate groups, refill.

Protocol for one trainer step (the base-module loop with ``max_rounds`` > 1)::

    admitted = []
    for round in range(selector.max_rounds):
        ids = selector.select(batch_size)        # ceil(oversample * batch_size) ids, capped by the pool
        rates = rollout(ids)                     # k rollouts per id -> per-prompt success rate
        selector.update(ids, rates)              # counts the rollouts spent (len(ids) * k)
        admitted += list(ids[selector.admit(ids, rates)])   # keeps 0 < s < 1
        if len(admitted) >= batch_size: break
    train on admitted[:batch_size]   # fewer when the cap is hit; the surplus is discarded

``select`` draws from a shuffled epoch order, so the rounds of one step never repeat a prompt within an
epoch. Passing the remaining count instead of ``batch_size`` in later rounds (GRESO-style adaptive refill)
also works. ``diagnostics()["rollouts_spent"]`` is exact: every rolled-out id is passed to ``update``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from mmdps.selection.base import Rewards
from mmdps.selection.refill import RefillSelector, check_refill_settings

__all__ = ["DynamicSamplingSelector", "check_refill_settings"]


class DynamicSamplingSelector(RefillSelector):
    """DAPO Dynamic Sampling with rollout accounting.

    Defaults follow the published DAPO recipe (generation batch 3x the training batch, at most 10
    rounds); the DPS paper's DS runs used ``oversample=1.0`` with 4 (MATH) or 10 rounds.
    """

    name: ClassVar[str] = "ds"

    def __init__(
        self,
        num_prompts: int,
        oversample: float = 3.0,
        max_rounds: int = 10,
        rollouts_per_prompt: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__(num_prompts, oversample, max_rounds, rollouts_per_prompt, seed)

    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        pool = self.num_prompts if candidates is None else candidates.size
        size = min(pool, math.ceil(self.oversample * batch_size))
        if candidates is not None:
            return candidates[self._random_subset(pool, size)]
        return self.sampler.next(self.rng, size)

    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None:
        self._count_rollouts(ids, rewards)
