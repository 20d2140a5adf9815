"""Checks of a loaded selector state: a damaged checkpoint stops the resume with the key that is wrong.

Each rule names what a state entry must hold. ``check_state_value(key, value, rule)`` raises a
``ValueError`` naming ``state_dict[key]``, the rule, the first offending entry and the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

PROBABILITY_TOLERANCE = 1e-6  # |column sum - 1| allowed for a stored probability vector
DAMAGED = ("the saved selector state is damaged or was edited; resume from an earlier checkpoint, or start a new "
           "output directory")


def _elementwise(ok: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], str | None]:
    def rule(arr: np.ndarray) -> str | None:
        with np.errstate(invalid="ignore"):
            bad = ~ok(arr)
        if not bad.any():
            return None
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"got {float(arr[index]):g}" + (f" at index {index}" if index else "")
    return rule


def _columns(ok: Callable[[np.ndarray], np.ndarray], what: str) -> Callable[[np.ndarray], str | None]:
    """Non-negative finite entries whose sums over axis 0 (one column per prompt) pass ``ok``."""
    entries = _elementwise(lambda a: np.isfinite(a) & (a >= 0))

    def rule(arr: np.ndarray) -> str | None:
        detail = entries(arr)
        if detail is not None or arr.size == 0:
            return detail
        sums = np.atleast_1d(arr.sum(axis=0))
        bad = np.flatnonzero(~ok(sums))
        return None if bad.size == 0 else f"column {int(bad[0])} {what} {float(sums[bad[0]]):g}"
    return rule


# rule -> (what the entry must hold, check returning None or the first problem)
RULES: dict[str, tuple[str, Callable[[np.ndarray], str | None]]] = {
    "count": ("whole numbers >= 0", _elementwise(lambda a: np.isfinite(a) & (a >= 0) & (a == np.round(a)))),
    "non_negative": ("finite numbers >= 0", _elementwise(lambda a: np.isfinite(a) & (a >= 0))),
    "positive": ("finite numbers > 0", _elementwise(lambda a: np.isfinite(a) & (a > 0))),
    "finite": ("finite numbers", _elementwise(np.isfinite)),
    "unit": ("numbers in [0, 1]", _elementwise(lambda a: (a >= 0) & (a <= 1))),
    "share": ("NaN (nothing measured yet) or numbers in [0, 1]",
              _elementwise(lambda a: np.isnan(a) | ((a >= 0) & (a <= 1)))),
    "probability": ("probability vectors (non-negative entries summing to 1 over axis 0)",
                    _columns(lambda s: np.abs(s - 1.0) <= PROBABILITY_TOLERANCE, "sums to")),
    "dirichlet": ("Dirichlet counts (non-negative entries with a positive sum over axis 0)",
                  _columns(lambda s: s > 0, "sums to")),
}


def check_state_value(key: str, value: Any, rule: str) -> None:
    """Raise ``ValueError`` unless ``value`` (stored as ``state_dict[key]``) satisfies ``rule`` (see ``RULES``)."""
    what, check = RULES[rule]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"state_dict[{key!r}] must hold {what}, got {value!r} ({arr.dtype}): {DAMAGED}")
    detail = check(arr.astype(np.float64, copy=False))
    if detail is not None:
        raise ValueError(f"state_dict[{key!r}] must hold {what}; {detail}: {DAMAGED}")

