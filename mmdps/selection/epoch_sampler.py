"""Shuffled passes over the prompt pool, shared by the selectors that draw candidates epoch by epoch."""

from __future__ import annotations

import numpy as np

SAMPLER_KEYS = ("epoch_order", "epoch_position", "epoch")


class EpochSampler:
    """Draws batches from a seeded permutation of ``range(n)`` without replacement within an epoch.

    When fewer prompts than asked remain in the epoch, the remainder is dropped and a new epoch starts
    (``drop_last`` semantics, so a batch never holds a prompt twice).
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.order = np.empty(0, dtype=np.int32 if n < 2**31 else np.int64)
        self.position = 0
        self.epoch = 0

    def next(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.position + size > self.order.size:
            self.order = rng.permutation(self.n).astype(self.order.dtype)
            self.position = 0
            self.epoch += 1
        out = self.order[self.position : self.position + size].astype(np.int64)
        self.position += size
        return out


def sampler_state(sampler: EpochSampler) -> dict[str, np.ndarray]:
    """The arrays that restore an ``EpochSampler``."""
    return {"epoch_order": sampler.order, "epoch_position": np.array(sampler.position),
            "epoch": np.array(sampler.epoch)}


def load_sampler_state(sampler: EpochSampler, arrays: dict[str, np.ndarray]) -> None:
    order = np.asarray(arrays["epoch_order"])
    if order.ndim != 1 or (order.size and order.size != sampler.n):
        raise ValueError(f"state_dict['epoch_order'] must be empty or a permutation of {sampler.n} ids, "
                         f"got shape {order.shape}")
    sampler.order = order.astype(sampler.order.dtype, copy=True)
    sampler.position = int(arrays["epoch_position"])
    sampler.epoch = int(arrays["epoch"])
