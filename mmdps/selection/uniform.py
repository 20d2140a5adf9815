"""Uniform sampling, the GRPO default: a shuffled pass over the dataset, a fresh shuffle every epoch."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmdps.selection.base import Rewards, Selector
from mmdps.selection.epoch_sampler import EpochSampler


class UniformSelector(Selector):
    """Uniform random batches (epoch-shuffled over the pool, or a random subset of ``candidates``)."""

    name: ClassVar[str] = "uniform"
    _state_scalars: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_prompts: int, seed: int = 0) -> None:
        super().__init__(num_prompts, seed)
        self.sampler = EpochSampler(self.num_prompts)

    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        if candidates is not None:
            return candidates[self._random_subset(candidates.size, batch_size)]
        return self.sampler.next(self.rng, batch_size)

    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None:
        pass  # stateless

    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out["epoch"] = float(self.sampler.epoch)
        return out

