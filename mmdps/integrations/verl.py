"""An mmdps selector as a verl curriculum sampler (``data.sampler.class_path/class_name``).

verl builds the sampler with ``cls(data_source=dataset, data_config=config.data)``, wraps it in its
train dataloader (``dataloader_num_workers=0``) and calls ``sampler.update(batch=batch)`` after every
training step with the step's ``DataProto``. This sampler picks each dataloader batch with an mmdps
selector at the moment verl asks for it, so every choice already knows the rewards of the previous step::

    data.dataloader_num_workers=0
    data.sampler.class_path=pkg://mmdps.integrations.verl
    data.sampler.class_name=SelectorCurriculumSampler
    +data.sampler.selector=dps
    +data.sampler.selector_kwargs.decay=0.5

Selector ids are dataset positions ``0..len(dataset)-1``. ``update`` reads each sample's prompt id from
``batch.non_tensor_batch["index"]`` (verl copies ``extra_info.index`` there), or from
``non_tensor_batch["extra_info"][i]["index"]``, maps it to a position (``extra_info.index`` of
``dataset.dataframe`` when the dataset has one, else the id is the position) and refuses a batch that is
not exactly the prompts it handed out, each ``rollout.n`` times. Correctness comes from the ``acc`` field
that verl stores from a reward function's dict result, else from ``batch.batch["token_level_scores"]``
summed over the response, under the library's success rule (:mod:`mmdps.integrations.success`: 0/1, or
an explicit ``success_threshold``), averaged per prompt. verl 0.5 to 0.7 have this hook (0.8 removed it).

verl is not a dependency: when it is importable the class subclasses verl's
``AbstractCurriculumSampler`` (verl asserts that), otherwise torch's ``Sampler`` (or ``object``).
Nothing from verl or torch is imported before the class is first used.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from mmdps.integrations.metrics import selector_metrics
from mmdps.integrations.success import correct_flags
from mmdps.selection import Selector, make_selector

# SelectorCurriculumSampler subclasses verl's sampler, built on first access by __getattr__.
__all__ = ["SelectorCurriculumSampler", "SelectorSamplerLogic", "batch_correct", "batch_prompt_ids",  # noqa: F822
           "batch_success_rates", "install_verl_logging", "selector_metrics"]


def _get(config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` for a dict, an OmegaConf ``DictConfig`` or an attribute object; ``default`` if absent."""
    if config is None:
        return default
    if isinstance(config, Mapping) or hasattr(config, "get"):
        value = config.get(key, default)
    else:
        value = getattr(config, key, default)
    return default if value is None else value


def _plain(value: Any) -> Any:
    """An OmegaConf container as plain python (dicts/lists), anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:
        return dict(value) if isinstance(value, Mapping) else value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return dict(value) if isinstance(value, Mapping) else value


def _to_numpy(value: Any) -> np.ndarray:
    """A torch tensor, list or array as a float64 numpy array (torch only touched if given a tensor)."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


#: How to repair a refused accuracy in verl (see :mod:`mmdps.integrations.success`).
VERL_FIXES = ("return a dict with a 0/1 'acc' from compute_score (mmdps.verifiers.adapters.verl_compute_score "
              "does; verl stores it as non_tensor_batch['acc']), or set +data.sampler.success_threshold=... to "
              "count values >= it as correct")
_INDEX_HELP = ("verl reads each sample's prompt id from its row's extra_info.index and gives a row without one the "
               "id 0; write extra_info.index = the row number in your parquet preprocessing, e.g. "
               "dataset.map(lambda row, i: {'extra_info': {**(row.get('extra_info') or {}), 'index': i}}, "
               "with_indices=True)")


def batch_prompt_ids(batch: Any, index_key: str = "index") -> np.ndarray:
    """Each sample's prompt id in a verl ``DataProto``: ``non_tensor_batch[index_key]`` (verl copies
    ``extra_info.index`` there) or ``non_tensor_batch["extra_info"][i]["index"]``."""
    non_tensor = getattr(batch, "non_tensor_batch", None)
    if non_tensor is None:
        raise ValueError("update() expects a verl DataProto (with .non_tensor_batch and .batch), got "
                         f"{type(batch).__name__}")
    if index_key in non_tensor:
        raw_ids = np.asarray(non_tensor[index_key])
    elif "extra_info" in non_tensor:
        raw_ids = np.asarray([_get(info, "index") for info in non_tensor["extra_info"]])
    else:
        raise ValueError(f"the batch has no prompt ids: expected non_tensor_batch[{index_key!r}] or "
                         f"non_tensor_batch['extra_info'][i]['index']; {_INDEX_HELP}")
    if raw_ids.dtype == object and any(v is None for v in raw_ids):
        raise ValueError(f"some samples have no extra_info.index; {_INDEX_HELP}")
    try:
        ids = raw_ids.astype(np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"prompt ids (extra_info.index) must be integers, got values like {raw_ids[:3].tolist()}"
                         ) from err
    if not np.array_equal(ids, raw_ids.astype(np.float64)):
        raise ValueError(f"prompt ids (extra_info.index) must be integers, got values like {raw_ids[:3].tolist()}")
    return ids


def batch_correct(batch: Any, success_threshold: float | None = None) -> np.ndarray:
    """Each sample's correctness (1.0 / 0.0) in a verl ``DataProto`` under the library's success rule:
    ``non_tensor_batch["acc"]`` when the reward function returned it, else ``batch["token_level_scores"]``
    summed over the response; values other than 0 and 1 need ``success_threshold``. NaN is refused."""
    non_tensor = getattr(batch, "non_tensor_batch", None) or {}
    if "acc" in non_tensor:
        scores, source = _to_numpy(non_tensor["acc"]), "verl's reward key non_tensor_batch['acc']"
    else:
        tensors = getattr(batch, "batch", None)
        if tensors is None or "token_level_scores" not in tensors.keys():
            raise ValueError(
                "the batch has no rewards: expected non_tensor_batch['acc'] (return a dict with 'acc' from "
                "compute_score) or batch['token_level_scores']"
            )
        scores = _to_numpy(tensors["token_level_scores"])
        scores = scores.reshape(scores.shape[0], -1).sum(axis=1)
        source = "verl's reward batch['token_level_scores'] (summed over the response)"
    if np.isnan(scores).any():
        raise ValueError(f"{source} holds NaN; every sample needs a reward")
    return correct_flags(scores, success_threshold, source, VERL_FIXES)


def batch_success_rates(batch: Any, success_threshold: float | None = None, index_key: str = "index",
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt success rates from a verl ``DataProto``: (prompt ids, sorted; mean correctness) with the
    ids of :func:`batch_prompt_ids` and the correctness of :func:`batch_correct`."""
    ids = batch_prompt_ids(batch, index_key)
    correct = batch_correct(batch, success_threshold)
    if correct.shape != ids.shape:
        raise ValueError(f"{correct.shape[0]} scores for {ids.shape[0]} samples; the batch is inconsistent")
    unique, inverse = np.unique(ids, return_inverse=True)
    return unique, np.bincount(inverse, weights=correct) / np.bincount(inverse)


def _dataset_prompt_ids(data_source: Any) -> np.ndarray | None:
    """``extra_info.index`` of every row of verl's ``RLHFDataset.dataframe`` (None: no dataframe, the ids
    are positions). Refuses a dataframe whose rows lack it: verl would give them all the id 0."""
    frame = getattr(data_source, "dataframe", None)
    if frame is None:
        return None
    columns = list(getattr(frame, "column_names", None) or getattr(frame, "columns", None) or [])
    if "extra_info" not in columns:
        raise ValueError(f"the training parquet has no extra_info column, so no prompt ids; {_INDEX_HELP}")
    ids = [_get(info, "index") for info in frame["extra_info"]]
    missing = [row for row, i in enumerate(ids) if i is None]
    if missing:
        raise ValueError(f"{len(missing)} training rows (first: row {missing[0]}) have no extra_info.index; "
                         f"{_INDEX_HELP}")
    try:
        return np.asarray(ids, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra_info.index must be an integer, got values like {ids[:3]}") from err


class SelectorSamplerLogic:
    """The sampler's behaviour, independent of its base class (see the module docstring).

    Config (``data_config``): ``train_batch_size`` (prompts per step; ``gen_batch_size`` wins when set,
    as in verl's dataloader), ``seed``; under ``sampler``: ``selector`` (name, default ``"dps"``),
    ``selector_kwargs`` (dict), ``candidate_ratio`` (None: rank the whole pool; r >= 1: rank the next
    ceil(r x batch) prompts of a seeded shuffled pass, ``dps``/``mopps`` only), ``success_threshold``
    (None: rewards must be 0/1), ``index_key`` (``"index"``), ``log_metrics`` (False: see
    :func:`install_verl_logging`).
    """

    def __init__(self, data_source: Any, data_config: Any) -> None:
        sampler_cfg = _get(data_config, "sampler", {})
        self.num_prompts = len(data_source)
        self.batch_size = int(_get(data_config, "gen_batch_size", _get(data_config, "train_batch_size", 0)))
        if self.batch_size < 1:
            raise ValueError("data.train_batch_size (prompts per step) must be a positive integer")
        if self.batch_size > self.num_prompts:
            raise ValueError(f"data.train_batch_size={self.batch_size} exceeds the dataset ({self.num_prompts} rows)")
        name = str(_get(sampler_cfg, "selector", "dps"))
        kwargs = dict(_plain(_get(sampler_cfg, "selector_kwargs", {})))
        if "seed" not in kwargs and _get(data_config, "seed") is not None:
            kwargs["seed"] = int(_get(data_config, "seed"))
        self.selector: Selector = make_selector(name, self.num_prompts, kwargs,
                                                candidate_ratio=_get(sampler_cfg, "candidate_ratio", None))
        if self.selector.max_rounds != 1:
            raise ValueError(
                f"selector {name!r} refills rounds (max_rounds={self.selector.max_rounds}); use a one-round "
                "selector such as 'dps', 'mopps' or 'uniform' (without algorithm.filter_groups, see "
                "docs/integrations.md)"
            )
        threshold = _get(sampler_cfg, "success_threshold", None)
        self.success_threshold = None if threshold is None else float(threshold)
        self.index_key = str(_get(sampler_cfg, "index_key", "index"))
        prompt_ids = _dataset_prompt_ids(data_source)
        self._position_of: dict[int, int] | None = None
        if prompt_ids is not None and not np.array_equal(prompt_ids, np.arange(self.num_prompts)):
            if np.unique(prompt_ids).size != prompt_ids.size:
                raise ValueError("extra_info.index is not unique across the dataset; selector state needs unique ids")
            self._position_of = {int(p): i for i, p in enumerate(prompt_ids)}
        self._prompt_ids = prompt_ids  # position -> the id verl reports (None: the same)
        self.batches_done = 0  # batches yielded in the current epoch
        self._pending: np.ndarray | None = None  # positions handed out, rewards not yet fed back
        self._predicted_informative: float | None = None
        self.last_metrics: dict[str, float] = {}
        if bool(_get(sampler_cfg, "log_metrics", False)):
            install_verl_logging(self)

    def __len__(self) -> int:
        return (self.num_prompts // self.batch_size) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        per_epoch = self.num_prompts // self.batch_size
        while self.batches_done < per_epoch:
            if self._pending is not None:
                raise RuntimeError(
                    "verl asked for the next batch before update() got the rewards of the previous one, so the "
                    "selector would choose blind. The trainer in use does not call sampler.update(batch) once per "
                    "dataloader batch: verl's DAPO recipe trainer (algorithm.filter_groups) never calls it and "
                    "pulls several batches per step. Use verl's RayPPOTrainer (main_ppo) without "
                    "algorithm.filter_groups: a one-round selector replaces the filter"
                )
            predicted = self._predicted_state_probs()
            ids = self.selector.select(self.batch_size)
            if ids.size != self.batch_size:
                raise ValueError(
                    f"selector {self.selector.name!r} returned {ids.size} prompts for a batch of {self.batch_size}; "
                    "verl needs exactly one dataloader batch (use oversample=1.0, or another selector)"
                )
            self._predicted_informative = None if predicted is None else float(predicted[ids, 1].mean())
            self.batches_done += 1
            self._pending = np.asarray(ids, dtype=np.int64)
            yield from ids.tolist()
        self.batches_done = 0

    def _predicted_state_probs(self) -> np.ndarray | None:
        predict = getattr(self.selector, "predicted_state_probs", None)
        return None if predict is None else np.asarray(predict())

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Dataset positions of the prompt ids verl reports; an id of no training row raises."""
        if self._position_of is not None:
            unknown = [int(i) for i in ids if int(i) not in self._position_of]
            if unknown:
                raise ValueError(f"prompt id {unknown[0]} (extra_info.index) is not in the training dataset; "
                                 f"{_INDEX_HELP}")
            return np.array([self._position_of[int(i)] for i in ids], dtype=np.int64)
        outside = ids[(ids < 0) | (ids >= self.num_prompts)]
        if outside.size:
            raise ValueError(f"prompt id {int(outside[0])} (extra_info.index) is outside [0, {self.num_prompts - 1}]; "
                             f"{_INDEX_HELP}")
        return ids

    def _reported_id(self, position: int) -> int:
        return int(position) if self._prompt_ids is None else int(self._prompt_ids[position])

    def _check_batch(self, positions: np.ndarray) -> None:
        """Each prompt handed out comes back exactly rollout.n times, and nothing else."""
        if self._pending is None:
            raise RuntimeError("update() got a batch, but the sampler has handed out no batch since the last update")
        handed, handed_counts = np.unique(self._pending, return_counts=True)
        got, got_counts = np.unique(positions, return_counts=True)
        n, remainder = divmod(positions.size, self._pending.size)
        if remainder == 0 and np.array_equal(got, handed) and np.array_equal(got_counts, handed_counts * n):
            return
        extra = [self._reported_id(p) for p in np.setdiff1d(got, handed)]
        lost = [self._reported_id(p) for p in np.setdiff1d(handed, got)]
        found = [f"{positions.size} samples", f"rollouts per prompt {sorted({int(c) for c in got_counts})}"]
        found += [f"prompt ids missing {lost[:5]}"] if lost else []
        found += [f"unexpected prompt ids {extra[:5]}"] if extra else []
        raise ValueError(
            f"the batch fed to update() is not the batch this sampler handed out ({handed.size} prompts, each "
            f"exactly rollout.n times): {', '.join(found)}. Either rows lack "
            f"extra_info.index ({_INDEX_HELP}), or something between the dataloader and update() dropped or "
            "added samples, e.g. algorithm.filter_groups (DAPO), which keeps only mixed groups: the selector "
            "would learn that every prompt is partly solved. Feed update() the unfiltered batch of each step"
        )

    def update(self, batch: Any) -> None:
        """Feed one training step's rewards (a verl ``DataProto``) to the selector. The batch must hold
        exactly the prompts of the last dataloader batch, each ``rollout.n`` times."""
        positions = self._positions(batch_prompt_ids(batch, self.index_key))
        self._check_batch(positions)
        correct = batch_correct(batch, self.success_threshold)
        if correct.shape != positions.shape:
            raise ValueError(f"{correct.shape[0]} scores for {positions.shape[0]} samples; the batch is inconsistent")
        ids, inverse = np.unique(positions, return_inverse=True)
        rates = np.bincount(inverse, weights=correct) / np.bincount(inverse)
        self.selector.update(ids, rates)
        self.selector.record_trained(ids)
        self._pending = None
        self.last_metrics = self.metrics()

    def metrics(self) -> dict[str, float]:
        """:func:`selector_metrics` for the last batch (what ``log_metrics`` adds to verl's logger)."""
        return selector_metrics(self.selector, self._predicted_informative)

    def diagnostics(self) -> dict[str, float]:
        """The selector's diagnostics and its ``prompts/*`` data diagnostics."""
        return {**self.selector.diagnostics(), **self.selector.training_diagnostics()}

    def state_dict(self) -> dict[str, Any]:
        """Selector state and the position in the epoch (for verl's dataloader checkpoint ``data.pt``).
        verl saves it during a step, before that step's ``update``: ``pending`` holds the batch whose
        rewards the saved state misses."""
        return {"selector": self.selector.state_dict(), "batches_done": self.batches_done,
                "num_prompts": self.num_prompts, "batch_size": self.batch_size,
                "pending": np.zeros(0, np.int64) if self._pending is None else self._pending.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (verl: from ``data.pt``), checking it first: a wrong shape, a
        non-finite array or another dataset / batch size is refused with the reason."""
        _check_loaded_state(state, self.num_prompts, self.batch_size)
        self.selector.load_state_dict(state["selector"])
        self.batches_done = int(state["batches_done"])
        self._pending = None
        pending = np.asarray(state.get("pending", ()))
        if pending.size:
            warnings.warn(
                f"resuming from a checkpoint taken before the rewards of its last batch reached the selector "
                f"({pending.size} prompts): verl saves data.pt inside a step, before sampler.update(); the resumed "
                "selector misses that one step of feedback and may choose differently from an uninterrupted run",
                stacklevel=2,
            )


def _check_loaded_state(state: Any, num_prompts: int, batch_size: int) -> None:
    where = "the sampler state loaded from verl's checkpoint (data.pt)"
    if not isinstance(state, Mapping) or not isinstance(state.get("selector"), Mapping) or "batches_done" not in state:
        raise ValueError(f"{where} is not a SelectorCurriculumSampler state (expected a dict with 'selector' and "
                         f"'batches_done'), got {type(state).__name__}; resume from another checkpoint or without "
                         "the dataloader state")
    for key, expected in (("num_prompts", num_prompts), ("batch_size", batch_size)):
        if key in state and int(state[key]) != expected:
            raise ValueError(f"{where} has {key}={int(state[key])}, this run has {expected}: it belongs to another "
                             "dataset or data.train_batch_size / gen_batch_size; resume with the same data settings")
    done = np.asarray(state["batches_done"])
    if done.shape != () or done.dtype.kind not in "iu" or not 0 <= int(done) <= num_prompts // batch_size:
        raise ValueError(f"{where} has batches_done={state['batches_done']!r}, not an integer in "
                         f"[0, {num_prompts // batch_size}]")
    pending = np.asarray(state.get("pending", ()))
    if pending.size and (pending.ndim != 1 or pending.min() < 0 or pending.max() >= num_prompts):
        raise ValueError(f"{where} has pending prompt ids outside [0, {num_prompts})")
    for key, value in state["selector"].items():
        array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
        if array is not None and array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            raise ValueError(f"{where}: selector array {key!r} holds NaN or infinite values; the file is corrupt, "
                             "resume from another checkpoint")


def install_verl_logging(sampler: SelectorSamplerLogic) -> None:
    """Make verl log ``sampler``'s metrics (``data.sampler.log_metrics=true`` calls this).

    verl has no route from a curriculum sampler to its logger: ``RayPPOTrainer.fit`` builds its metrics
    dict, calls ``sampler.update(batch)``, then ``logger.log(data=metrics)`` with a ``Tracking`` it
    imports from ``verl.utils.tracking`` when ``fit`` starts. This wraps ``Tracking.log`` so that the first
    log after each update also carries :meth:`SelectorSamplerLogic.metrics` (``selector/*``, ``prompts/*``).
    """
    try:
        from verl.utils import tracking
    except ImportError as err:
        raise ImportError("data.sampler.log_metrics needs verl (verl.utils.tracking) in this Python") from err
    original = getattr(tracking.Tracking.log, "mmdps_original", tracking.Tracking.log)

    def log(self: Any, data: dict, step: int, backend: Any = None) -> Any:
        extra, sampler.last_metrics = sampler.last_metrics, {}
        return original(self, {**data, **extra}, step, backend)

    log.mmdps_original = original  # type: ignore[attr-defined]  # installing twice wraps once
    tracking.Tracking.log = log


_CLASS: type | None = None


def _sampler_base() -> type:
    try:
        from verl.experimental.dataset.sampler import AbstractCurriculumSampler
        return AbstractCurriculumSampler
    except ImportError:
        pass
    try:
        from torch.utils.data import Sampler
        return Sampler
    except ImportError:
        return object


def __getattr__(name: str) -> Any:
    # Built on first use so importing this module needs neither verl nor torch.
    global _CLASS
    if name == "SelectorCurriculumSampler":
        if _CLASS is None:
            _CLASS = type("SelectorCurriculumSampler", (SelectorSamplerLogic, _sampler_base()), {
                "__doc__": SelectorSamplerLogic.__doc__, "__module__": __name__,
            })
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
