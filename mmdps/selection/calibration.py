"""How well a selector's predictions matched what the rollouts showed: Brier score and reliability diagram.

A selector that predicts something about a prompt before rolling it out (DPS: the solving-state belief,
MoPPS: the success rate) feeds a ``Calibration`` with, per rolled-out prompt, the squared error of the
prediction made BEFORE the rollout and the pair (predicted probability, observed outcome) of one quantity
(DPS: P(partial) against "the group was partial"; MoPPS: the posterior mean against the success rate).
It keeps the last update's mean squared error, the running mean over all updates, and a reliability
diagram: ``bins`` equal-width bins of the predicted probability, each with the mean prediction, the mean
observed outcome and the count (cumulative). Its state is two small arrays, saved with the selector.
"""

from __future__ import annotations

import numpy as np

RELIABILITY_BINS = 10


def brier_scores(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per item, the Brier score ``sum_c (predicted[c] - onehot(observed)[c])^2`` of a predicted distribution
    ``predicted`` [n, classes] against the observed class ``observed`` [n] (0 = perfect, 2 = worst)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    onehot = np.zeros_like(predicted)
    onehot[np.arange(predicted.shape[0]), np.asarray(observed, dtype=np.int64)] = 1.0
    return np.square(predicted - onehot).sum(axis=1)


class Calibration:
    """Brier score per update and cumulative, and a cumulative reliability diagram of one probability."""

    def __init__(self, bins: int = RELIABILITY_BINS) -> None:
        self.bins = int(bins)
        # [last update's error sum, its count, all updates' error sum, their count]
        self.brier = np.zeros(4)
        # [sum of predictions, sum of observed outcomes, count] per bin
        self.reliability = np.zeros((3, self.bins))

    def add(self, squared_errors: np.ndarray, predicted: np.ndarray, observed: np.ndarray) -> None:
        """One update: per-item squared errors, and the predicted probability with the observed outcome
        (in [0, 1]) of the quantity the reliability diagram shows."""
        errors = np.asarray(squared_errors, dtype=np.float64)
        self.brier[0], self.brier[1] = errors.sum(), errors.size
        self.brier[2] += errors.sum()
        self.brier[3] += errors.size
        if errors.size == 0:
            return
        predicted = np.asarray(predicted, dtype=np.float64)
        which = np.clip((predicted * self.bins).astype(np.int64), 0, self.bins - 1)  # p == 1 in the top bin
        self.reliability[0] += np.bincount(which, weights=predicted, minlength=self.bins)
        self.reliability[1] += np.bincount(which, weights=np.asarray(observed, dtype=np.float64), minlength=self.bins)
        self.reliability[2] += np.bincount(which, minlength=self.bins)

    def diagnostics(self, prefix: str = "") -> dict[str, float]:
        """``brier`` (last update; NaN when it held no prompt), ``brier_mean`` (all updates),
        ``calibration_error`` (count-weighted mean |predicted - observed| over the bins) and
        ``reliability/bin_<i>/{predicted,observed,count}`` for the non-empty bins only."""
        last_sum, last_n, total_sum, total_n = self.brier
        out = {f"{prefix}brier": float(last_sum / last_n) if last_n else float("nan"),
               f"{prefix}brier_mean": float(total_sum / total_n) if total_n else float("nan")}
        pred_sum, obs_sum, count = self.reliability
        filled = np.flatnonzero(count)
        gaps = np.abs(pred_sum[filled] - obs_sum[filled])  # count * |mean predicted - mean observed|
        out[f"{prefix}calibration_error"] = float(gaps.sum() / count.sum()) if filled.size else float("nan")
        for i in filled:
            key = f"{prefix}reliability/bin_{i}"
            out[f"{key}/predicted"] = float(pred_sum[i] / count[i])
            out[f"{key}/observed"] = float(obs_sum[i] / count[i])
            out[f"{key}/count"] = float(count[i])
        return out

    def reliability_table(self) -> np.ndarray:
        """[bins, 3]: mean prediction, mean observed outcome (NaN for empty bins) and count per bin."""
        pred_sum, obs_sum, count = self.reliability
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.stack([pred_sum / count, obs_sum / count, count], axis=1)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}brier": self.brier, f"{prefix}reliability": self.reliability}

    def load(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        """Restore ``state(prefix)``; a state written before calibration existed (keys absent) starts empty."""
        brier_key, rel_key = f"{prefix}brier", f"{prefix}reliability"
        brier = np.asarray(arrays.get(brier_key, np.zeros(4)), dtype=np.float64)
        reliability = np.asarray(arrays.get(rel_key, np.zeros((3, self.bins))), dtype=np.float64)
        if brier.shape != (4,):
            raise ValueError(f"state_dict[{brier_key!r}] has shape {brier.shape}, expected (4,)")
        if reliability.shape != (3, self.bins):
            raise ValueError(f"state_dict[{rel_key!r}] has shape {reliability.shape}, expected {(3, self.bins)}")
        self.brier, self.reliability = brier.copy(), reliability.copy()

    @staticmethod
    def state_checks(prefix: str) -> dict[str, str]:
        return {f"{prefix}brier": "non_negative", f"{prefix}reliability": "non_negative"}
