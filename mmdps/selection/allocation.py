"""Rollouts per prompt from a selector's prediction (adaptive k), numpy only.

A step has a fixed rollout budget R = B x k. ``fixed`` gives each of B prompts k rollouts (TRL and verl
only do this). ``predicted`` asks the selector for more candidates and splits R over them, each prompt
getting 0 or between ``k_min`` (>= 2: one rollout has no group baseline) and ``k_max`` rollouts, so as to
maximise the expected number of groups with signal (rewards not all equal; ``objective="groups"``) or of
rollouts in such groups (``objective="rollouts"``). Knapsack RL (arXiv 2509.25849) frames per-prompt
budgets as a knapsack in the same way. ``until_signal`` (after Reinforce-Ada, arXiv 2510.04996) samples
each selected prompt in rounds of ``round_k`` until its group has signal or reaches ``k_max``, within R.

The pieces, all pure functions tested against hand computations:

* :func:`partial_degenerate_probability`, :func:`state_signal_table` (DPS's 3-state prediction) and
  :func:`beta_signal_table` (MoPPS's Beta posterior): P(a group of k rollouts has signal), k = 0..k_max;
* :func:`allocate`: the exact split of R (a small dynamic programme over prompts x budget);
* :func:`until_signal_round`: the next round's sizes;
* :func:`predicted_plan`: the selector, the settings and the batch size to (ids, sizes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("fixed", "predicted", "until_signal")
OBJECTIVES = ("groups", "rollouts")
KWARGS = ("k_min", "k_max", "candidates", "round_k", "objective")
# Breaks exact ties between allocations toward more distinct prompts (far below any real value difference).
PROMPT_BONUS = 1e-9


@dataclass(frozen=True)
class AllocationSettings:
    """A run's allocation rule. ``k``: the run's rollouts per prompt (the budget is ``batch_size * k``);
    ``candidates``: prompts asked of the selector under ``predicted``, as a multiple of ``batch_size``."""

    mode: str = "fixed"
    k: int = 8
    k_min: int = 2
    k_max: int = 16
    candidates: float = 4.0
    round_k: int = 2
    objective: str = "groups"

    def budget(self, batch_size: int) -> int:
        return int(batch_size) * self.k

    def num_candidates(self, batch_size: int, pool: int) -> int:
        """Prompts to ask the selector for under ``predicted`` (at least B, at most the pool)."""
        return int(min(pool, max(batch_size, math.ceil(self.candidates * batch_size))))


def allocation_settings(mode: str, kwargs: Mapping[str, Any] | None, *, k: int) -> AllocationSettings:
    """Check ``rollout_allocation`` and ``allocation_kwargs`` (``ValueError`` naming the key and the fix) and
    return the settings. Defaults: ``k_min`` 2, ``k_max`` 2k, ``candidates`` k / k_min (every candidate can
    get ``k_min``), ``round_k`` 2, ``objective`` groups."""
    if mode not in MODES:
        raise ValueError(f"rollout_allocation must be one of {', '.join(MODES)}, got {mode!r}")
    options = dict(kwargs or {})
    if mode == "fixed":
        if options:
            raise ValueError(f"allocation_kwargs ({', '.join(sorted(options))}) apply to rollout_allocation="
                             "predicted or until_signal only; remove them or choose one of those")
        return AllocationSettings(mode="fixed", k=int(k), k_min=int(k), k_max=int(k), candidates=1.0, round_k=int(k))
    unknown = sorted(set(options) - set(KWARGS))
    if unknown:
        raise ValueError(f"allocation_kwargs: unknown key(s) {', '.join(unknown)}; valid: {', '.join(KWARGS)}")
    k_min = _int_option(options, "k_min", 2, low=2, why="one rollout has no group baseline")
    k_max = _int_option(options, "k_max", 2 * int(k), low=k_min, why=f"it must be at least k_min={k_min}")
    round_k = _int_option(options, "round_k", 2, low=2, why="the first round must be able to show signal")
    if round_k > k_max:
        raise ValueError(f"allocation_kwargs.round_k={round_k} is above k_max={k_max}; lower it")
    if mode == "until_signal" and round_k > k:
        raise ValueError(f"allocation_kwargs.round_k={round_k} is above num_generations={k}: the first round of B "
                         f"prompts would exceed the step's budget of B x {k} rollouts; lower round_k")
    if mode == "predicted" and k_max < k:
        raise ValueError(f"allocation_kwargs.k_max={k_max} is below num_generations={k}: the candidates could not "
                         "always absorb the budget; raise k_max")
    if k_max == k_min and k % k_min:
        raise ValueError(f"allocation_kwargs: with k_min = k_max = {k_min} a budget of B x {k} rollouts cannot be "
                         "split exactly; raise k_max")
    candidates = options.get("candidates", int(k) / k_min)
    if isinstance(candidates, bool) or not isinstance(candidates, (int, float)) or not math.isfinite(candidates) \
            or candidates < 1:
        raise ValueError(f"allocation_kwargs.candidates must be a number >= 1 (candidate prompts per training "
                         f"prompt), got {candidates!r}")
    objective = options.get("objective", "groups")
    if objective not in OBJECTIVES:
        raise ValueError(f"allocation_kwargs.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return AllocationSettings(mode=mode, k=int(k), k_min=k_min, k_max=k_max, candidates=float(candidates),
                              round_k=round_k, objective=objective)


def _int_option(options: Mapping[str, Any], key: str, default: int, *, low: int, why: str) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"allocation_kwargs.{key} must be an integer >= {low} ({why}), got {value!r}")
    return int(value)


# ---------------------------------------------------------------------- P(signal | k)
def partial_degenerate_probability(k: np.ndarray | int, reference_k: int) -> np.ndarray:
    """q(k) = P(k rollouts all wrong | partial), also P(all right | partial).

    The DPS states are defined by what ``reference_k`` (K) rollouts show. Read a group of k < K as the first
    k of a K-group and give a partial prompt a uniform success rate p on (0, 1): P(first k wrong) = 1/(k+1),
    P(all K wrong) = 1/(K+1), P(K-group mixed) = (K-1)/(K+1), so
    ``q(k) = (1/(k+1) - 1/(K+1)) / ((K-1)/(K+1)) = (K-k) / ((k+1)(K-1))``; 0 for k >= K (the paper's exact
    observation), 1/2 for k = 1."""
    if int(reference_k) < 2:
        raise ValueError(f"reference_k must be >= 2, got {reference_k!r}")
    kk = np.asarray(k, dtype=np.float64)
    big = float(reference_k)
    return np.where(kk >= big, 0.0, (big - kk) / ((kk + 1.0) * (big - 1.0)))


def state_signal_table(state_probs: np.ndarray, k_max: int, reference_k: int) -> np.ndarray:
    """[n, k_max + 1]: P(signal | k) = P(partial) * (1 - 2 q(k)) for beliefs ``state_probs`` [n, 3]
    (unsolved, partial, solved); 0 for k < 2. The unsolved and solved states never show signal, so the
    value stops growing at k = reference_k."""
    probs = np.asarray(state_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != 3:
        raise ValueError(f"state_probs must have shape [n, 3], got {probs.shape}")
    ks = np.arange(int(k_max) + 1)
    mixed = np.where(ks >= 2, 1.0 - 2.0 * partial_degenerate_probability(ks, reference_k), 0.0)
    return probs[:, 1:2] * mixed[None, :]


def beta_signal_table(alpha: np.ndarray, beta: np.ndarray, k_max: int) -> np.ndarray:
    """[n, k_max + 1]: P(signal | k) = 1 - E[p^k] - E[(1-p)^k] under p ~ Beta(alpha, beta), with
    ``E[p^k] = prod_{i<k} (alpha + i) / (alpha + beta + i)``; 0 for k < 2."""
    a = np.asarray(alpha, dtype=np.float64)[:, None]
    b = np.asarray(beta, dtype=np.float64)[:, None]
    steps = np.arange(int(k_max), dtype=np.float64)[None, :]
    moment_p = np.cumprod((a + steps) / (a + b + steps), axis=1)
    moment_q = np.cumprod((b + steps) / (a + b + steps), axis=1)
    table = np.zeros((a.shape[0], int(k_max) + 1))
    table[:, 1:] = 1.0 - moment_p - moment_q
    table[:, :2] = 0.0
    return np.clip(table, 0.0, 1.0)


def value_table(signal: np.ndarray, objective: str) -> np.ndarray:
    """What ``allocate`` maximises: P(signal | k) (``groups``) or k x P(signal | k) (``rollouts``)."""
    if objective == "groups":
        return np.asarray(signal, dtype=np.float64)
    if objective == "rollouts":
        return np.asarray(signal, dtype=np.float64) * np.arange(signal.shape[1])[None, :]
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


# ---------------------------------------------------------------------- the split
def allocate(values: np.ndarray, budget: int, k_min: int, k_max: int) -> np.ndarray:
    """Rollouts per prompt: ``k_i`` in {0} or [k_min, k_max], ``sum k_i == budget`` exactly, maximising
    ``sum values[i, k_i]`` (``values``: [n, >= k_max + 1], column k the value of k rollouts).

    Exact by dynamic programming over prompts and the budget spent (O(n x budget x choices)). Ties: exact
    ties go to the allocation with more prompts (a bonus of ``PROMPT_BONUS`` per prompt), then to the
    earlier prompt getting more (the selector's order). ``ValueError`` when no split exists."""
    vals = np.asarray(values, dtype=np.float64)
    budget, k_min, k_max = int(budget), int(k_min), int(k_max)
    if vals.ndim != 2 or vals.shape[1] < k_max + 1:
        raise ValueError(f"values must have shape [n, >= k_max + 1 = {k_max + 1}], got {vals.shape}")
    if not np.all(np.isfinite(vals)):
        raise ValueError("values contain NaN or inf")
    if not 1 <= k_min <= k_max or budget < 0:
        raise ValueError(f"need 1 <= k_min <= k_max and budget >= 0, got k_min={k_min}, k_max={k_max}, "
                         f"budget={budget}")
    n = vals.shape[0]
    choices = np.array([0, *range(k_min, k_max + 1)], dtype=np.int64)
    gains = vals[:, choices] + PROMPT_BONUS * (choices > 0)
    gains[:, 0] = 0.0
    # best[b]: the best value of prompts i..n-1 with exactly b rollouts (processed from the last prompt).
    best = np.full(budget + 1, -np.inf)
    best[0] = 0.0
    picks = np.zeros((n, budget + 1), dtype=np.int16)
    options = np.empty((choices.size, budget + 1))
    for i in range(n - 1, -1, -1):
        options.fill(-np.inf)
        for c, k in enumerate(choices):
            if k <= budget:
                options[c, k:] = best[:budget + 1 - k] + gains[i, c]
        top = options.max(axis=0)
        tolerance = 1e-12 * (1.0 + np.abs(np.where(np.isfinite(top), top, 0.0)))
        near = options >= (top - tolerance)[None, :]
        picks[i] = choices.size - 1 - np.argmax(near[::-1], axis=0)  # the largest k within the tolerance
        best = top
    if not np.isfinite(best[budget]):
        raise ValueError(f"cannot split {budget} rollouts over {n} prompts with k in {{0}} or [{k_min}, {k_max}]; "
                         "ask for more candidates or widen [k_min, k_max]")
    sizes = np.zeros(n, dtype=np.int64)
    left = budget
    for i in range(n):
        sizes[i] = choices[picks[i, left]]
        left -= int(sizes[i])
    return sizes


def until_signal_round(sizes: np.ndarray, signal: np.ndarray, *, round_k: int, k_max: int, budget_left: int
                       ) -> np.ndarray:
    """The next round of ``until_signal``: ``round_k`` more rollouts (fewer at ``k_max``) for each prompt
    whose group has no signal yet, in order, while ``budget_left`` lasts; a prompt is never left at one
    rollout. All zeros: the step's rollouts are done."""
    sizes = np.asarray(sizes, dtype=np.int64)
    signal = np.asarray(signal, dtype=bool)
    extra = np.zeros_like(sizes)
    left = int(budget_left)
    for i in np.flatnonzero(~signal & (sizes < k_max)):
        add = min(int(round_k), int(k_max - sizes[i]), left)
        if sizes[i] + add < 2:
            add = 0
        extra[i] = add
        left -= add
    return extra


# ---------------------------------------------------------------------- trainer and simulator glue
def signal_table(selector, ids: np.ndarray, settings: AllocationSettings) -> np.ndarray | None:
    """P(signal | k) [len(ids), k_max + 1] from the selector's prediction, None when it predicts nothing."""
    table = selector.signal_probability(ids, settings.k_max)
    if table is None:
        return None
    table = np.asarray(table, dtype=np.float64)
    if table.shape != (len(ids), settings.k_max + 1):
        raise ValueError(f"{type(selector).__name__}.signal_probability returned shape {table.shape}, expected "
                         f"({len(ids)}, {settings.k_max + 1})")
    return table


def predicted_plan(selector, batch_size: int, settings: AllocationSettings) -> tuple[np.ndarray, np.ndarray, int]:
    """``predicted``: (ids, sizes, candidates) for one step: every size in [k_min, k_max], summing to
    ``batch_size * k``, over ``candidates`` prompts the selector chose (those left at 0 are dropped). A selector
    without a prediction (``predicts_signal`` False) gets the fixed rule: B prompts, k rollouts each."""
    if not getattr(selector, "predicts_signal", False):
        ids = np.asarray(selector.select(batch_size), dtype=np.int64)
        return ids, np.full(ids.size, settings.k, dtype=np.int64), ids.size
    ids = np.asarray(selector.select(settings.num_candidates(batch_size, selector.num_prompts)), dtype=np.int64)
    table = signal_table(selector, ids, settings)
    if table is None:
        raise ValueError(f"{type(selector).__name__} says it predicts signal but signal_probability gave None")
    sizes = allocate(value_table(table, settings.objective), settings.budget(batch_size), settings.k_min,
                     settings.k_max)
    keep = sizes > 0
    return ids[keep], sizes[keep], ids.size


def allocation_metrics(sizes: np.ndarray, candidates: int, signal: np.ndarray, rounds: int) -> dict[str, float]:
    """``allocation/*`` metrics of one step: the k of every rolled-out prompt, the share of candidates left
    at 0, distinct prompts, the share of rollouts in groups with signal, rounds."""
    sizes = np.asarray(sizes, dtype=np.int64)
    signal = np.asarray(signal, dtype=bool)
    total = int(sizes.sum())
    out = {
        "allocation/k_mean": float(sizes.mean()) if sizes.size else 0.0,
        "allocation/k_min": float(sizes.min()) if sizes.size else 0.0,
        "allocation/k_max": float(sizes.max()) if sizes.size else 0.0,
        "allocation/k0_share": 1.0 - sizes.size / candidates if candidates else 0.0,
        "allocation/distinct_prompts": float(sizes.size),
        "allocation/informative_rollout_share": float(sizes[signal].sum() / total) if total else 0.0,
        "allocation/rounds": float(rounds),
    }
    for low, high in ((2, 3), (4, 7), (8, 15)):
        out[f"allocation/k_{low}_{high}_share"] = float(np.mean((sizes >= low) & (sizes <= high))) if sizes.size \
            else 0.0
    out["allocation/k_16plus_share"] = float(np.mean(sizes >= 16)) if sizes.size else 0.0
    return out
