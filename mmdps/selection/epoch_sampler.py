"""Shuffled passes over the prompt pool, shared by the selectors that draw candidates epoch by epoch."""

from __future__ import annotations

import numpy as np

from mmdps.selection.state_checks import DAMAGED, check_state_value

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


def check_sampler_state(n: int, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
    """Raise ``ValueError`` naming the key unless ``arrays`` restore an ``EpochSampler`` over ``n`` prompts."""
    order = np.asarray(arrays["epoch_order"])
    check_state_value(prefix + "epoch_order", order, "count")
    if order.ndim != 1 or (order.size and (order.size != n or order.max() >= n
                                           or np.bincount(order.astype(np.int64), minlength=n).max() > 1)):
        raise ValueError(f"state_dict[{prefix + 'epoch_order'!r}] must be empty or a permutation of {n} ids, "
                         f"got shape {order.shape}: {DAMAGED}")
    check_state_value(prefix + "epoch", arrays["epoch"], "count")
    check_state_value(prefix + "epoch_position", arrays["epoch_position"], "count")
    if int(arrays["epoch_position"]) > order.size:
        raise ValueError(f"state_dict[{prefix + 'epoch_position'!r}] = {int(arrays['epoch_position'])} is past the "
                         f"end of the epoch order ({order.size} ids): {DAMAGED}")


def load_sampler_state(sampler: EpochSampler, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
    check_sampler_state(sampler.n, arrays, prefix)
    order = np.asarray(arrays["epoch_order"])
    sampler.order = order.astype(sampler.order.dtype, copy=True)
    sampler.position = int(arrays["epoch_position"])
    sampler.epoch = int(arrays["epoch"])
