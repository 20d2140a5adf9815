"""The selector interface shared by every prompt-selection method, plus input checks and helpers.

A selector owns per-prompt state for a pool of ``num_prompts`` prompts with integer ids ``0..N-1``.
One trainer step uses it like this::

    admitted = []
    for _ in range(selector.max_rounds):                 # 1 for every method except Dynamic Sampling
        ids = selector.select(batch_size)                # before rollout, from stored state only
        rates = rollout_and_score(ids)                   # per-prompt mean of binary correctness over k rollouts
        selector.update(ids, rates)                      # learn from what was observed
        keep = selector.admit(ids, rates)                # post-rollout filter (all True except DS)
        admitted.extend(ids[keep])
        if len(admitted) >= batch_size:
            break
    train_on(admitted[:batch_size])

``select`` may return more ids than asked (Dynamic Sampling over-samples) or fewer (DoPR rolls out one
prompt per step); the trainer must use the length of the returned array.

Selectors that rank candidates (DPS, MoPPS) take ``candidate_ratio``: ``None`` ranks the whole pool
every step; a number r >= 1 ranks only the next ``ceil(r * B)`` prompts of a seeded shuffled pass over
the pool, as the official DPS/MoPPS trainers rank their dataloader batch. The candidate stream has its
own random generator and is part of ``state_dict()``, so a resumed run draws the same candidates.

``record_trained(ids)`` (called by the trainer with the prompts that entered each training batch) keeps
the data diagnostics of ``training_diagnostics()``: distinct prompts trained so far, the share of a
step's prompts trained in the previous few steps, mean visits per trained prompt.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from mmdps.selection.epoch_sampler import (
    SAMPLER_KEYS,
    EpochSampler,
    check_sampler_state,
    load_sampler_state,
    sampler_state,
)
from mmdps.selection.history import HISTORY_KEYS, TrainingHistory
from mmdps.selection.state_checks import check_state_value

STATE_NAMES = ("unsolved", "partial", "solved")
# The candidate stream draws from its own generator, seeded from (seed, CANDIDATE_STREAM), so that every
# selector with the same seed and ratio sees the same candidates (as with one shared dataloader).
CANDIDATE_STREAM = 0x43414E44


def check_candidate_ratio(candidate_ratio: float | None, selector: str | None = None,
                          takes_candidates: bool = True) -> float | None:
    """``None`` (rank the whole pool) or a finite number >= 1, as a float; a number is refused for
    ``selector`` when it does not rank candidates (``takes_candidates`` False)."""
    if candidate_ratio is None:
        return None
    if isinstance(candidate_ratio, bool) or not isinstance(candidate_ratio, (int, float, np.integer, np.floating)) \
            or not math.isfinite(candidate_ratio) or candidate_ratio < 1.0:
        raise ValueError("candidate_ratio must be None (rank the whole pool) or a number >= 1, "
                         f"got {candidate_ratio!r}")
    if not takes_candidates:
        raise ValueError(f"selector {selector!r} does not rank candidates, so candidate_ratio does not apply; "
                         "leave it unset (selectors that rank candidates: dps, mopps)")
    return float(candidate_ratio)


def observed_states(success_rates: np.ndarray) -> np.ndarray:
    """Map success rates to solving states 0 (s == 0), 1 (0 < s < 1), 2 (s == 1) as int8."""
    states = np.ones(success_rates.shape, dtype=np.int8)
    states[success_rates == 0.0] = 0
    states[success_rates == 1.0] = 2
    return states


Rewards = np.ndarray | list[np.ndarray]  # [n, k], or one 1-D array per prompt (groups of different sizes)


def check_rewards(rewards: Any, n: int) -> Rewards:
    """Per-rollout rewards of ``n`` groups as a float array [n, k] (also when given as equal-size rows), or as a
    list of 1-D float arrays when the groups differ in size; ``ValueError`` for a wrong shape, an empty group
    or a non-finite value."""
    if isinstance(rewards, np.ndarray) and rewards.dtype != object:
        rew = np.asarray(rewards, dtype=np.float64)
        if rew.ndim != 2 or rew.shape[0] != n or rew.shape[1] < 1:
            raise ValueError(f"rewards must have shape [len(ids), k] = [{n}, k>=1] or be one 1-D array per id, "
                             f"got {rew.shape}")
        if not np.all(np.isfinite(rew)):
            raise ValueError("rewards contain NaN or infinite values")
        return rew
    rows = [np.asarray(row, dtype=np.float64) for row in rewards]
    if len(rows) != n:
        raise ValueError(f"rewards must hold one group per id: {n} ids, {len(rows)} groups")
    for i, row in enumerate(rows):
        if row.ndim != 1 or row.size < 1:
            raise ValueError(f"rewards[{i}] must be a non-empty 1-D array of the group's rollouts, got shape "
                             f"{row.shape}")
        if not np.all(np.isfinite(row)):
            raise ValueError(f"rewards[{i}] contains NaN or infinite values")
    if not rows:
        return np.empty((0, 1))
    if len({row.size for row in rows}) == 1:
        return np.stack(rows)
    return rows


def reward_sizes(rewards: Rewards | None, default: int) -> int | np.ndarray:
    """Rollouts per group: ``default`` without rewards, the width of an [n, k] array, else one size per group."""
    if rewards is None:
        return int(default)
    if isinstance(rewards, np.ndarray):
        return int(rewards.shape[1])
    return np.array([row.size for row in rewards], dtype=np.int64)


def reward_sums(rewards: Rewards) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the sum of the rewards and the sum of their squares."""
    if isinstance(rewards, np.ndarray):
        return rewards.sum(axis=1), np.square(rewards).sum(axis=1)
    return (np.array([row.sum() for row in rewards]), np.array([np.square(row).sum() for row in rewards]))


class Selector(ABC):
    """Base class: validation, seeded randomness, state (de)serialisation and accounting.

    Subclasses implement ``_select`` and ``_update`` on already-validated arrays and list the
    attributes that make up their learnable state in ``_state_arrays`` (numpy arrays) and
    ``_state_scalars`` (python numbers), their constructor settings in ``_settings`` (saved with the
    state; loading a state saved with other settings is refused) and the rule each loaded state entry
    must satisfy in ``_state_checks`` (``state_checks.RULES``). ``_state_scalars``, ``_settings`` and
    ``_state_checks`` add up along the class hierarchy.
    """

    name: ClassVar[str] = "base"
    max_rounds: int = 1
    predicts_signal: ClassVar[bool] = False  # True: signal_probability gives a table (rollout allocation)
    takes_candidates: ClassVar[bool] = False  # True: ranks candidates, so candidate_ratio applies
    _state_arrays: ClassVar[tuple[str, ...]] = ()
    _state_scalars: ClassVar[tuple[str, ...]] = ()
    _settings: ClassVar[tuple[str, ...]] = ("candidate_ratio",)
    _setting_options: ClassVar[dict[str, str]] = {}  # state key -> constructor option, where they differ
    _state_checks: ClassVar[dict[str, str]] = {"steps": "count", "prompts_updated": "count"}

    def __init__(self, num_prompts: int, seed: int = 0, candidate_ratio: float | None = None) -> None:
        if isinstance(num_prompts, bool) or not isinstance(num_prompts, (int, np.integer)) or num_prompts < 1:
            raise ValueError(f"num_prompts must be a positive integer, got {num_prompts!r}")
        self.num_prompts = int(num_prompts)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.steps = 0  # number of update() calls
        self.prompts_updated = 0  # total ids passed to update()
        self.candidate_ratio = check_candidate_ratio(candidate_ratio, self.name, self.takes_candidates)
        self.candidate_sampler = EpochSampler(self.num_prompts)
        self.candidate_rng = np.random.default_rng([self.seed, CANDIDATE_STREAM])
        self.history = TrainingHistory(self.num_prompts)

    # ------------------------------------------------------------------ public API
    def select(self, batch_size: int, candidates: np.ndarray | None = None) -> np.ndarray:
        """Choose prompt ids to roll out next, before any rollout. Returns unique int64 ids.

        ``candidates`` restricts the choice to these ids (e.g. a dataloader batch); by default the
        whole pool is eligible.
        """
        cand = None if candidates is None else self._check_ids(candidates, "candidates")
        pool = self.num_prompts if cand is None else len(cand)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if cand is None and self.candidate_ratio is not None and batch_size <= pool:
            size = min(self.num_prompts, math.ceil(self.candidate_ratio * batch_size))
            if size < self.num_prompts:
                cand = self.next_candidates(size)
                pool = size
        if batch_size > pool:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {'candidate set' if cand is not None else 'pool'} "
                f"({pool} prompts); lower the batch size or pass more candidates"
            )
        return np.asarray(self._select(int(batch_size), cand), dtype=np.int64)

    def next_candidates(self, size: int) -> np.ndarray:
        """The next ``size`` prompts of the seeded shuffled pass (a new pass when too few remain)."""
        return self.candidate_sampler.next(self.candidate_rng, int(size))

    def record_trained(self, ids: np.ndarray) -> None:
        """Note the prompts that entered this step's training batch (for ``training_diagnostics``). A prompt
        may appear twice (DS refill rounds that cross an epoch boundary); it counts once."""
        arr = np.unique(np.asarray(ids, dtype=np.int64))
        self.history.record(self._check_ids(arr, "ids"))

    def training_diagnostics(self) -> dict[str, float]:
        """``prompts/distinct_total``, ``prompts/repeat_share``, ``prompts/mean_visits`` (see TrainingHistory)."""
        return self.history.diagnostics()

    def update(self, ids: np.ndarray, success_rates: np.ndarray, rewards: Rewards | None = None) -> None:
        """Learn from the rollouts of ``ids``: ``success_rates[i]`` is the mean binary correctness of
        prompt ``ids[i]`` over its rollouts; ``rewards`` (optional) are the per-rollout scores: an array
        [len(ids), k], or one 1-D array per id when the groups differ in size (rollouts allocated per
        prompt). Ragged rewards of equal sizes are stacked, so ``_update`` sees exactly what the array gives;
        groups of different sizes reach ``_update`` as a list (:func:`reward_sizes`, :func:`reward_sums`)."""
        ids_arr = self._check_ids(ids, "ids")
        rates = self._check_rates(success_rates, len(ids_arr))
        rew = None if rewards is None else check_rewards(rewards, len(ids_arr))
        self._update(ids_arr, rates, rew)
        self.steps += 1
        self.prompts_updated += len(ids_arr)

    def admit(self, ids: np.ndarray, success_rates: np.ndarray) -> np.ndarray:
        """Post-rollout filter: a bool mask of the groups that enter the training batch (all True by default)."""
        ids_arr = self._check_ids(ids, "ids")
        self._check_rates(success_rates, len(ids_arr))
        return np.ones(len(ids_arr), dtype=bool)

    def diagnostics(self) -> dict[str, float]:
        """Scalars for logging; subclasses add their own."""
        return {"steps": float(self.steps), "prompts_updated": float(self.prompts_updated)}

    def predict(self, ids: np.ndarray) -> np.ndarray | None:
        """The selector's prediction for ``ids`` before they are rolled out (DPS: state beliefs [n, 3];
        MoPPS: posterior mean success [n]); None for selectors that predict nothing."""
        self._check_ids(ids, "ids")
        return None

    def signal_probability(self, ids: np.ndarray, k_max: int) -> np.ndarray | None:
        """P(a group of k rollouts of each id has signal), shape [len(ids), k_max + 1] for k = 0..k_max, from
        the prediction (what ``rollout_allocation=predicted`` splits the budget by); None without one."""
        self._check_ids(ids, "ids")
        return None

    def memory_bytes(self) -> int:
        """Bytes held by the selector's numpy arrays (its own and those of helper objects it owns)."""
        total = 0
        for value in vars(self).values():
            for item in (value, *getattr(value, "__dict__", {}).values()):
                if isinstance(item, np.ndarray):
                    total += item.nbytes
        return int(total)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: numpy arrays, python scalars and the RNG state (a JSON string)."""
        state: dict[str, Any] = {
            "selector": self.name,
            "num_prompts": self.num_prompts,
            "seed": self.seed,
            "steps": self.steps,
            "prompts_updated": self.prompts_updated,
            "rng_state": json.dumps(self.rng.bit_generator.state),
        }
        for key in self._collected("_settings") + self._collected("_state_scalars"):
            value = getattr(self, key)
            state[key] = np.array(value, copy=True) if isinstance(value, np.ndarray) else value
        for key, value in self._export_arrays().items():
            state[key] = np.array(value, copy=True)
        state["candidate_rng_state"] = json.dumps(self.candidate_rng.bit_generator.state)
        for key, value in sampler_state(self.candidate_sampler).items():
            state["candidate_" + key] = np.array(value, copy=True)
        for key, value in self.history.state().items():
            state["history_" + key] = np.array(value, copy=True)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``; arrays may come back as numpy arrays, lists or 0-d arrays.

        Refused, with a ``ValueError`` naming the key: a state of another selector or pool size, one saved
        with other settings (``_settings``: a resumed run must not silently swap them), and damaged
        entries (non-finite or negative counts, probability vectors that do not sum to 1, wrong shapes).
        """
        name = _scalar(state.get("selector"))
        if name != self.name:
            raise ValueError(f"state_dict is for selector {name!r}, not {self.name!r}")
        if int(_scalar(state["num_prompts"])) != self.num_prompts:
            raise ValueError(
                f"state_dict has num_prompts={int(_scalar(state['num_prompts']))}, this selector has {self.num_prompts}"
            )
        self._check_settings(state)
        for key, rule in self._collected_checks().items():
            if key in state:
                check_state_value(key, state[key], rule)
        has_candidates = "candidate_rng_state" in state  # absent before candidate streams existed
        if has_candidates:
            check_sampler_state(self.num_prompts, {key: np.asarray(state["candidate_" + key]) for key in SAMPLER_KEYS},
                                "candidate_")
        history = {key: np.asarray(state["history_" + key]) for key in HISTORY_KEYS} if "history_visits" in state \
            else None
        if history is not None:
            self.history.check(history)

        self._import_arrays({key: np.asarray(state[key]) for key in self._array_keys() if key in state})
        self.seed = int(_scalar(state["seed"]))
        self.steps = int(_scalar(state["steps"]))
        self.prompts_updated = int(_scalar(state["prompts_updated"]))
        self.rng.bit_generator.state = json.loads(str(_scalar(state["rng_state"])))
        for key in self._collected("_state_scalars"):  # a scalar missing from an older state_dict keeps its value
            current = getattr(self, key)
            setattr(self, key, type(current)(_scalar(state.get(key, current))))
        if has_candidates:
            self.candidate_rng.bit_generator.state = json.loads(str(_scalar(state["candidate_rng_state"])))
            load_sampler_state(self.candidate_sampler,
                               {key: np.asarray(state["candidate_" + key]) for key in SAMPLER_KEYS})
        if history is not None:
            self.history.load(history)

    def _check_settings(self, state: dict[str, Any]) -> None:
        """Refuse a state saved with other settings, naming each one, its two values and the fix. A setting
        absent from the state (written by an older version) cannot be compared and keeps this run's value."""
        changed = []
        for key in self._collected("_settings"):
            if key not in state:
                continue
            saved, current = _saved_setting(key, state[key]), getattr(self, key)
            if not _same_setting(saved, current):
                option = self._setting_options.get(key, key)
                label = option if option == key else f"{option} (state key {key!r})"
                changed.append((label, option, _shown(saved), _shown(current)))
        if changed:
            listing = "; ".join(f"{label}: {saved!r} saved, {current!r} now" for label, _, saved, current in changed)
            restore = ", ".join(f"{option}={saved!r}" for _, option, saved, _ in changed)
            raise ValueError(
                f"selector {self.name!r}: the saved state was made with other settings ({listing}). A resumed run "
                f"keeps its selector's settings: to continue that run set them back ({restore}); to train with the "
                "new values, start a new output directory (or do not resume)"
            )

    @classmethod
    def _collected(cls, attr: str) -> tuple[str, ...]:
        """The names a class attribute lists, added up from the base class down (no repeats)."""
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            names.update(dict.fromkeys(klass.__dict__.get(attr, ())))
        return tuple(names)

    @classmethod
    def _collected_checks(cls) -> dict[str, str]:
        checks: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            checks.update(klass.__dict__.get("_state_checks", {}))
        return checks

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _select(self, batch_size: int, candidates: np.ndarray | None) -> np.ndarray: ...

    @abstractmethod
    def _update(self, ids: np.ndarray, rates: np.ndarray, rewards: Rewards | None) -> None: ...

    # A selector's arrays are its ``_state_arrays`` plus, when it draws candidates from an
    # ``EpochSampler`` held in ``self.sampler``, the sampler's position in the current epoch.
    def _epoch_sampler(self) -> EpochSampler | None:
        sampler = getattr(self, "sampler", None)
        return sampler if isinstance(sampler, EpochSampler) else None

    def _array_keys(self) -> tuple[str, ...]:
        return self._state_arrays + (SAMPLER_KEYS if self._epoch_sampler() is not None else ())

    def _export_arrays(self) -> dict[str, np.ndarray]:
        arrays = {key: getattr(self, key) for key in self._state_arrays}
        sampler = self._epoch_sampler()
        if sampler is not None:
            arrays.update(sampler_state(sampler))
        return arrays

    def _import_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        sampler = self._epoch_sampler()
        if sampler is not None:
            load_sampler_state(sampler, arrays)
        for key in self._state_arrays:
            value = arrays[key]
            current = getattr(self, key)
            if value.shape != current.shape:
                raise ValueError(f"state_dict[{key!r}] has shape {value.shape}, expected {current.shape}")
            setattr(self, key, value.astype(current.dtype, copy=True))

    # ------------------------------------------------------------------ helpers
    def _check_ids(self, ids: Any, what: str) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"{what} must be a 1-D array of prompt ids, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                raise ValueError(f"{what} must be integer prompt ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= self.num_prompts:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{what} contains id {bad}, outside the pool [0, {self.num_prompts - 1}]")
            if np.unique(arr).size != arr.size:
                values, counts = np.unique(arr, return_counts=True)
                raise ValueError(f"{what} contains duplicate id {int(values[counts > 1][0])}; ids must be unique")
        return arr

    @staticmethod
    def _check_rates(success_rates: Any, n: int) -> np.ndarray:
        rates = np.asarray(success_rates, dtype=np.float64)
        if rates.ndim != 1 or rates.shape[0] != n:
            raise ValueError(f"success_rates must be a 1-D array of length {n} (one per id), got shape {rates.shape}")
        if np.isnan(rates).any():
            raise ValueError("success_rates contain NaN; pass the mean binary correctness of each prompt")
        if rates.size and (rates.min() < 0.0 or rates.max() > 1.0):
            raise ValueError(f"success_rates must lie in [0, 1], got values in [{rates.min()}, {rates.max()}]")
        return rates

    def _random_subset(self, pool: int, size: int) -> np.ndarray:
        """``size`` distinct positions of ``range(pool)``, uniformly at random (O(size) for small sizes)."""
        return self.rng.choice(pool, size=size, replace=False, shuffle=True).astype(np.int64)

    def _top_with_random_ties(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Positions of the ``k`` largest scores; ties at the cut-off are broken uniformly at random."""
        n = scores.shape[0]
        if k >= n:
            return self.rng.permutation(n).astype(np.int64)
        kth = np.partition(scores, n - k)[n - k]
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)
        need = k - above.size
        chosen = ties[self._random_subset(ties.size, need)] if need < ties.size else ties
        return np.concatenate([above, chosen]).astype(np.int64)


def _saved_setting(key: str, value: Any) -> Any:
    value = _scalar(value)
    if key == "candidate_ratio" and isinstance(value, (int, float)) and value < 0:
        return None  # states written before None was stored as None held -1.0 for "the whole pool"
    return value


def _same_setting(saved: Any, current: Any) -> bool:
    if saved is None or current is None or isinstance(saved, (str, bool)) or isinstance(current, (str, bool)):
        return type(saved) is type(current) and saved == current
    try:
        a, b = np.asarray(saved, dtype=np.float64), np.asarray(current, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-12, atol=0.0))


def _shown(value: Any) -> Any:
    """A setting as a user would write it (arrays as nested lists)."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def _scalar(value: Any) -> Any:
    """Unwrap 0-d numpy arrays (what np.savez/np.load gives back for python scalars)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value
