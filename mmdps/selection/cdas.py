"""CDAS, Competence-Difficulty Alignment Sampling (Kong et al., arXiv 2505.17652, AAAI 2026).

Per prompt: a stable difficulty D (init 0) and a visit count t. Global: model competence C (init 0).
After a rollout of prompt x with success rate s (values from before this step's update):

    P_hat = sigmoid(C - D(x));  d = P_hat - s;  t(x) += 1;  D(x) += (d - D(x)) / t(x);  C = -mean_x D(x)

Selection: alignment A(x) = |C - D(x)|; the B/2 prompts with the smallest A among the slightly easier
(D <= C) and B - B/2 among the slightly harder (D > C), filling from the other side when one runs short.
The first ``warmup_epochs`` epochs sample uniformly so every prompt gets a first estimate.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmdps.selection.base import Rewards, Selector
from mmdps.selection.epoch_sampler import EpochSampler


class CDASSelector(Selector):
    """CDAS with symmetric sampling. ``count_initial=True`` reproduces the reference code, whose history
    starts with the initial 0 so the first observation gets weight 1/2 (the paper gives it weight 1)."""

    name: ClassVar[str] = "cdas"
    _state_arrays: ClassVar[tuple[str, ...]] = ("difficulty", "visits")
    _state_scalars: ClassVar[tuple[str, ...]] = ("competence", "difficulty_sum")
    _settings: ClassVar[tuple[str, ...]] = ("warmup_epochs", "count_initial")
    _state_checks: ClassVar[dict[str, str]] = {"difficulty": "finite", "visits": "count", "competence": "finite",
                                               "difficulty_sum": "finite"}

    def __init__(self, num_prompts: int, warmup_epochs: int = 1, count_initial: bool = False, seed: int = 0) -> None:
        super().__init__(num_prompts, seed)
        if int(warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")
        self.warmup_epochs = int(warmup_epochs)
        self.count_initial = bool(count_initial)
        self.difficulty = np.zeros(self.num_prompts)
        self.visits = np.zeros(self.num_prompts, dtype=np.int32)
        self.competence = 0.0
        self.difficulty_sum = 0.0
        self.sampler = EpochSampler(self.num_prompts)

    def in_warmup(self, batch_size: int) -> bool:
        """True while the uniform warm-up epochs are not finished."""
        s = self.sampler
        return s.epoch < self.warmup_epochs or (s.epoch == self.warmup_epochs
                                                and s.position + batch_size <= s.order.size)

    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        if self.in_warmup(batch_size):
            if candidates is not None:
                return candidates[self._random_subset(candidates.size, batch_size)]
            return self.sampler.next(self.rng, batch_size)
        pool = np.arange(self.num_prompts, dtype=np.int64) if candidates is None else candidates
        diff = self.difficulty if candidates is None else self.difficulty[candidates]
        alignment = np.abs(self.competence - diff)
        easier = np.flatnonzero(diff <= self.competence)
        harder = np.flatnonzero(diff > self.competence)
        n_easy = min(batch_size // 2, easier.size)
        n_hard = min(batch_size - n_easy, harder.size)
        n_easy = batch_size - n_hard  # fill from the easier side if the harder side ran short
        chosen = [easier[self._top_with_random_ties(-alignment[easier], n_easy)]] if n_easy else []
        if n_hard:
            chosen.append(harder[self._top_with_random_ties(-alignment[harder], n_hard)])
        return pool[np.concatenate(chosen)]

    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None:
        old = self.difficulty[ids]
        expected = 1.0 / (1.0 + np.exp(-(self.competence - old)))
        discrepancy = expected - rates
        self.visits[ids] += 1
        weight = self.visits[ids] + (1 if self.count_initial else 0)
        delta = (discrepancy - old) / weight
        self.difficulty[ids] = old + delta
        self.difficulty_sum += float(delta.sum())
        self.competence = -self.difficulty_sum / self.num_prompts

    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out["competence"] = self.competence
        out["visited"] = float(np.count_nonzero(self.visits))
        return out
