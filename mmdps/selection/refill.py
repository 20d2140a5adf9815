"""What the selectors that over-sample and refill (Dynamic Sampling, GRESO) share: their settings, the DS
filter (keep groups with 0 < s < 1) and the count of every prompt and rollout they spend."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmdps.selection.base import Rewards, Selector, reward_sizes
from mmdps.selection.epoch_sampler import EpochSampler


def check_refill_settings(oversample: float, max_rounds: int, rollouts_per_prompt: int) -> None:
    """Validate the settings shared by the selectors that over-sample and refill (DS, GRESO)."""
    if not np.isfinite(oversample) or oversample < 1.0:
        raise ValueError(f"oversample must be >= 1 (prompts rolled out per round / training batch), got {oversample!r}")
    if int(max_rounds) < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds!r}")
    if int(rollouts_per_prompt) < 1:
        raise ValueError(f"rollouts_per_prompt must be >= 1, got {rollouts_per_prompt!r}")


class RefillSelector(Selector):
    """Base of DS and GRESO: ``oversample`` x B prompts per round, up to ``max_rounds`` rounds, the DS
    post-rollout filter and rollout accounting. Subclasses call ``_count_rollouts`` from ``_update``."""

    _state_scalars: ClassVar[tuple[str, ...]] = ("rollouts_spent", "prompts_rolled_out", "rounds", "admitted")
    _settings: ClassVar[tuple[str, ...]] = ("oversample", "max_rounds", "rollouts_per_prompt")
    _state_checks: ClassVar[dict[str, str]] = dict.fromkeys(_state_scalars, "count")

    def __init__(self, num_prompts: int, oversample: float, max_rounds: int, rollouts_per_prompt: int,
                 seed: int) -> None:
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

    def _count_rollouts(self, ids: np.ndarray, rewards: Rewards | None) -> None:
        """One rollout round of ``ids``: k rollouts each (the rewards' sizes when given)."""
        k = reward_sizes(rewards, self.rollouts_per_prompt)
        self.rollouts_spent += ids.size * k if isinstance(k, int) else int(k.sum())
        self.prompts_rolled_out += ids.size
        self.rounds += 1

    def admit(self, ids: np.ndarray, success_rates: np.ndarray) -> np.ndarray:
        """Keep the groups whose rewards are not all equal: 0 < s < 1 (the DS filter)."""
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
