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

from mmdps.selection.base import Selector
from mmdps.selection.epoch_sampler import EpochSampler


def check_refill_settings(oversample: float, max_rounds: int, rollouts_per_prompt: int) -> None:
    """Validate the settings shared by the selectors that over-sample and refill (DS, GRESO)."""
    if not np.isfinite(oversample) or oversample < 1.0:
        raise ValueError(f"oversample must be >= 1 (prompts rolled out per round / training batch), got {oversample!r}")
    if int(max_rounds) < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds!r}")
    if int(rollouts_per_prompt) < 1:
        raise ValueError(f"rollouts_per_prompt must be >= 1, got {rollouts_per_prompt!r}")


class DynamicSamplingSelector(Selector):
    """DAPO Dynamic Sampling with rollout accounting.

    Defaults follow the published DAPO recipe (generation batch 3x the training batch, at most 10
    rounds); the DPS paper's DS runs used ``oversample=1.0`` with 4 (MATH) or 10 rounds.
    """

    name: ClassVar[str] = "ds"
    _state_scalars: ClassVar[tuple[str, ...]] = ("rollouts_spent", "prompts_rolled_out", "rounds", "admitted")

    def __init__(
        self,
        num_prompts: int,
        oversample: float = 3.0,
        max_rounds: int = 10,
        rollouts_per_prompt: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__(num_prompts, seed)
        check_refill_settings(oversample, max_rounds, rollouts_per_prompt)
        self.oversample = float(oversample)
        self.max_rounds = int(max_rounds)
        self.rollouts_per_prompt = int(rollouts_per_prompt)
        self.sampler = EpochSampler(self.num_prompts)
        self.rollouts_spent = 0
        self.prompts_rolled_out = 0
        self.rounds = 0
        self.admitted = 0

    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        pool = self.num_prompts if candidates is None else candidates.size
        size = min(pool, math.ceil(self.oversample * batch_size))
        if candidates is not None:
            return candidates[self._random_subset(pool, size)]
        return self.sampler.next(self.rng, size)

    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: np.ndarray | None) -> None:
        k = self.rollouts_per_prompt if rewards is None else rewards.shape[1]
        self.rollouts_spent += ids.size * k
        self.prompts_rolled_out += ids.size
        self.rounds += 1

    def admit(self, ids: np.ndarray, success_rates: np.ndarray) -> np.ndarray:
        """Keep the groups whose rewards are not all equal: 0 < s < 1."""
        super().admit(ids, success_rates)
        rates = np.asarray(success_rates, dtype=np.float64)
        keep = (rates > 0.0) & (rates < 1.0)
        self.admitted += int(keep.sum())
        return keep

    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out["rollouts_spent"] = float(self.rollouts_spent)
        out["prompts_rolled_out"] = float(self.prompts_rolled_out)
        out["rounds"] = float(self.rounds)
        out["admitted"] = float(self.admitted)
        out["admit_ratio"] = self.admitted / self.prompts_rolled_out if self.prompts_rolled_out else float("nan")
        return out
