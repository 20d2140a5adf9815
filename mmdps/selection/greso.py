"""GRESO, GRPO with Efficient Selective Rollout (Zheng et al., arXiv 2506.02177).

Dynamic Sampling with a cheap pre-rollout filter: prompts whose most recent visits were all zero-variance
are skipped with a probability that grows with the length of that streak, and the exploration
probabilities adapt so that the zero-variance share of what is rolled out stays near a target.

Per prompt: ``easy_streak`` (consecutive most recent visits with ``s >= easy_threshold``) and
``hard_streak`` (consecutive most recent visits with ``s <= hard_threshold``; non-zero only if the latest
visit was hard). Before rollout, a prompt is kept with probability

    keep = max(p_easy ** easy_streak, floor)   if easy_streak > 0
           max(p_hard ** hard_streak, floor)   if hard_streak > 0
           1                                   otherwise (never seen, or last visit informative)

After each rollout round from the second epoch on, with tau_e = target / 3 and tau_h = 2 * target / 3:
``p_easy -= step`` if the round's easy share >= tau_e else ``p_easy += step`` (clipped to
[p_min, p_max]); the same for ``p_hard``. Rolled-out groups then go through the DS filter (``admit``
keeps ``0 < s < 1``) and the trainer refills up to ``max_rounds`` rounds.

Defaults follow the official code (verl fork, ``presampling_selector.py`` and ``ray_trainer.py``):
thresholds 0.98 / 0.11 (with k = 8 rollouts: all correct / all wrong), floor 0.01, p from 0.5 in
[0.05, 0.95] by steps of 0.01, target 0.25, sampling batch 1.5x the training batch (384 for 256).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from mmdps.selection.base import Rewards
from mmdps.selection.refill import RefillSelector


def keep_probabilities(easy_streak: np.ndarray, hard_streak: np.ndarray, p_easy: float, p_hard: float,
                       floor: float) -> np.ndarray:
    """Pre-rollout keep probability of each prompt from its zero-variance streaks (see module docstring)."""
    keep = np.ones(easy_streak.shape, dtype=np.float64)
    easy = easy_streak > 0
    hard = hard_streak > 0
    keep[easy] = np.maximum(p_easy ** easy_streak[easy].astype(np.float64), floor)
    keep[hard] = np.maximum(p_hard ** hard_streak[hard].astype(np.float64), floor)
    return keep


class GRESOSelector(RefillSelector):
    """GRESO: probabilistic pre-rollout skipping of recently zero-variance prompts, DS post-filter.

    ``select(B)`` walks the shuffled epoch order (the dataloader), skipping prompts at random by their
    keep probability, until ``ceil(oversample * B)`` prompts are kept. Skipped prompts are consumed for
    the epoch, as in the reference code. One ``select`` walks at most one pass over the pool; if that is
    not enough (nearly every prompt skippable), it tops up with skipped prompts so the trainer always
    gets a full round. ``update`` records streaks, counts rollouts and adapts ``p_easy``/``p_hard``.
    """

    name: ClassVar[str] = "greso"
    _state_arrays: ClassVar[tuple[str, ...]] = ("easy_streak", "hard_streak", "visits")
    _state_scalars: ClassVar[tuple[str, ...]] = ("p_easy", "p_hard", "skipped_easy", "skipped_hard", "topped_up")
    # p_easy / p_hard adapt during training (state); their starting values are settings
    _settings: ClassVar[tuple[str, ...]] = ("target_zero_variance", "p_easy_init", "p_hard_init", "p_min", "p_max",
                                            "p_step", "min_keep", "easy_threshold", "hard_threshold")
    _setting_options: ClassVar[dict[str, str]] = {"p_easy_init": "p_easy", "p_hard_init": "p_hard"}
    _state_checks: ClassVar[dict[str, str]] = {
        "easy_streak": "count", "hard_streak": "count", "visits": "count", "p_easy": "unit", "p_hard": "unit",
        "skipped_easy": "count", "skipped_hard": "count", "topped_up": "count", "last_shares": "share",
    }

    def __init__(
        self,
        num_prompts: int,
        oversample: float = 1.5,
        max_rounds: int = 10,
        rollouts_per_prompt: int = 8,
        target_zero_variance: float = 0.25,
        p_easy: float = 0.5,
        p_hard: float = 0.5,
        p_min: float = 0.05,
        p_max: float = 0.95,
        p_step: float = 0.01,
        min_keep: float = 0.01,
        easy_threshold: float = 0.98,
        hard_threshold: float = 0.11,
        seed: int = 0,
    ) -> None:
        super().__init__(num_prompts, oversample, max_rounds, rollouts_per_prompt, seed)
        if not 0.0 < target_zero_variance < 1.0:
            raise ValueError(f"target_zero_variance must be in (0, 1), got {target_zero_variance!r}")
        if not 0.0 < p_min <= p_max <= 1.0:
            raise ValueError(f"need 0 < p_min <= p_max <= 1, got p_min={p_min!r}, p_max={p_max!r}")
        for key, value in (("p_easy", p_easy), ("p_hard", p_hard)):
            if not p_min <= value <= p_max:
                raise ValueError(f"{key} must lie in [p_min, p_max] = [{p_min}, {p_max}], got {value!r}")
        if not 0.0 <= p_step < 1.0:
            raise ValueError(f"p_step must be in [0, 1), got {p_step!r}")
        if not 0.0 < min_keep <= 1.0:
            raise ValueError(f"min_keep (the exploration floor) must be in (0, 1], got {min_keep!r}")
        if not 0.0 <= hard_threshold < easy_threshold <= 1.0:
            raise ValueError(
                f"need 0 <= hard_threshold < easy_threshold <= 1, got {hard_threshold!r} and {easy_threshold!r}"
            )
        self.target_zero_variance = float(target_zero_variance)
        self.target_easy = float(target_zero_variance) / 3.0
        self.target_hard = 2.0 * float(target_zero_variance) / 3.0  # more exploration of hard prompts
        self.p_easy, self.p_hard = float(p_easy), float(p_hard)
        self.p_easy_init, self.p_hard_init = self.p_easy, self.p_hard
        self.p_min, self.p_max, self.p_step = float(p_min), float(p_max), float(p_step)
        self.min_keep = float(min_keep)
        self.easy_threshold, self.hard_threshold = float(easy_threshold), float(hard_threshold)
        self.easy_streak = np.zeros(self.num_prompts, dtype=np.int32)
        self.hard_streak = np.zeros(self.num_prompts, dtype=np.int32)
        self.visits = np.zeros(self.num_prompts, dtype=np.int32)
        self.skipped_easy = 0
        self.skipped_hard = 0
        self.topped_up = 0
        self._last_easy_share = float("nan")
        self._last_hard_share = float("nan")

    @property
    def epoch(self) -> int:
        """0-based epoch of the walk over the pool (0 during the first pass)."""
        return max(self.sampler.epoch - 1, 0)

    def keep_probability(self, ids: np.ndarray | None = None) -> np.ndarray:
        """The current pre-rollout keep probability of ``ids`` (default: every prompt)."""
        idx = slice(None) if ids is None else self._check_ids(ids, "ids")
        return keep_probabilities(self.easy_streak[idx], self.hard_streak[idx], self.p_easy, self.p_hard,
                                  self.min_keep)

    # ------------------------------------------------------------------ selection
    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        if candidates is not None:
            target = min(candidates.size, math.ceil(self.oversample * batch_size))
            order = candidates[self.rng.permutation(candidates.size)]
            kept, skipped = self._filter(order)
            return self._top_up(kept[:target], skipped, target)
        target = min(self.num_prompts, math.ceil(self.oversample * batch_size))
        sampler = self.sampler
        kept_parts: list[np.ndarray] = []
        skipped_parts: list[np.ndarray] = []
        have, walked = 0, 0
        while have < target and walked < self.num_prompts:  # at most one pass over the pool per call
            if sampler.position >= sampler.order.size:  # epoch finished (or first call): reshuffle
                sampler.order = self.rng.permutation(self.num_prompts).astype(sampler.order.dtype)
                sampler.position = 0
                sampler.epoch += 1
            need = target - have
            size = min(sampler.order.size - sampler.position, self.num_prompts - walked, max(2 * need, 32))
            chunk = sampler.order[sampler.position : sampler.position + size].astype(np.int64)
            prob = self._keep_prob(chunk)
            keep = self.rng.random(chunk.size) < prob
            # A walk that wrapped into a new epoch may meet a prompt it already kept: pass over it.
            repeat = np.isin(chunk, np.concatenate(kept_parts)) if have else np.zeros(chunk.size, dtype=bool)
            keep &= ~repeat
            # Consume the order only up to the prompt that completes the round; the rest stays for later.
            cum = np.cumsum(keep)
            stop = chunk.size if cum[-1] < need else int(np.searchsorted(cum, need)) + 1
            sampler.position += stop
            walked += stop
            kept_parts.append(chunk[:stop][keep[:stop]])
            skipped = ~keep[:stop] & ~repeat[:stop]
            skipped_parts.append(chunk[:stop][skipped])
            self._count_skips(chunk[:stop][skipped])
            have += int(kept_parts[-1].size)
        kept = np.concatenate(kept_parts) if kept_parts else np.empty(0, dtype=np.int64)
        skipped_ids = np.concatenate(skipped_parts) if skipped_parts else np.empty(0, dtype=np.int64)
        return self._top_up(kept, skipped_ids, target)

    def _keep_prob(self, ids: np.ndarray) -> np.ndarray:
        return keep_probabilities(self.easy_streak[ids], self.hard_streak[ids], self.p_easy, self.p_hard,
                                  self.min_keep)

    def _count_skips(self, skipped: np.ndarray) -> None:
        self.skipped_easy += int(np.count_nonzero(self.easy_streak[skipped] > 0))
        self.skipped_hard += int(np.count_nonzero(self.hard_streak[skipped] > 0))

    def _filter(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply the skip rule to ``ids`` (one uniform draw each): (kept, skipped)."""
        keep = self.rng.random(ids.size) < self._keep_prob(ids)
        self._count_skips(ids[~keep])
        return ids[keep], ids[~keep]

    def _top_up(self, kept: np.ndarray, skipped: np.ndarray, target: int) -> np.ndarray:
        """Fill a round that the skip rule left short with skipped prompts, at random."""
        need = target - kept.size
        if need <= 0:
            return kept[:target]
        extra = skipped[self._random_subset(skipped.size, min(need, skipped.size))]
        self.topped_up += int(extra.size)
        return np.concatenate([kept, extra])

    # ------------------------------------------------------------------ update and filter
    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None:
        easy = rates >= self.easy_threshold
        hard = rates <= self.hard_threshold
        self.easy_streak[ids] = np.where(easy, self.easy_streak[ids] + 1, 0)
        self.hard_streak[ids] = np.where(hard, self.hard_streak[ids] + 1, 0)
        self.visits[ids] += 1
        self._count_rollouts(ids, rewards)
        self._last_easy_share = float(easy.mean()) if ids.size else float("nan")
        self._last_hard_share = float(hard.mean()) if ids.size else float("nan")
        if self.epoch > 0 and ids.size:  # the reference code adapts from the second epoch on
            self.p_easy = self._adapt(self.p_easy, self._last_easy_share, self.target_easy)
            self.p_hard = self._adapt(self.p_hard, self._last_hard_share, self.target_hard)

    def _adapt(self, p: float, share: float, target: float) -> float:
        """Too many zero-variance prompts of this kind -> explore less (lower p), else more."""
        p = p - self.p_step if share >= target else p + self.p_step
        return float(min(max(p, self.p_min), self.p_max))

    # ------------------------------------------------------------------ diagnostics and state
    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out["p_easy"] = self.p_easy
        out["p_hard"] = self.p_hard
        out["easy_share"] = self._last_easy_share
        out["hard_share"] = self._last_hard_share
        out["skipped_easy"] = float(self.skipped_easy)
        out["skipped_hard"] = float(self.skipped_hard)
        out["topped_up"] = float(self.topped_up)
        out["epoch"] = float(self.epoch)
        return out

    def _array_keys(self) -> tuple[str, ...]:
        return super()._array_keys() + ("last_shares",)

    def _export_arrays(self) -> dict[str, np.ndarray]:
        return {**super()._export_arrays(), "last_shares": np.array([self._last_easy_share, self._last_hard_share])}

    def _import_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        shares = np.asarray(arrays["last_shares"], dtype=np.float64)
        if shares.shape != (2,):
            raise ValueError(f"state_dict['last_shares'] has shape {shares.shape}, expected (2,)")
        self._last_easy_share, self._last_hard_share = (float(x) for x in shares)
        super()._import_arrays(arrays)
