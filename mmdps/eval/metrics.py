"""The metrics of an evaluation: unbiased pass@k (Chen et al., 2021) and the grouping of problems by
type, difficulty and a benchmark's official breakdowns."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mmdps.data.item import BREAKDOWNS_KEY


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct among ``n`` samples (Chen et al., 2021).

    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` so that no huge
    binomial coefficient is ever formed.
    """
    n, c, k = int(n), int(c), int(k)
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_per_problem(n: int, correct: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Vectorized :func:`pass_at_k` over problems that all have ``n`` samples: one value per entry
    of ``correct`` (the number of correct samples of each problem)."""
    n, k = int(n), int(k)
    correct = np.asarray(correct, dtype=np.int64)
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs n >= 1 and 1 <= k <= n, got n={n}, k={k}")
    if correct.size and (correct.min() < 0 or correct.max() > n):
        raise ValueError(f"correct counts must lie in [0, {n}], got {correct.min()}..{correct.max()}")
    # survive[c] = prod of the last c factors (1 - k/i), i = n-c+1..n: the chance that k samples drawn
    # without replacement all miss the c correct ones. A factor is 0 at i == k, so n - c < k gives 0.
    factors = 1.0 - k / np.arange(n, 0, -1, dtype=np.float64)
    survive = np.concatenate([[1.0], np.cumprod(factors)])
    return 1.0 - survive[correct]


def default_ks(n: int) -> list[int]:
    """Powers of two up to ``n``, and ``n`` itself: ``default_ks(16) == [1, 2, 4, 8, 16]``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks = [1 << e for e in range(n.bit_length()) if (1 << e) <= n]
    return sorted(set(ks) | {n})


def problem_types(metadata: Mapping[str, Any]) -> list[str]:
    """The problem types of an item, from its metadata, as flat labels.

    ``problem_type`` may be a string, a list of strings, or a mapping of kind -> type(s) (e.g.
    ``{"graph": ["Circle"], "goal": ["Angle"]}``, giving ``graph:Circle`` and ``goal:Angle``). The raw
    Geometry3K keys ``problem_type_graph`` / ``problem_type_goal`` are understood too. A problem with
    several types counts in each of them.

    An item of a benchmark preset (one carrying ``metadata["breakdowns"]``) has none here: its types are
    reported once, as its official breakdowns (GeoQA's ``type``, Geometry3K's ``problem_type_goal``), not
    a second time under other names.
    """
    if BREAKDOWNS_KEY in metadata:
        return []
    labels: list[str] = []

    def add(prefix: str, value: Any, skip: Iterable[str] = ()) -> None:
        values = value if isinstance(value, (list, tuple, set)) else [value]
        for v in values:
            text = "" if v is None else str(v).strip()
            if text and text not in skip:
                labels.append(f"{prefix}{text}")

    for kind in ("graph", "goal"):
        add(f"{kind}:", metadata.get(f"problem_type_{kind}"))
    # A bare type that repeats one of the prefixed ones (the geometry pack sets problem_type to the first
    # goal type) would count the problem twice under two names.
    covered = {label.split(":", 1)[1] for label in labels}
    value = metadata.get("problem_type")
    if isinstance(value, Mapping):
        for kind, types in value.items():
            add(f"{kind}:", types)
    elif value is not None:
        add("", value, skip=covered)
    return list(dict.fromkeys(labels))  # de-duplicated, first-seen order


def problem_breakdowns(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
    """``metadata["breakdowns"]`` (a benchmark's official groups) as ``{name: [labels]}``."""
    value = metadata.get(BREAKDOWNS_KEY) or {}
    return {str(name): [str(label) for label in (labels if isinstance(labels, (list, tuple)) else [labels])]
            for name, labels in value.items()}


def breakdown_metrics(problems: Sequence[dict[str, Any]], n: int, ks: Sequence[int]) -> dict[str, Any]:
    """``{breakdown name: {label: {num_problems, mean_at_n, pass_at_k}}}``, names in first-seen order;
    a problem with several labels (MathVista's skills) counts once in each."""
    names = list(dict.fromkeys(name for p in problems for name in p.get("breakdowns", {})))
    return {name: metrics_by_group(problems, _labels_under(name), n, ks) for name in names}


def _labels_under(name: str) -> Callable[[dict], Iterable[str]]:
    """A problem's labels in breakdown ``name``."""
    return lambda p: p.get("breakdowns", {}).get(name, [])


def problem_difficulty(metadata: Mapping[str, Any]) -> str | None:
    """``metadata["difficulty"]`` (or MATH's ``level``) as a string, or None."""
    for key in ("difficulty", "level"):
        value = metadata.get(key)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return None


def _group_metrics(problems: Sequence[dict[str, Any]], n: int, ks: Sequence[int]) -> dict[str, Any]:
    correct = np.array([p["num_correct"] for p in problems], dtype=np.int64)
    return {
        "num_problems": len(problems),
        "mean_at_n": float(correct.mean() / n) if len(problems) else float("nan"),
        "pass_at_k": {k: float(pass_at_k_per_problem(n, correct, k).mean()) for k in ks},
    }


def metrics_by_group(problems: Sequence[dict[str, Any]], keys: Callable[[dict], Iterable[str]], n: int,
             ks: Sequence[int]) -> dict[str, Any]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for problem in problems:
        for key in keys(problem):
            groups[key].append(problem)
    return {key: _group_metrics(groups[key], n, ks) for key in sorted(groups, key=_natural_key)}


def _natural_key(label: str) -> tuple[float, str]:
    """Numeric labels (difficulty 2.0 < 10.0) in numeric order, then the others alphabetically."""
    try:
        return float(label), ""
    except ValueError:
        return math.inf, label
