"""MoPPS, Model Predictive Prompt Selection (Qu et al., arXiv 2507.04632).

Each prompt's success rate has a Beta(alpha, beta) posterior, updated only when the prompt is rolled
out: ``alpha <- lam*alpha + (1-lam)*alpha0 + s*k``, ``beta <- lam*beta + (1-lam)*beta0 + (1-s)*k``.
Selection draws one Thompson sample per candidate and keeps the B closest to the target rate ('topk')
or B random ones inside [lower, upper] ('threshold', topped up by distance to the band).

Calibration (``calibration.py``): every update scores the posterior mean alpha / (alpha + beta) of each
rolled-out prompt, taken before the rollout, against its observed success rate: squared error (``brier``)
and a reliability diagram of the predicted against the observed success rate.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmdps.selection.allocation import beta_signal_table
from mmdps.selection.base import Rewards, Selector, reward_sizes
from mmdps.selection.calibration import Calibration

STRATEGIES = ("topk", "threshold")


class MoPPSSelector(Selector):
    """Beta-Bernoulli bandit with Thompson sampling over a random candidate pool.

    ``candidate_ratio`` (the code's ``ts_ratio``: 16 in the MATH scripts, 8 for Countdown and Geo3K) sizes
    the candidate pool at ``candidate_ratio * batch_size`` prompts, drawn like the official dataloader batch:
    from a shuffled epoch order without replacement (``drop_last``, see ``base.py``); ``None`` (the default,
    as for every selector that ranks candidates) uses the whole pool every step.
    """

    name: ClassVar[str] = "mopps"
    takes_candidates: ClassVar[bool] = True
    _state_arrays: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    _settings: ClassVar[tuple[str, ...]] = ("decay", "rollouts_per_prompt", "target", "strategy", "prior_alpha",
                                            "prior_beta", "lower", "upper")
    _state_checks: ClassVar[dict[str, str]] = {"alpha": "positive", "beta": "positive",
                                               **Calibration.state_checks("calibration_")}

    def __init__(
        self,
        num_prompts: int,
        decay: float = 1.0,
        rollouts_per_prompt: int = 8,
        target: float = 0.5,
        strategy: str = "topk",
        seed: int = 0,
        candidate_ratio: float | None = None,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        lower: float = 0.3,
        upper: float = 0.7,
    ) -> None:
        super().__init__(num_prompts, seed, candidate_ratio)
        if not 0.0 < float(decay) <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay!r}")
        if int(rollouts_per_prompt) < 1:
            raise ValueError(f"rollouts_per_prompt must be >= 1, got {rollouts_per_prompt!r}")
        if not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"target must be in [0, 1], got {target!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if not (prior_alpha > 0 and prior_beta > 0):
            raise ValueError(f"prior_alpha and prior_beta must be > 0, got {prior_alpha!r}, {prior_beta!r}")
        if not 0.0 <= lower <= upper <= 1.0:
            raise ValueError(f"need 0 <= lower <= upper <= 1, got lower={lower!r}, upper={upper!r}")
        self.decay = float(decay)
        self.rollouts_per_prompt = int(rollouts_per_prompt)
        self.target = float(target)
        self.strategy = strategy
        self.prior_alpha, self.prior_beta = float(prior_alpha), float(prior_beta)
        self.lower, self.upper = float(lower), float(upper)
        self.alpha = np.full(self.num_prompts, self.prior_alpha)
        self.beta = np.full(self.num_prompts, self.prior_beta)
        self._last_abs_error = float("nan")
        self._calibration = Calibration()

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the Beta posterior parameters (alpha, beta), one entry per prompt."""
        return self.alpha.copy(), self.beta.copy()

    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray:
        if candidates is None:  # the whole pool (candidate_ratio None, or its candidates cover the pool)
            candidates = np.arange(self.num_prompts, dtype=np.int64)
        draws = self.rng.beta(self.alpha[candidates], self.beta[candidates])
        if self.strategy == "topk":
            return candidates[self._top_with_random_ties(-np.square(draws - self.target), batch_size)]
        inside = np.flatnonzero((draws >= self.lower) & (draws <= self.upper))
        if inside.size >= batch_size:
            return candidates[inside[self._random_subset(inside.size, batch_size)]]
        gap = np.maximum(np.maximum(self.lower - draws, draws - self.upper), 0.0)
        return candidates[self._top_with_random_ties(-gap, batch_size)]

    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None:
        k = reward_sizes(rewards, self.rollouts_per_prompt)  # one per group when the groups differ in size
        a, b = self.alpha[ids], self.beta[ids]
        predicted = a / (a + b)  # the posterior mean before this rollout
        self._last_abs_error = float(np.mean(np.abs(predicted - rates))) if ids.size else float("nan")
        self._calibration.add(np.square(predicted - rates), predicted, rates)
        self.alpha[ids] = self.decay * a + (1.0 - self.decay) * self.prior_alpha + rates * k
        self.beta[ids] = self.decay * b + (1.0 - self.decay) * self.prior_beta + (1.0 - rates) * k

    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out["posterior_mean_abs_error"] = self._last_abs_error
        out.update(self._calibration.diagnostics())
        return out

    def reliability(self) -> np.ndarray:
        """The cumulative reliability diagram of the posterior mean, [10 bins, 3]: mean predicted success rate,
        mean observed success rate (NaN where empty) and count."""
        return self._calibration.reliability_table()

    def _array_keys(self) -> tuple[str, ...]:
        return super()._array_keys() + ("calibration_brier", "calibration_reliability")

    def _export_arrays(self) -> dict[str, np.ndarray]:
        return {**super()._export_arrays(), **self._calibration.state("calibration_")}

    def _import_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        calibration = Calibration()
        calibration.load(arrays, "calibration_")  # checked before anything is restored
        super()._import_arrays(arrays)
        self._calibration = calibration

    predicts_signal: ClassVar[bool] = True

    def predict(self, ids: np.ndarray) -> np.ndarray:
        """The posterior mean success rate alpha / (alpha + beta) of ``ids``."""
        ids = self._check_ids(ids, "ids")
        return self.alpha[ids] / (self.alpha[ids] + self.beta[ids])

    def signal_probability(self, ids: np.ndarray, k_max: int) -> np.ndarray:
        """P(k rollouts are not all equal) under the Beta posterior predictive, k = 0..k_max
        (:func:`~mmdps.selection.allocation.beta_signal_table`)."""
        ids = self._check_ids(ids, "ids")
        return beta_signal_table(self.alpha[ids], self.beta[ids], k_max)
