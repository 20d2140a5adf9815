"""The library's success rule at the trainer boundary: which completions a selector counts as correct.

A completion is correct iff its accuracy ``acc >= CORRECT_ACC`` (:func:`mmdps.verifiers.base.is_correct`).
A reward coming from another trainer is only taken as that accuracy when it is exactly 0 or 1 (NaN: not
applicable); any other value is refused, because a shaped reward (0.1 for a well-formatted wrong answer)
read as a success rate makes an all-wrong prompt look partially solved, silently. ``success_threshold``
is the explicit opt-in for a shaped reward: a value ``>= threshold`` counts as correct.

numpy only (plus :mod:`mmdps.verifiers.base`, stdlib): a verl environment installs mmdps without its
dependencies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmdps.verifiers.base import is_correct


def correct_flags(values: Any, success_threshold: float | None, source: str, fixes: str) -> np.ndarray:
    """1.0 (correct) / 0.0 per completion, NaN kept (not applicable), under the success rule above.

    ``source`` names where the values come from (a reward function, a batch key) and ``fixes`` says how
    to repair a refused value in that trainer's terms; both go into the error.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    missing = np.isnan(arr)
    if np.isinf(arr).any():
        raise ValueError(f"{source} gave an infinite value ({float(arr[np.isinf(arr)][0])}); rewards must be finite")
    if success_threshold is not None:
        threshold = float(success_threshold)
        if not np.isfinite(threshold):
            raise ValueError(f"success_threshold must be a finite number, got {success_threshold!r}")
        flags = (arr >= threshold).astype(np.float64)
    else:
        bad = ~missing & (arr != 0.0) & (arr != 1.0)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{source} gave {float(arr[first])!r} (completion {first}), but with no success_threshold an accuracy "
                "reward must be exactly 0 or 1: a completion is correct iff acc >= 1.0, and a shaped reward "
                f"read as a success rate would record wrong answers as partly right. Fix: {fixes}"
            )
        flags = is_correct(arr).astype(np.float64)
    return np.where(missing, np.nan, flags)
