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
``non_tensor_batch["extra_info"][i]["index"]``, and maps it to a position (``extra_info.index`` of
``dataset.dataframe`` when the dataset has one, else the id is the position). Correctness comes from
the ``acc`` field that verl stores from a reward function's dict result, else from
``batch.batch["token_level_scores"]`` summed over the response; either is binarised with
``success_threshold`` (default 0.5) and averaged per prompt.

verl is not a dependency: when it is importable the class subclasses verl's
``AbstractCurriculumSampler`` (verl asserts that), otherwise torch's ``Sampler`` (or ``object``).
Nothing from verl or torch is imported before the class is first used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from mmdps.selection import Selector, make_selector

# SelectorCurriculumSampler subclasses verl's sampler, built on first access by __getattr__.
__all__ = ["SelectorCurriculumSampler", "SelectorSamplerLogic", "batch_success_rates"]  # noqa: F822


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


def batch_success_rates(batch: Any, success_threshold: float = 0.5, index_key: str = "index",
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt success rates from a verl ``DataProto``: (prompt ids, mean binary correctness).

    Prompt ids come from ``non_tensor_batch[index_key]`` or ``non_tensor_batch["extra_info"][i]["index"]``;
    per-sample correctness from ``non_tensor_batch["acc"]`` or ``batch["token_level_scores"].sum(-1)``,
    counted correct when ``>= success_threshold``. Ids are returned sorted.
    """
    non_tensor = getattr(batch, "non_tensor_batch", None)
    if non_tensor is None:
        raise ValueError("update() expects a verl DataProto (with .non_tensor_batch and .batch), got "
                         f"{type(batch).__name__}")
    if index_key in non_tensor:
        raw_ids = np.asarray(non_tensor[index_key])
    elif "extra_info" in non_tensor:
        raw_ids = np.asarray([_get(info, "index") for info in non_tensor["extra_info"]])
    else:
        raise ValueError(
            f"the batch has no prompt ids: expected non_tensor_batch[{index_key!r}] or "
            "non_tensor_batch['extra_info'][i]['index']; set extra_info.index in your parquet rows"
        )
    if raw_ids.dtype == object and any(v is None for v in raw_ids):
        raise ValueError("some samples have no extra_info.index; every row needs an integer prompt id")
    try:
        ids = raw_ids.astype(np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"prompt ids must be integers, got values like {raw_ids[:3].tolist()}") from err

    if "acc" in non_tensor:
        scores = _to_numpy(non_tensor["acc"])
    else:
        tensors = getattr(batch, "batch", None)
        if tensors is None or "token_level_scores" not in tensors.keys():
            raise ValueError(
                "the batch has no rewards: expected non_tensor_batch['acc'] (return a dict with 'acc' from "
                "compute_score) or batch['token_level_scores']"
            )
        scores = _to_numpy(tensors["token_level_scores"])
        scores = scores.reshape(scores.shape[0], -1).sum(axis=1)
    if scores.shape != ids.shape:
        raise ValueError(f"{scores.shape[0]} scores for {ids.shape[0]} samples; the batch is inconsistent")
    if not np.all(np.isfinite(scores)):
        raise ValueError("the batch's scores contain NaN or infinite values")
    correct = (scores >= success_threshold).astype(np.float64)
    unique, inverse = np.unique(ids, return_inverse=True)
    rates = np.bincount(inverse, weights=correct) / np.bincount(inverse)
    return unique, rates


def _dataset_prompt_ids(data_source: Any) -> np.ndarray | None:
    """``extra_info.index`` of every dataset row (verl's ``RLHFDataset.dataframe``), or None if unavailable."""
    frame = getattr(data_source, "dataframe", None)
    if frame is None or "extra_info" not in (getattr(frame, "column_names", None) or []):
        return None
    ids = [_get(info, "index") for info in frame["extra_info"]]
    if any(i is None for i in ids):
        return None
    return np.asarray(ids, dtype=np.int64)


class SelectorSamplerLogic:
    """The sampler's behaviour, independent of its base class (see the module docstring).

    Config (``data_config``): ``train_batch_size`` (prompts per step; ``gen_batch_size`` wins when set,
    as in verl's dataloader), ``seed``; under ``sampler``: ``selector`` (name, default ``"dps"``),
    ``selector_kwargs`` (dict), ``candidate_ratio`` (None: rank the whole pool; r >= 1: rank the next
    ceil(r x batch) prompts of a seeded shuffled pass, ``dps``/``mopps`` only), ``success_threshold`` (0.5),
    ``index_key`` (``"index"``).
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
                f"selector {name!r} refills rounds (max_rounds={self.selector.max_rounds}); in verl use its "
                "DAPO filter (algorithm.filter_groups) with a one-round selector such as 'dps', 'mopps' or 'uniform'"
            )
        self.success_threshold = float(_get(sampler_cfg, "success_threshold", 0.5))
        self.index_key = str(_get(sampler_cfg, "index_key", "index"))
        prompt_ids = _dataset_prompt_ids(data_source)
        self._position_of: dict[int, int] | None = None
        if prompt_ids is not None and not np.array_equal(prompt_ids, np.arange(self.num_prompts)):
            if np.unique(prompt_ids).size != prompt_ids.size:
                raise ValueError("extra_info.index is not unique across the dataset; selector state needs unique ids")
            self._position_of = {int(p): i for i, p in enumerate(prompt_ids)}
        self.batches_done = 0  # batches yielded in the current epoch
        self.stale_batches = 0  # batches chosen without an update since the previous batch
        self._awaiting_update = False

    def __len__(self) -> int:
        return (self.num_prompts // self.batch_size) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        per_epoch = self.num_prompts // self.batch_size
        while self.batches_done < per_epoch:
            if self._awaiting_update:
                self.stale_batches += 1
            ids = self.selector.select(self.batch_size)
            if ids.size != self.batch_size:
                raise ValueError(
                    f"selector {self.selector.name!r} returned {ids.size} prompts for a batch of {self.batch_size}; "
                    "verl needs exactly one dataloader batch (use oversample=1.0, or another selector)"
                )
            self.batches_done += 1
            self._awaiting_update = True
            yield from ids.tolist()
        self.batches_done = 0

    def update(self, batch: Any) -> None:
        """Feed one training step's rewards (a verl ``DataProto``) to the selector."""
        ids, rates = batch_success_rates(batch, self.success_threshold, self.index_key)
        if self._position_of is not None:
            missing = [int(i) for i in ids if int(i) not in self._position_of]
            if missing:
                raise ValueError(f"prompt id {missing[0]} (extra_info.index) is not in the training dataset")
            ids = np.array([self._position_of[int(i)] for i in ids], dtype=np.int64)
        elif ids.size and (ids.min() < 0 or ids.max() >= self.num_prompts):
            raise ValueError(
                f"prompt id {int(ids.max() if ids.max() >= self.num_prompts else ids.min())} is outside "
                f"[0, {self.num_prompts - 1}]; give rows extra_info.index = their row number, or use a dataset "
                "with a .dataframe holding extra_info"
            )
        self.selector.update(ids, rates)
        self.selector.record_trained(ids)
        self._awaiting_update = False

    def diagnostics(self) -> dict[str, float]:
        """The selector's diagnostics, its ``prompts/*`` data diagnostics and ``stale_batches``."""
        return {**self.selector.diagnostics(), **self.selector.training_diagnostics(),
                "stale_batches": float(self.stale_batches)}

    def state_dict(self) -> dict[str, Any]:
        """Selector state and the position in the epoch (for verl's dataloader checkpoint ``data.pt``)."""
        return {"selector": self.selector.state_dict(), "batches_done": self.batches_done,
                "stale_batches": self.stale_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.selector.load_state_dict(state["selector"])
        self.batches_done = int(state["batches_done"])
        self.stale_batches = int(state.get("stale_batches", 0))
        self._awaiting_update = False


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
