"""A DoPR-style one-shot selector ("Dynamic One-Shot Policy Refinement", arXiv 2602.00815).

RECONSTRUCTION: the paper publishes no equations or code; its abstract says each step trains on a
single sample chosen by reward volatility plus exploration-driven acquisition. Ours:

    a(x) = v(x) + c * sqrt(ln(t + 1) / (n(x) + 1))

``v(x)`` is the standard deviation of every reward seen for x (all rollouts of all visits; by the law of
total variance this is within-group spread plus how much the pass rate moved between visits), 0.5 (the
largest a binary reward can have) when never visited; ``n(x)`` its visits; ``t`` the number of updates.
``select(batch_size)`` draws ``batch_size`` candidates (a shuffled epoch order, or the given
``candidates``) and returns the ``shots`` (default 1) highest-scoring ones, so one step costs
``shots * k`` rollouts instead of ``B * k``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmdps.selection.base import Rewards, Selector, reward_sizes, reward_sums
from mmdps.selection.epoch_sampler import EpochSampler


class DoPRSelector(Selector):
    """One-shot (top-``shots``) selection by reward volatility plus a UCB-style exploration bonus."""

    name: ClassVar[str] = "dopr"
    _state_arrays: ClassVar[tuple[str, ...]] = ("visits", "reward_count", "reward_sum", "reward_sq_sum")
    _settings: ClassVar[tuple[str, ...]] = ("shots", "exploration", "rollouts_per_prompt")
    _state_checks: ClassVar[dict[str, str]] = {"visits": "count", "reward_count": "non_negative",
                                               "reward_sum": "finite", "reward_sq_sum": "non_negative"}

    def __init__(self, num_prompts: int, shots: int = 1, exploration: float = 0.5,
                 rollouts_per_prompt: int = 8, seed: int = 0) -> None:
        super().__init__(num_prompts, seed)
        if int(shots) < 1:
            raise ValueError(f"shots must be >= 1, got {shots!r}")
        if not np.isfinite(exploration) or exploration < 0:
            raise ValueError(f"exploration must be a finite number >= 0, got {exploration!r}")
        if int(rollouts_per_prompt) < 1:
            raise ValueError(f"rollouts_per_prompt must be >= 1, got {rollouts_per_prompt!r}")
        self.shots = int(shots)
        self.exploration = float(exploration)
        self.rollouts_per_prompt = int(rollouts_per_prompt)
        self.visits = np.zeros(self.num_prompts, dtype=np.int32)
        self.reward_count = np.zeros(self.num_prompts)
        self.reward_sum = np.zeros(self.num_prompts)
        self.reward_sq_sum = np.zeros(self.num_prompts)
        self.sampler = EpochSampler(self.num_prompts)

    def scores(self, ids: np.ndarray) -> np.ndarray:
        """Acquisition value a(x) of ``ids``."""
        count = self.reward_count[ids]
        seen = count > 0
        safe = np.where(seen, count, 1.0)
        mean = self.reward_sum[ids] / safe
        var = np.maximum(self.reward_sq_sum[ids] / safe - mean * mean, 0.0)
        volatility = np.where(seen, np.sqrt(var), 0.5)
        bonus = self.exploration * np.sqrt(np.log(self.steps + 1.0) / (self.visits[ids] + 1.0))
        return volatility + bonus

    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        if candidates is None:
            candidates = self.sampler.next(self.rng, batch_size)
        else:
            candidates = candidates[self._random_subset(candidates.size, batch_size)]
        return candidates[self._top_with_random_ties(self.scores(candidates), min(self.shots, batch_size))]

    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None:
        k = reward_sizes(rewards, self.rollouts_per_prompt)  # one per group when the groups differ in size
        if rewards is None:  # binary rewards: sum = sum of squares = s * k
            total = sq_total = rates * k
        else:
            total, sq_total = reward_sums(rewards)
        self.visits[ids] += 1
        self.reward_count[ids] += k
        self.reward_sum[ids] += total
        self.reward_sq_sum[ids] += sq_total

    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out["visited"] = float(np.count_nonzero(self.visits))
        return out
