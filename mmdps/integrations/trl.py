"""mmdps selectors inside TRL's ``GRPOTrainer`` (trl >= 1.16; trl is optional and imported lazily).

TRL draws prompts with a ``RepeatSampler`` fixed when the dataloader is built. ``DPSGRPOTrainer``
replaces it with a :class:`SelectorSampler`, whose every generation batch is chosen by an mmdps selector
that has already seen the rewards of the previous generation batch::

    from mmdps.integrations.trl import DPSGRPOTrainer
    trainer = DPSGRPOTrainer(model=..., reward_funcs=[accuracy_reward, ...], args=GRPOConfig(...),
                             train_dataset=dataset, selector="dps", selector_kwargs={"decay": 0.5})
    trainer.train()

Layout (TRL's): a generation batch is ``P = generation_batch_size // num_generations`` distinct prompts,
each repeated ``num_generations`` times, and the whole block is repeated
``num_iterations * steps_per_generation`` times (TRL generates once per block and reuses the
completions). Across processes every rank runs the same seeded selector on the same gathered rewards,
so all ranks choose the same prompts, as ``RepeatSampler`` does with its shared seed.

Feedback: after TRL has gathered the rewards of a generation batch, the trainer takes the column of the
accuracy reward (``accuracy_reward``: index or name of a reward function, default the first), turns it
into per-prompt success rates under the library's success rule (:mod:`mmdps.integrations.success`:
values 0/1, ``None`` counts as wrong, anything else needs ``success_threshold``; an mmdps adapter's
shaped score is replaced by its verifier's ``acc``) and calls ``selector.update(ids, rates)``.

Why the trainer resolves some batches late: the dataloader runs ahead of training. accelerate's
dataloader fetches one batch ahead, and ``Trainer`` fetches a whole gradient-accumulation window before
the first forward, so the next generation block is usually fetched before the current block's rewards
exist. The sampler then hands out placeholder rows marked "deferred"; at generation time, once every
earlier reward is in, the trainer asks the selector and loads the chosen rows itself, so no choice uses
stale feedback. Used without ``DPSGRPOTrainer`` (``defer=False``) the sampler raises instead of
choosing blind.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from mmdps.integrations.metrics import selector_metrics
from mmdps.integrations.success import correct_flags
from mmdps.selection import Selector, check_selector, make_selector

# DPSGRPOTrainer and SelectorSampler subclass TRL / torch classes, built on first access by __getattr__.
__all__ = ["DPSGRPOTrainer", "SelectorSampler", "SelectorSamplerCore", "prompt_fingerprint",  # noqa: F822
           "success_rates_from_rewards"]


#: How to repair a refused accuracy reward in TRL (see :mod:`mmdps.integrations.success`).
TRL_FIXES = ("point accuracy_reward at a reward that returns 0/1 (e.g. trl_reward_func(name, key='acc') or "
             "trl.rewards.accuracy_reward), or pass success_threshold=... to DPSGRPOTrainer to count values >= it "
             "as correct")


def success_rates_from_rewards(values: Any, num_generations: int, success_threshold: float | None = None,
                               source: str = "the accuracy reward") -> np.ndarray:
    """Per-prompt success rates from per-completion accuracy rewards laid out prompt-major
    (``num_generations`` consecutive completions per prompt). NaN (a reward function's ``None``) counts
    as wrong. Without ``success_threshold`` every other value must be exactly 0 or 1 (else ValueError
    naming ``source``); with it a completion is correct when its reward is ``>= threshold``."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size % num_generations:
        raise ValueError(f"{arr.size} rewards are not a whole number of groups of {num_generations}")
    flags = np.nan_to_num(correct_flags(arr, success_threshold, source, TRL_FIXES), nan=0.0)
    return flags.reshape(-1, num_generations).mean(axis=1)


def prompt_fingerprint(dataset: Any, column: str = "prompt") -> str:
    """sha256 of the dataset's prompts in row order (strings, or chat messages as sorted-key JSON): a
    resumed run refuses a dataset whose rows were reordered or edited, since its selector state is per row."""
    digest = hashlib.sha256()
    prompts = dataset[column] if hasattr(dataset, "column_names") else (dataset[i][column] for i in range(len(dataset)))
    for prompt in prompts:
        text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass
class _Block:
    """One generation block handed to the dataloader: its prompt ids, and whether they are final."""

    ids: np.ndarray
    final: bool


class SelectorSamplerCore:
    """The sampler's logic without a torch base class (see :class:`SelectorSampler`)."""

    def __init__(self, selector: Selector, num_generations: int, prompts_per_batch: int, repeat_count: int = 1,
                 num_batches: int | None = None, defer: bool = False, prompt_fingerprint: str | None = None,
                 ) -> None:
        for key, value in (("num_generations", num_generations), ("prompts_per_batch", prompts_per_batch),
                           ("repeat_count", repeat_count)):
            if int(value) < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if selector.max_rounds != 1:
            raise ValueError(
                f"selector {selector.name!r} refills rounds (max_rounds={selector.max_rounds}); TRL's generation "
                "batch is fixed, so use a one-round selector ('dps', 'mopps', 'cdas', 'uniform')"
            )
        if prompts_per_batch > selector.num_prompts:
            raise ValueError(f"{prompts_per_batch} prompts per generation batch exceed the dataset "
                             f"({selector.num_prompts} prompts)")
        self.selector = selector
        self.num_generations = int(num_generations)
        self.prompts_per_batch = int(prompts_per_batch)
        self.repeat_count = int(repeat_count)
        self.num_batches = selector.num_prompts // self.prompts_per_batch if num_batches is None else int(num_batches)
        self.defer = bool(defer)
        self.prompt_fingerprint = prompt_fingerprint  # checked on resume: the state is per dataset row
        self._blocks: deque[_Block] = deque()  # handed out, rewards not yet fed back (oldest first)
        self._generated = 0  # how many of self._blocks have been resolved for generation
        self.deferred_blocks = 0  # blocks chosen at generation time because of the dataloader's look-ahead
        self.trained_ids: list[np.ndarray] = []  # every block fed back, in order
        self._restored: deque[np.ndarray] = deque()  # chosen before a checkpoint, not yet handed out again
        self._skip_blocks = 0  # blocks the resumed trainer skips at the start of the next pass

    def __len__(self) -> int:
        return self.num_batches * self.prompts_per_batch * self.num_generations * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        skip, self._skip_blocks = self._skip_blocks, 0
        for index in range(self.num_batches):
            # Blocks trained before the checkpoint: rows the resumed Trainer fast-forwards past unread,
            # so no selector call is spent on them.
            block = [0] * self.prompts_per_batch if index < skip else self._next_block().ids
            layout = np.repeat(block, self.num_generations).tolist()
            for _ in range(self.repeat_count):
                yield from layout

    def _next_block(self) -> _Block:
        if self._restored:  # chosen before the checkpoint: hand out the same prompts again
            block = _Block(self._restored.popleft(), final=True)
        elif not self._blocks:
            block = _Block(self._select(), final=True)
        elif self.defer:  # rewards still pending: placeholder rows, chosen for real at generation time
            block = _Block(self._blocks[-1].ids, final=False)
        else:
            raise RuntimeError(
                "the dataloader asked for the next generation batch before the previous one's rewards were fed "
                "back; use DPSGRPOTrainer (it chooses such batches at generation time) or feed rewards "
                "before the next batch is fetched"
            )
        self._blocks.append(block)
        return block

    def _select(self) -> np.ndarray:
        ids = self.selector.select(self.prompts_per_batch)
        if ids.size != self.prompts_per_batch:
            raise ValueError(f"selector {self.selector.name!r} returned {ids.size} prompts for a generation batch "
                             f"of {self.prompts_per_batch}")
        return ids

    def begin_generation(self) -> tuple[np.ndarray, bool]:
        """The prompt ids of the next block to generate, and whether they differ from the rows the
        dataloader delivered (a deferred block, chosen now that all earlier rewards are in)."""
        if self._generated >= len(self._blocks):
            raise RuntimeError("generation started for a batch this sampler never handed out")
        block = self._blocks[self._generated]
        self._generated += 1
        if block.final:
            return block.ids, False
        if self._generated != 1:
            raise RuntimeError("a deferred batch is being generated before the previous rewards were fed back")
        block.ids, block.final = self._select(), True
        self.deferred_blocks += 1
        return block.ids, True

    def feed(self, completion_success: Any, success_threshold: float | None = None,
             source: str = "the accuracy reward") -> np.ndarray:
        """Feed back the oldest generated block: per-completion accuracies in TRL's layout
        (``prompts_per_batch * num_generations`` values; the success rule of
        :func:`success_rates_from_rewards`). Returns the per-prompt success rates."""
        if self._generated == 0:
            raise RuntimeError("rewards fed back for a batch that was not generated")
        rates = success_rates_from_rewards(completion_success, self.num_generations, success_threshold, source)
        block = self._blocks[0]
        if rates.size != block.ids.size:
            raise ValueError(f"got rewards for {rates.size} prompts, the generation batch has {block.ids.size}")
        self.selector.update(block.ids, rates)
        self.selector.record_trained(block.ids)
        self._blocks.popleft()
        self._generated -= 1
        self.trained_ids.append(block.ids.copy())
        return rates

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: the selector's state, the blocks already chosen for the dataloader's
        look-ahead but not yet trained, and the record of trained ids. Take it between generation
        batches (as a checkpoint does): a block generated but not fed back cannot be saved."""
        if self._generated:
            raise RuntimeError("cannot save the sampler between a block's generation and its rewards")
        chosen = [b.ids.copy() for b in self._blocks if b.final] + [ids.copy() for ids in self._restored]
        return {"selector": self.selector.state_dict(), "chosen_blocks": chosen,
                "trained_ids": np.array(self.trained_ids, dtype=np.int64).reshape(-1, self.prompts_per_batch),
                "deferred_blocks": self.deferred_blocks, "prompts_per_batch": self.prompts_per_batch,
                "prompt_fingerprint": self.prompt_fingerprint}

    def load_state_dict(self, state: dict[str, Any], skip_blocks: int = 0) -> None:
        """Restore a :meth:`state_dict`. The next pass yields ``skip_blocks`` placeholder blocks first (the
        blocks of this epoch that the resumed trainer fast-forwards past), then the chosen blocks again,
        then new choices. Refuses a state saved with another number of prompts per generation batch or
        for other prompts (a different dataset fingerprint)."""
        self.check_state(state)
        if not 0 <= int(skip_blocks) < self.num_batches:
            raise ValueError(f"skip_blocks={skip_blocks} is outside [0, {self.num_batches}) blocks per epoch")
        self.selector.load_state_dict(state["selector"])
        self._blocks.clear()
        self._generated = 0
        self._restored = deque(np.asarray(ids, dtype=np.int64).reshape(-1) for ids in state["chosen_blocks"])
        self.trained_ids = list(np.asarray(state["trained_ids"], dtype=np.int64).reshape(-1, self.prompts_per_batch))
        self.deferred_blocks = int(state["deferred_blocks"])
        self._skip_blocks = int(skip_blocks)

    def check_state(self, state: dict[str, Any]) -> None:
        """Refuse a :meth:`state_dict` saved with another number of prompts per generation batch, with
        prompt ids outside this dataset, or for other prompts (fingerprint); warn when it has no fingerprint."""
        saved = state.get("prompts_per_batch")
        trained = np.asarray(state["trained_ids"])
        if saved is None and trained.ndim == 2 and trained.size:  # a state from before the key existed
            saved = trained.shape[1]
        blocks = [np.asarray(ids).reshape(-1) for ids in state["chosen_blocks"]]
        if saved is None and blocks:
            saved = blocks[0].size
        if saved is not None and int(saved) != self.prompts_per_batch:
            raise ValueError(
                f"the checkpoint's sampler state has {int(saved)} prompts per generation batch, this run has "
                f"{self.prompts_per_batch} (generation_batch_size // num_generations); resume with the same "
                "per_device_train_batch_size, steps_per_generation / generation_batch_size, num_generations and "
                "number of processes, or start a new run"
            )
        ids = np.concatenate([trained.reshape(-1), *blocks]) if blocks or trained.size else np.zeros(0)
        if ids.size and (not np.all(np.isfinite(ids)) or ids.min() < 0 or ids.max() >= self.selector.num_prompts):
            raise ValueError(f"the checkpoint's sampler state holds prompt ids outside [0, {self.selector.num_prompts})"
                             ": it was saved for another dataset")
        fingerprint = state.get("prompt_fingerprint")
        if fingerprint is None or self.prompt_fingerprint is None:
            if self.prompt_fingerprint is not None:
                warnings.warn("the checkpoint's sampler state has no prompt fingerprint (saved by an older mmdps): "
                              "cannot check that train_dataset holds the same prompts in the same order",
                              stacklevel=3)
        elif fingerprint != self.prompt_fingerprint:
            raise ValueError(
                "train_dataset's prompts differ from those the checkpoint's selector state was built on (their "
                "sha256 in row order differs: rows reordered, edited, added or removed); the per-prompt state "
                "would be applied to the wrong prompts. Resume with the original dataset, or start a new run"
            )


_CLASSES: dict[str, type] = {}


def _with_accuracy_column(args: tuple, kwargs: dict[str, Any], accuracy_reward: int | str,
                          ) -> tuple[tuple, dict[str, Any], int | None]:
    """``GRPOTrainer``'s arguments with, when the accuracy reward is an mmdps adapter returning ``score``
    or ``format`` (shaped: countdown gives 0.1 to a well-formatted wrong answer), the same verifier's 0/1
    ``acc`` appended as a reward function (weight 0 in ``args.reward_weights`` when given; the trainer
    zeroes it otherwise), and its index. Else the arguments unchanged and None."""
    from mmdps.verifiers.adapters import trl_accuracy_reward

    positional = len(args) > 1  # GRPOTrainer(model, reward_funcs, args, ...)
    funcs = args[1] if positional else kwargs.get("reward_funcs")
    funcs = list(funcs) if isinstance(funcs, (list, tuple)) else [funcs]
    names = [getattr(f, "__name__", None) for f in funcs]
    if isinstance(accuracy_reward, str):
        index = names.index(accuracy_reward) if accuracy_reward in names else None
    else:
        index = int(accuracy_reward) if 0 <= int(accuracy_reward) < len(funcs) else None
    target: Any = funcs[index] if index is not None else None
    if getattr(target, "mmdps_verifier", None) is None or getattr(target, "mmdps_key", "acc") == "acc":
        return args, kwargs, None  # not an adapter, or already the 0/1 accuracy
    funcs.append(trl_accuracy_reward(target))
    config: Any = args[2] if len(args) > 2 else kwargs.get("args")
    weights = getattr(config, "reward_weights", None)
    if weights is not None:  # GRPOTrainer checks one weight per function
        if len(weights) != len(funcs) - 1:
            raise ValueError(f"args.reward_weights has {len(weights)} values for {len(funcs) - 1} reward functions")
        config.reward_weights = [*weights, 0.0]
    if positional:
        args = (args[0], funcs, *args[2:])
    else:
        kwargs = {**kwargs, "reward_funcs": funcs}
    return args, kwargs, len(funcs) - 1


#: Folder of a TRL checkpoint holding the selector and sampler state (JSON + npz, with a manifest).
SELECTOR_STATE_DIR = "mmdps_selector"


def _build_sampler_class() -> type:
    from torch.utils.data import Sampler

    class SelectorSampler(SelectorSamplerCore, Sampler):
        """A torch ``Sampler`` yielding prompt indices chosen by an mmdps selector in TRL's layout: per
        generation batch, ``prompts_per_batch`` ids each repeated ``num_generations`` times, the block
        repeated ``repeat_count`` (= ``num_iterations * steps_per_generation``) times. The selector is
        asked for the next block only once the previous block's rewards came back through ``feed``.
        ``len`` matches TRL's ``RepeatSampler`` (``num_batches`` blocks per epoch, default N // P)."""

    return SelectorSampler


def _build_trainer_class() -> type:
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from mmdps.checkpoint import load_state_folder, save_state_folder

    class DPSGRPOTrainer(GRPOTrainer):
        """TRL's ``GRPOTrainer`` whose prompts are chosen by an mmdps selector (DPS by default).

        Extra arguments (keyword-only, everything else is ``GRPOTrainer``'s):

        * ``selector``: a selector name (``mmdps.selection.SELECTORS``) or a ``Selector`` built for
          ``len(train_dataset)`` prompts; one-round selectors only (not ``ds``/``greso``).
        * ``selector_kwargs``: keyword arguments for ``make_selector`` (``seed`` defaults to ``args.seed``).
        * ``candidate_ratio``: rank only ``ceil(ratio x prompts per generation batch)`` candidates from a
          seeded shuffled pass (``dps``/``mopps``; None ranks the whole pool, see ``GRPOConfig``).
        * ``accuracy_reward``: index or name of the reward function whose values are correctness: exactly
          0 or 1 (``None``: not applicable, counted wrong). When it is an mmdps adapter
          (``trl_reward_func``) returning ``score`` or ``format``, the trainer adds that verifier's 0/1
          ``acc`` as an extra reward column of weight 0 and reads that one.
        * ``success_threshold``: count a shaped accuracy reward as correct when ``>= threshold``. Without
          it, any value other than 0 and 1 stops training at the first generation batch.

        The selector's diagnostics are logged as ``selector/<name>``, its data diagnostics as
        ``prompts/*``; ``trainer.selector`` exposes it,
        ``trainer.selector_sampler.trained_ids`` the prompt ids of every generation batch so far.
        """

        def __init__(self, *args: Any, selector: str | Selector = "dps", selector_kwargs: dict | None = None,
                     candidate_ratio: float | None = None, accuracy_reward: int | str = 0,
                     success_threshold: float | None = None, **kwargs: Any) -> None:
            if isinstance(selector, Selector) and candidate_ratio is not None:
                raise ValueError("candidate_ratio goes with a selector name; a built Selector has its own")
            if not isinstance(selector, Selector):  # bad names and options fail before the model loads
                check_selector(str(selector), selector_kwargs, candidate_ratio=candidate_ratio)
            self._selector_spec = (selector, dict(selector_kwargs or {}), candidate_ratio)
            self.selector: Selector | None = None
            self.selector_sampler: SelectorSamplerCore | None = None
            self.success_threshold = success_threshold
            self._accuracy_reward = accuracy_reward
            self._captured_rewards: torch.Tensor | None = None
            added = None
            if success_threshold is None:
                args, kwargs, added = _with_accuracy_column(args, kwargs, accuracy_reward)
                accuracy_reward = accuracy_reward if added is None else added
            super().__init__(*args, **kwargs)
            if added is not None:
                self.reward_weights[added] = 0.0  # read by the selector, not optimised
            self._accuracy_index = self._resolve_accuracy_index(accuracy_reward)
            self._accuracy_source = (f"reward function {self.reward_func_names[self._accuracy_index]!r} "
                                     f"(accuracy_reward={self._accuracy_index})")
            self.selector = self._build_selector()

        def _resolve_accuracy_index(self, accuracy_reward: int | str) -> int:
            names = list(self.reward_func_names)
            if isinstance(accuracy_reward, str):
                if accuracy_reward not in names:
                    raise ValueError(f"accuracy_reward {accuracy_reward!r} is not a reward function; have {names}")
                return names.index(accuracy_reward)
            if not 0 <= int(accuracy_reward) < len(names):
                raise ValueError(f"accuracy_reward={accuracy_reward} is out of range for {len(names)} reward functions")
            return int(accuracy_reward)

        def _build_selector(self) -> Selector:
            dataset = self.train_dataset
            iterable = isinstance(dataset, torch.utils.data.IterableDataset)
            if dataset is None or not hasattr(dataset, "__len__") or iterable:
                raise ValueError("DPSGRPOTrainer needs a map-style train_dataset (with len and integer indexing)")
            spec, kwargs, candidate_ratio = self._selector_spec
            if isinstance(spec, Selector):
                if spec.num_prompts != len(dataset):
                    raise ValueError(f"the selector has {spec.num_prompts} prompts, train_dataset has {len(dataset)}")
                return spec
            kwargs.setdefault("seed", self.args.seed)
            selector = make_selector(str(spec), len(dataset), kwargs, candidate_ratio=candidate_ratio,
                                     rollouts_per_prompt=self.num_generations)
            if selector.max_rounds != 1:
                raise ValueError(f"selector {spec!r} refills rounds; TRL's generation batch is fixed, so use a "
                                 "one-round selector ('dps', 'mopps', 'cdas', 'uniform')")
            return selector

        def _get_train_sampler(self, dataset: Any = None) -> Any:
            if self.selector is None:  # called from GRPOTrainer.__init__ before the selector exists
                self.selector = self._build_selector()
            args = cast(GRPOConfig, self.args)  # TRL's GRPOTrainer types it as Trainer's TrainingArguments
            k, batch, steps = self.num_generations, args.generation_batch_size, args.steps_per_generation
            assert k is not None and batch is not None and steps is not None  # filled in by GRPOConfig
            self.selector_sampler = __getattr__("SelectorSampler")(
                self.selector,
                num_generations=k,
                prompts_per_batch=batch // k,
                repeat_count=self.num_iterations * steps,
                defer=True,
                prompt_fingerprint=prompt_fingerprint(self.train_dataset),
            )
            return self.selector_sampler

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            if self.args.should_save and self.selector_sampler is not None:
                folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
                save_state_folder(folder / SELECTOR_STATE_DIR, self.selector_sampler.state_dict())

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            # Trainer restores optimizer and scheduler here on resume, after the train dataloader (and so
            # the sampler) exists and before the first batch is drawn: the selector follows them.
            super()._load_optimizer_and_scheduler(checkpoint)
            if checkpoint is None or self.selector_sampler is None:
                return
            folder = Path(checkpoint) / SELECTOR_STATE_DIR
            if not folder.is_dir():
                warnings.warn(f"{checkpoint} holds no selector state ({SELECTOR_STATE_DIR}/); the selector starts "
                              "afresh, so the resumed run does not choose the prompts the interrupted one would have",
                              stacklevel=2)
                return
            sampler, state = self.selector_sampler, load_state_folder(folder)
            sampler.check_state(state)  # before the skip arithmetic, which assumes the saved layout
            sampler.load_state_dict(state, skip_blocks=self._resume_skip_blocks(sampler))

        def _resume_skip_blocks(self, sampler: SelectorSamplerCore) -> int:
            """Generation blocks of the current epoch that ``Trainer`` fast-forwards past on resume (its own
            arithmetic: ``global_step % update steps per epoch`` optimizer steps of dataloader batches)."""
            if self.args.ignore_data_skip:
                return 0
            batches_per_epoch = sampler.num_batches * sampler.repeat_count  # a block is repeat_count batches
            accumulation = self.args.gradient_accumulation_steps
            steps_per_epoch = max(-(-batches_per_epoch // accumulation), 1)
            skipped = (self.state.global_step % steps_per_epoch) * accumulation
            if skipped % sampler.repeat_count:
                raise ValueError(
                    f"checkpoint-{self.state.global_step} lies inside a generation batch (one spans "
                    f"{sampler.repeat_count // accumulation or 1} optimizer steps: num_iterations x "
                    "steps_per_generation / gradient_accumulation_steps), so its completions are lost and the "
                    "selector cannot resume exactly; resume from a checkpoint at a generation boundary (save_steps "
                    "a multiple of that span)"
                )
            return skipped // sampler.repeat_count

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            sampler = self.selector_sampler if self.model is not None and self.model.training else None
            if sampler is not None:
                ids, changed = sampler.begin_generation()
                if changed:
                    inputs = self._rows_for_this_process(ids, len(inputs))
            self._captured_rewards = None
            output = super()._generate_and_score_completions(inputs)
            if sampler is not None:
                if self._captured_rewards is None:
                    raise RuntimeError("GRPOTrainer produced no rewards for this generation batch")
                column = self._captured_rewards[:, self._accuracy_index].float().cpu().numpy()
                sampler.feed(column, self.success_threshold, self._accuracy_source)
                for key, value in selector_metrics(self.selector).items():
                    self._metrics["train"][key].append(value)
            return output

        def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._captured_rewards = rewards_per_func.detach()  # gathered over processes: the whole batch
            return rewards_per_func

        def _rows_for_this_process(self, ids: np.ndarray, local_size: int) -> list[dict[str, Any]]:
            """This rank's slice of the generation batch ``ids`` in TRL's layout, read from the dataset."""
            k = self.num_generations
            assert k is not None  # GRPOTrainer sets it from its config
            layout = np.repeat(ids, k)
            start = self.accelerator.process_index * local_size
            rows = layout[start : start + local_size]
            if rows.size != local_size:
                raise RuntimeError(f"generation batch of {layout.size} rows cannot give rank "
                                   f"{self.accelerator.process_index} {local_size} rows")
            dataset: Any = self.train_dataset  # map-style: the sampler's ids index it
            return [dataset[int(i)] for i in rows]

    return DPSGRPOTrainer


def __getattr__(name: str) -> Any:
    # Built on first use so that importing this module needs neither torch nor trl.
    builders: dict[str, Callable[[], type]] = {"SelectorSampler": _build_sampler_class,
                                               "DPSGRPOTrainer": _build_trainer_class}
    if name not in builders:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _CLASSES:
        _CLASSES[name] = builders[name]()
        _CLASSES[name].__module__ = __name__
    return _CLASSES[name]
