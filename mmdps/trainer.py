"""The GRPO trainer: selector in the loop, text and vision-language policies, accelerate underneath.

One step::

    select B prompt ids (before any rollout)  ->  generate k completions per prompt  ->  verify
    -> selector.update(ids, success_rates)  [-> DS: admit + refill rounds, every rollout counted]
    -> group advantages  ->  clipped policy loss over micro-batches (gradient accumulation)
    -> clip grad -> optimizer step -> scheduler -> engine.sync_weights -> log / checkpoint / eval

::

    from mmdps.config import load_config
    from mmdps.trainer import GRPOTrainer
    trainer = GRPOTrainer(load_config("configs/tiny/countdown_dps.yaml", ["max_steps=3"]))
    trainer.train()
    # or stop at a rollout budget, calling my_callback.on_step_end(trainer, metrics) after each step:
    trainer.train(stop=RolloutBudget(50_000), callbacks=[my_callback])

Selector ids are positions in the training list (``0..N-1``); checkpoints also store the items'
stable ids and refuse to resume onto another dataset. Multi-GPU runs go through ``accelerate
launch``: every process selects the same ids (same seed, same selector state), rolls out its
share, and all processes see every group's results before the selector update.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mmdps.config import GRPOConfig
from mmdps.data.images import ImageError
from mmdps.data.item import Item
from mmdps.rollout.base import Completion, NonFiniteLogitsError, RolloutEngine, SamplingParams
from mmdps.verifiers import base as verifier_base
from mmdps.verifiers import is_correct, score_completion

logger = logging.getLogger(__name__)

TINY_PREFIX = "tiny:"


class TrainerCallback(Protocol):
    """Called by :meth:`GRPOTrainer.train` after each step, once the step is logged and checkpointed."""

    def on_step_end(self, trainer: GRPOTrainer, metrics: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class RolloutBudget:
    """A stop condition for :meth:`GRPOTrainer.train`: stop once ``budget`` rollouts are spent (checked
    before each step, so the last step may overshoot; Dynamic Sampling spends a variable number per step)."""

    budget: int

    def __call__(self, trainer: GRPOTrainer) -> bool:
        return trainer.rollouts_total >= self.budget


class TrainingDivergedError(RuntimeError):
    """Raised after ``max_consecutive_nan`` non-finite losses or gradient norms in a row, and at once
    when an update leaves non-finite weights or the policy's logits become non-finite in rollout."""


@dataclass
class Group:
    """The k rollouts of one prompt and their verdicts."""

    position: int  # index in the training list == selector id
    completions: list[Completion]
    score: np.ndarray  # [k] reward used for advantages
    acc: np.ndarray  # [k]
    format: np.ndarray  # [k]

    @property
    def success_rate(self) -> float:
        return float(np.mean(is_correct(self.acc)))  # DPS: binarised acc, averaged over the k rollouts

    @property
    def zero_variance(self) -> bool:
        return bool(np.all(self.score == self.score[0]))


@dataclass
class RolloutStats:
    """Accounting of one step's rollout phase (all rounds)."""

    rounds: int = 0
    prompts_generated: int = 0
    rollouts: int = 0
    tokens: int = 0
    truncated: int = 0
    scores: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    formats: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    zero_variance_groups: int = 0
    time_select: float = 0.0
    time_rollout: float = 0.0
    time_reward: float = 0.0
    verifier_errors: int = 0  # verifier calls that raised (scored 0), all processes


class GRPOTrainer:
    """GRPO / DAPO training with a prompt selector in the loop.

    Args:
        config: the run's :class:`~mmdps.config.GRPOConfig`.
        items: training items (default: loaded from ``config.task`` / ``train_source``).
        eval_items: held-out items for ``eval_steps`` (default: loaded from ``eval_source`` when set).
        engine: a ready :class:`~mmdps.rollout.base.RolloutEngine` (default: ``make_engine(config.engine)``
            over the policy).
    """

    def __init__(self, config: GRPOConfig, *, items: Sequence[Item] | None = None,
                 eval_items: Sequence[Item] | None = None, engine: RolloutEngine | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from mmdps.checkpoint import lock_output_dir, resolve_resume, resume_changes
        from mmdps.logging_utils import check_report_to

        self.config = config
        self.output_dir = Path(config.output_dir)
        bf16 = torch.cuda.is_available() if config.bf16 is None else config.bf16
        self.accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no",
                                       cpu=not torch.cuda.is_available())
        set_seed(config.seed)
        if self.accelerator.is_main_process:  # one run per output_dir: a save prunes the folder's checkpoints
            check_report_to(config.report_to)  # a missing extra fails now, not after the model has loaded
            self._output_lock = lock_output_dir(self.output_dir)
            weakref.finalize(self, self._output_lock.release)

        self.items = list(items) if items is not None else self._load_items(
            config.train_source, config.train_split, config.train_limit, config.task_options)
        _check_items(self.items, "training set")
        _check_pool(self.items, config.batch_size)
        self.eval_items = list(eval_items) if eval_items is not None else self._load_eval_items()
        if self.eval_items:
            _check_items(self.eval_items, "eval set")

        self.resume_from = resolve_resume(config.resume, self.output_dir)
        # {key: (saved, now)} of the settings this resumed run changes (others are refused here).
        self.resume_changes = resume_changes(self.resume_from, config.to_dict()) if self.resume_from else {}
        self._build_model()
        _check_modality(self.items, self.is_vl, config.model_name_or_path)
        self._build_optimizer()
        self.engine = engine if engine is not None else self._build_engine()
        self.encoder = getattr(self.engine, "encoder", None) or self._build_encoder()
        self.items = self._fit_prompts(self.items, "training set")
        _check_pool(self.items, config.batch_size)
        self.item_ids = [item.id for item in self.items]
        if self.eval_items:
            self.eval_items = self._fit_prompts(self.eval_items, "eval set")

        from mmdps.selection import make_selector

        selector_kwargs = dict(config.selector_kwargs)
        if config.candidate_ratio is not None:
            selector_kwargs["candidate_ratio"] = config.candidate_ratio
        self.selector = make_selector(config.selector, len(self.items), seed=config.seed,
                                      rollouts_per_prompt=config.num_generations, **selector_kwargs)
        self.step = 0
        self.rollouts_total = 0
        self.tokens_total = 0
        self.consecutive_nan = 0
        self.nan_steps = 0
        if self.resume_from is not None:
            self._resume(self.resume_from)

    # ------------------------------------------------------------------ setup
    def _pack(self):
        from mmdps import tasks

        options = {}
        if self.config.task_template is not None:
            options["template"] = self.config.task_template
        if self.config.system_prompt is not None:
            options["system_prompt"] = self.config.system_prompt
        return tasks.get(self.config.task, **options)

    def _load_items(self, source, split, limit, options) -> list[Item]:
        items = self._pack().load(source, split=split, limit=limit, seed=self.config.seed, **options)
        if not items:
            raise ValueError(f"task {self.config.task!r} loaded no items from source={source!r}, split={split!r}; "
                             "check the path, split and limit")
        return items

    def _load_eval_items(self) -> list[Item]:
        config = self.config
        if config.eval_steps <= 0:
            return []
        return self._load_items(config.eval_source, config.eval_split, config.eval_limit, config.eval_options)

    def _model_path(self) -> str:
        """The model folder; ``tiny:<arch>`` builds a tiny random model once into the output folder."""
        name = self.config.model_name_or_path
        if not name.startswith(TINY_PREFIX):
            return name
        from mmdps.models.tiny import build_tiny_model

        arch = name[len(TINY_PREFIX):]
        folder = self.output_dir / "tiny-model" / arch
        if self.accelerator.is_main_process and not (folder / "config.json").is_file():
            build_tiny_model(arch, folder, seed=0)  # fixed seed: a resumed run rebuilds the same base
        self.accelerator.wait_for_everyone()
        return str(folder)

    def _build_model(self) -> None:
        from mmdps.checkpoint import load_model_weights
        from mmdps.models.loading import (
            apply_lora,
            enable_gradient_checkpointing,
            get_tokenizer,
            is_vision_language,
            load_policy,
        )

        config = self.config
        self.model_path = self._model_path()
        model: torch.nn.Module  # the transformers model, or its peft wrapper with LoRA
        model, processor = load_policy(self.model_path, dtype=config.dtype,
                                       attn_implementation=config.attn_implementation)
        if config.use_lora:
            model = apply_lora(model, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                               target_modules=config.lora_target_modules, exclude_vision=config.lora_exclude_vision)
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        if self.resume_from is not None:
            load_model_weights(self.resume_from, model)
        self.processor = processor
        self.tokenizer = get_tokenizer(processor)
        self.is_vl = is_vision_language(model)
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.eos_token_id
        self.ref_model = None
        if config.beta > 0 and not config.use_lora:  # with LoRA the reference is the base: adapters disabled
            ref, _ = load_policy(self.model_path, dtype=config.dtype, attn_implementation=config.attn_implementation)
            ref.requires_grad_(False).eval()
            self.ref_model = self.accelerator.prepare_model(ref, evaluation_mode=True)
        self.model = model

    def _build_optimizer(self) -> None:
        from transformers import get_scheduler

        config = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters (check use_lora / lora_target_modules)")
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                      betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
        self.updates_per_step = self._num_mini_batches(config.batch_size) * config.ppo_epochs
        # The scheduler is stepped by hand once per optimizer update (accelerate would step it
        # num_processes times per call when prepared).
        self.scheduler = get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=config.warmup_steps,
                                       num_training_steps=config.max_steps * self.updates_per_step)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    def _build_engine(self) -> RolloutEngine:
        from mmdps.rollout import make_engine

        config = self.config
        options: dict[str, Any] = dict(max_prompt_length=config.max_prompt_length, min_pixels=config.min_pixels,
                                       max_pixels=config.max_pixels, truncation=self._truncation)
        if config.engine == "vllm":  # a colocated engine loaded from the base folder, then synced
            options.update(model_path=self.model_path, max_completion_length=config.max_new_tokens,
                           seed=config.seed)
        else:
            options.update(generation_batch_size=config.generation_batch_size)
        options.update(config.engine_kwargs)
        return make_engine(config.engine, self.unwrapped_model, self.processor, **options)

    def _build_encoder(self):
        from mmdps.data.collate import PromptEncoder

        return PromptEncoder(self.processor, max_prompt_length=self.config.max_prompt_length,
                             min_pixels=self.config.min_pixels, max_pixels=self.config.max_pixels,
                             truncation=self._truncation)

    @property
    def _truncation(self) -> str:
        return "left" if self.config.long_prompts == "truncate" else "error"

    def _fit_prompts(self, items: list[Item], what: str) -> list[Item]:
        """Measure every prompt before training and apply ``long_prompts`` to those over the limit."""
        limit, mode = self.config.max_prompt_length, self.config.long_prompts
        lengths = self.encoder.prompt_lengths(items)
        long = [(item, n) for item, n in zip(items, lengths, strict=True) if n > limit]
        if mode == "truncate":  # text prompts are cut on the left; image tokens cannot be cut
            long = [(item, n) for item, n in long if item.images]
        if not long:
            return items
        shown = ", ".join(f"item {item.id} ({_where(item)}, {n} tokens)" for item, n in long[:5])
        more = f" and {len(long) - 5} more" if len(long) > 5 else ""
        summary = f"{len(long)} prompt(s) of the {what} are longer than max_prompt_length={limit}: {shown}{more}"
        if mode == "drop":
            logger.warning("%s; dropped them (long_prompts=drop)", summary)
            dropped = {id(item) for item, _ in long}
            return [item for item in items if id(item) not in dropped]
        if mode == "truncate":
            raise ValueError(f"{summary}; prompts with images cannot be truncated: raise max_prompt_length, lower "
                             "max_pixels, or set long_prompts=drop")
        raise ValueError(f"{summary}; raise max_prompt_length, or set long_prompts=drop (leave them out) or "
                         "long_prompts=truncate (keep the last max_prompt_length tokens of text prompts)")

    @property
    def unwrapped_model(self):
        return self.accelerator.unwrap_model(self.model)

    def _num_mini_batches(self, num_groups: int) -> int:
        size = self.config.mini_batch_size or num_groups
        return max(1, math.ceil(num_groups / size))

    # ------------------------------------------------------------------ checkpoints
    def _trainer_state(self) -> dict[str, Any]:
        return {"rollouts_total": self.rollouts_total, "tokens_total": self.tokens_total,
                "consecutive_nan": self.consecutive_nan, "nan_steps": self.nan_steps,
                "config": self.config.to_dict()}

    def save_checkpoint(self) -> Path:
        from mmdps.checkpoint import save_checkpoint

        return save_checkpoint(self.output_dir, self.step, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, selector=self.selector, item_ids=self.item_ids,
                               trainer_state=self._trainer_state(), processor=self.processor,
                               accelerator=self.accelerator, keep_last=self.config.save_total_limit)

    def _resume(self, path: Path) -> None:
        from mmdps.checkpoint import load_checkpoint, rescale_learning_rate

        state = load_checkpoint(path, optimizer=self.optimizer, scheduler=self.scheduler, selector=self.selector,
                                item_ids=self.item_ids, accelerator=self.accelerator)
        if "learning_rate" in self.resume_changes:  # the restored optimizer holds the checkpoint's rate
            rescale_learning_rate(self.optimizer, self.scheduler, *self.resume_changes["learning_rate"])
        if self.resume_changes and self.accelerator.is_main_process:
            logger.warning("resuming %s with changed settings, applied from step %d on: %s", path, state["step"],
                           "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in self.resume_changes.items()))
        self.step = int(state["step"])
        self.rollouts_total = int(state.get("rollouts_total", 0))
        self.tokens_total = int(state.get("tokens_total", 0))
        self.consecutive_nan = int(state.get("consecutive_nan", 0))
        self.nan_steps = int(state.get("nan_steps", 0))
        self.engine.sync_weights(self.unwrapped_model)
        if self.accelerator.is_main_process:
            logger.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ the loop
    def train(self, *, stop: Callable[[GRPOTrainer], bool] | None = None,
              callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
        """Run until ``max_steps``, or until ``stop(trainer)`` is true (asked before each step, e.g.
        :class:`RolloutBudget`; it must give the same answer on every process). After each step, once it is
        logged and checkpointed, every callback's ``on_step_end(trainer, metrics)`` runs (evaluation
        curves, custom logging). Returns the last step's metrics (empty when nothing was left to do)."""
        from mmdps.logging_utils import MetricsLogger, ProgressBar, config_yaml, metrics_line, write_run_config

        config = self.config
        main = self.accelerator.is_main_process
        console = main and config.progress_bar
        if main:
            path = write_run_config(self.output_dir, config.to_dict())
            if console:
                print(f"resolved config (also in {path}):\n{config_yaml(config.to_dict())}", flush=True)
        verifier_base.new_run()  # the first verifier error of this run is logged as a warning
        metrics_logger = MetricsLogger(self.output_dir, report_to=config.report_to, run_name=config.run_name,
                                       config=config.to_dict(), wandb_project=config.wandb_project, enabled=main)
        metrics_logger.truncate_after(self.step)  # lines past the checkpoint belong to the interrupted run
        bar = ProgressBar(config.max_steps, start=self.step, enabled=main and config.progress_bar)
        last: dict[str, Any] = {}
        try:
            while self.step < config.max_steps and not (stop is not None and stop(self)):
                self.step += 1
                last = self.train_step()
                if self.step % config.logging_steps == 0 or self.step == config.max_steps:
                    metrics_logger.log(self.step, last)
                    if console:  # above the progress bar (rich redirects stdout while it is live)
                        print(metrics_line(self.step, config.max_steps, last), flush=True)
                bar.update(self.step, reward=last.get("reward_mean"), acc=last.get("acc_mean"),
                           effective=last.get("effective_ratio"))
                if config.save_steps and self.step % config.save_steps == 0:
                    self.save_checkpoint()
                for callback in callbacks:
                    callback.on_step_end(self, last)
            if config.save_final and self.step > 0:
                from mmdps.checkpoint import find_latest_checkpoint

                latest = find_latest_checkpoint(self.output_dir)
                if latest is None or not latest.name.endswith(f"{self.step:06d}"):
                    self.save_checkpoint()
        finally:
            bar.close()
            metrics_logger.close()
        return last

    def train_step(self) -> dict[str, Any]:
        """One full step at ``self.step`` (already incremented); returns its metrics."""
        t_start = time.perf_counter()
        groups, stats = self._rollout_phase()
        self.selector.record_trained(np.array([group.position for group in groups], dtype=np.int64))
        t_train = time.perf_counter()
        train_metrics = self._train_phase(groups)
        self.engine.sync_weights(self.unwrapped_model)
        time_train = time.perf_counter() - t_train
        self.rollouts_total += stats.rollouts
        self.tokens_total += stats.tokens

        metrics = self._step_metrics(groups, stats)
        metrics.update(train_metrics)
        metrics.update({"time/select": stats.time_select, "time/rollout": stats.time_rollout,
                        "time/reward": stats.time_reward, "time/train": time_train})
        if self._due(self.config.log_completions_steps) and self.accelerator.is_main_process:
            self._write_samples(groups)
        if self.eval_items and self._due(self.config.eval_steps):
            metrics.update(self.evaluate())
        metrics["time/step"] = time.perf_counter() - t_start
        return metrics

    def _due(self, every: int) -> bool:
        return every > 0 and (self.step % every == 0 or self.step == self.config.max_steps)

    # ------------------------------------------------------------------ rollout phase
    def _rollout_phase(self) -> tuple[list[Group], RolloutStats]:
        """Select, generate, verify and update the selector; DS refills until B groups are admitted."""
        config = self.config
        stats = RolloutStats()
        admitted: list[Group] = []
        for round_index in range(self.selector.max_rounds):
            t0 = time.perf_counter()
            ids = self.selector.select(config.batch_size)
            stats.time_select += time.perf_counter() - t0
            groups = self._generate_and_verify(ids, round_index, stats)
            t0 = time.perf_counter()
            rates = np.array([group.success_rate for group in groups], dtype=np.float64)
            scores = np.stack([group.score for group in groups])
            self.selector.update(ids, rates, rewards=scores)
            keep = self.selector.admit(ids, rates)
            stats.time_select += time.perf_counter() - t0
            stats.rounds += 1
            admitted.extend(group for group, kept in zip(groups, keep, strict=True) if kept)
            if len(admitted) >= config.batch_size:
                break
        return admitted[:config.batch_size], stats

    def _sampling(self, round_index: int) -> SamplingParams:
        # The sampling seed is a pure function of (seed, step, round, rank), so a resumed run
        # samples exactly what the uninterrupted run would have.
        seed = int(np.random.SeedSequence([self.config.seed, self.step, round_index,
                                           self.accelerator.process_index]).generate_state(1)[0] >> 1)
        return SamplingParams(max_new_tokens=self.config.max_new_tokens, temperature=self.config.temperature,
                              top_p=self.config.top_p, top_k=self.config.top_k, seed=seed)

    def _generate_and_verify(self, ids: np.ndarray, round_index: int, stats: RolloutStats) -> list[Group]:
        """Roll out this process's share of ``ids`` and return every process's groups, in ``ids`` order."""
        from accelerate.utils import gather_object

        k = self.config.num_generations
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        local_ids = [int(i) for i in ids[rank::world]]
        local_items = [self.items[i] for i in local_ids]
        t0 = time.perf_counter()
        try:
            outputs = self.engine.generate(local_items, k, self._sampling(round_index)) if local_items else []
        except NonFiniteLogitsError as exc:
            cause = ("the model's first forward pass already overflows: use dtype=bfloat16 or float32 rather than "
                     "float16" if self.step == 1 else
                     f"the updates have diverged: lower learning_rate (now {self.config.learning_rate:g}) and "
                     "resume from an earlier checkpoint")
            raise TrainingDivergedError(f"step {self.step}: {exc} during rollout, so there is nothing to sample "
                                        f"from; {cause}") from exc
        stats.time_rollout += time.perf_counter() - t0
        if len(outputs) != len(local_items) or any(len(row) != k for row in outputs):
            raise RuntimeError(f"{type(self.engine).__name__}.generate returned {[len(r) for r in outputs]} "
                               f"completions for {len(local_items)} items x k={k}")
        t0 = time.perf_counter()
        errors_before = verifier_base.error_count()
        verdicts = self._verify(local_items, outputs)
        errors = verifier_base.error_count() - errors_before
        stats.time_reward += time.perf_counter() - t0
        local = [Group(position=pos, completions=completions, score=v[:, 0], acc=v[:, 1], format=v[:, 2])
                 for pos, completions, v in zip(local_ids, outputs, verdicts, strict=True)]
        everyone = gather_object([(local, errors)]) if world > 1 else [(local, errors)]
        stats.verifier_errors += sum(part_errors for _, part_errors in everyone)
        by_position = {group.position: group for part, _ in everyone for group in part}
        groups = [by_position[int(i)] for i in ids]

        for group in groups:
            lengths = [len(c.token_ids) for c in group.completions]
            stats.prompts_generated += 1
            stats.rollouts += len(group.completions)
            stats.tokens += sum(lengths)
            stats.lengths.extend(lengths)
            stats.truncated += sum(c.truncated for c in group.completions)
            stats.scores.extend(group.score.tolist())
            stats.accs.extend(group.acc.tolist())
            stats.formats.extend(group.format.tolist())
            stats.zero_variance_groups += group.zero_variance
        return groups

    def _verify(self, items: Sequence[Item], outputs: Sequence[Sequence[Completion]]) -> list[np.ndarray]:
        """Per item, an array [k, 3] of (score, acc, format)."""
        from mmdps import verifiers

        jobs = [(item, completion) for item, row in zip(items, outputs, strict=True) for completion in row]
        verifier_of = {name: verifiers.get(name) for name in {item.verifier for item in items}}

        def score(job) -> tuple[float, float, float]:
            item, completion = job
            verdict = score_completion(item, completion.text, verifier_of[item.verifier])
            return verdict.score, verdict.acc, verdict.format

        if self.config.reward_workers > 1:
            with ThreadPoolExecutor(self.config.reward_workers) as pool:
                flat = list(pool.map(score, jobs))
        else:
            flat = [score(job) for job in jobs]
        k = self.config.num_generations
        return [np.asarray(flat[i * k:(i + 1) * k], dtype=np.float64) for i in range(len(items))]

    # ------------------------------------------------------------------ train phase
    def _train_phase(self, groups: list[Group]) -> dict[str, Any]:
        """Advantages, then ``ppo_epochs`` x mini-batch optimizer updates on this process's groups."""
        from mmdps.data.collate import build_policy_batch
        from mmdps.rl import truncation_mask

        config = self.config
        k = config.num_generations
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        if not groups:  # DS found nothing to keep within max_rounds
            self.optimizer.zero_grad(set_to_none=True)
            return {"skipped_update": 1.0, "lr": self.scheduler.get_last_lr()[0]}
        # Every process trains on a slice of the groups; a process without one replays group 0 at
        # weight 0 so that collective ops (DDP all-reduce) stay in step.
        local = groups[rank::world]
        weight = 1.0
        if not local:
            local, weight = groups[:1], 0.0
        completions = [c for group in local for c in group.completions]
        lengths = torch.tensor([len(c.token_ids) for c in completions])
        local_rows = list(range(rank, len(groups), world)) or [0]
        advantages = self._advantages(groups)[local_rows].reshape(-1)
        # What the loss normaliser sees: all completion tokens, of which only the informative groups'
        # (some non-zero advantage) carry policy gradient.
        group_tokens = lengths.view(-1, k).sum(dim=1).float()
        informative = (advantages.view(-1, k) != 0).any(dim=1)
        informative_share = group_tokens[informative].sum() / group_tokens.sum().clamp(min=1)
        token_stats = {"informative_token_share": float(informative_share),
                       "completion_tokens": float(group_tokens.sum())}
        # The number of updates comes from the global group count: under DDP every process must make
        # the same number of optimizer steps, whatever its share (a process with an empty mini-batch
        # replays its first group at weight 0).
        num_mini = self._num_mini_batches(len(groups))
        dropped_count = 0.0
        if self._can_skip_zero_advantage(num_mini):
            local, advantages, weight, dropped_count = _drop_zero_advantage_groups(
                local, advantages, weight, k, config.loss_agg_mode, config.mask_truncated_completions)
            completions = [c for group in local for c in group.completions]
        prompts = self.encoder.encode([self.items[group.position] for group in local])
        batch = build_policy_batch([p for p in prompts for _ in range(k)], [c.token_ids for c in completions],
                                   pad_token_id=self.pad_token_id)
        mask = batch.completion_mask.float()
        if config.mask_truncated_completions:
            mask = truncation_mask(torch.tensor([c.truncated for c in completions]), mask)
        mask = mask * weight

        sampler_logprobs = _sampler_logprobs(completions, batch.completion_length)
        if config.rollout_correction is not None and sampler_logprobs is None:
            raise RuntimeError(f"rollout_correction={config.rollout_correction!r} needs the sampling log-probs of "
                               f"every completion, and {type(self.engine).__name__} reported none (an engine built "
                               "with return_logprobs=False?); turn the correction off or let the engine report them")

        spans = _mini_batch_spans(len(local), num_mini)
        need_old = config.ppo_epochs > 1 or len(spans) > 1
        old_logprobs = self._logprobs_no_grad(self.model, batch) if need_old else None
        ref_logprobs = self._reference_logprobs(batch) if config.beta > 0 else None

        totals: dict[str, float] = {}
        for _ in range(config.ppo_epochs):
            for first, last in spans:
                start, stop = (first * k, last * k) if last > first else (0, k)
                span_mask = mask[start:stop] if last > first else torch.zeros_like(mask[start:stop])
                sampled = None if sampler_logprobs is None else sampler_logprobs[start:stop]
                update = self._update(batch.select(start, stop), advantages[start:stop], span_mask,
                                      None if old_logprobs is None else old_logprobs[start:stop],
                                      None if ref_logprobs is None else ref_logprobs[start:stop],
                                      sampler_logprobs=sampled, dropped_count=dropped_count)
                for key, value in update.items():
                    totals[key] = totals.get(key, 0.0) + value
        updates = config.ppo_epochs * len(spans)
        result = {key: value / updates for key, value in totals.items()}
        result["nan_updates"] = totals.get("nan_updates", 0.0)
        result["lr"] = self.scheduler.get_last_lr()[0]
        result.update(token_stats)
        if result["nan_updates"] > 0:
            self.nan_steps += 1
            self.consecutive_nan += 1
            logger.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", self.step,
                           self.consecutive_nan)
            if self.consecutive_nan >= config.max_consecutive_nan:
                raise TrainingDivergedError(
                    f"step {self.step}: the loss or gradient norm was NaN/inf in {self.consecutive_nan} consecutive "
                    f"steps (max_consecutive_nan={config.max_consecutive_nan}); stopping. Lower learning_rate, "
                    "use float32 / bf16 instead of float16, or resume from an earlier checkpoint.")
        else:
            self.consecutive_nan = 0
        return result

    def _advantages(self, groups: list[Group]) -> torch.Tensor:
        """Advantages ``[len(groups), k]`` over every group of the step (not only this process's share),
        so that batch-level statistics (``scale_rewards="batch"``, ``reinforce_pp``) agree across processes."""
        from mmdps.rl import group_advantages, soft_overlong_penalty

        config = self.config
        scores = torch.tensor(np.concatenate([group.score for group in groups]), dtype=torch.float32)
        if config.overlong_buffer_len > 0:
            lengths = torch.tensor([len(c.token_ids) for group in groups for c in group.completions])
            scores = scores + soft_overlong_penalty(lengths, config.max_new_tokens, config.overlong_buffer_len,
                                                    config.overlong_penalty_factor)
        scale = config.scale_rewards if config.advantage_estimator == "grpo" else None
        advantages = group_advantages(scores, config.num_generations, estimator=config.advantage_estimator,
                                      scale_std=scale)
        return advantages.view(len(groups), config.num_generations)

    def _can_skip_zero_advantage(self, num_mini: int) -> bool:
        """Zero-advantage rows only feed the entropy / KL terms and, across several updates, the
        mini-batch normalisers: without those they carry no gradient and can be left out."""
        config = self.config
        return (config.skip_zero_advantage_groups and config.entropy_coeff == 0 and config.beta == 0
                and config.ppo_epochs == 1 and num_mini == 1)

    def _forward_kwargs(self) -> dict[str, Any]:
        temperature = self.config.temperature if self.config.temperature > 0 else 1.0
        return {"temperature": temperature}

    @torch.no_grad()
    def _logprobs_no_grad(self, model, batch) -> torch.Tensor:
        from mmdps.models.forward import completion_logprobs

        was_training = model.training
        model.eval()  # no dropout: old log-probs are those of the sampling policy
        try:
            parts = [completion_logprobs(model, micro, **self._forward_kwargs())[0].float()
                     for micro in batch.micro_batches(self.config.micro_batch_size)]
        finally:
            model.train(was_training)
        return _cat_padded(parts)

    def _reference_logprobs(self, batch) -> torch.Tensor:
        if self.ref_model is not None:
            return self._logprobs_no_grad(self.ref_model, batch)
        with self.unwrapped_model.disable_adapter():  # LoRA: the frozen base is the reference
            return self._logprobs_no_grad(self.model, batch)

    def _update(self, batch, advantages: torch.Tensor, mask: torch.Tensor, old_logprobs: torch.Tensor | None,
                ref_logprobs: torch.Tensor | None, *, sampler_logprobs: torch.Tensor | None = None,
                dropped_count: float = 0.0) -> dict[str, float]:
        """One optimizer update over ``batch`` with gradient accumulation over micro-batches.
        ``sampler_logprobs``: the rollout engine's log-probs of the same tokens (mismatch statistics and
        ``rollout_correction``). ``dropped_count``: tokens (or sequences) of rows left out of ``batch`` that
        still count in the loss normaliser (see ``skip_zero_advantage_groups``)."""
        from mmdps.models.forward import completion_logprobs
        from mmdps.rl import aggregate_loss, kl_penalty, policy_loss, rollout_correction_weights, rollout_mismatch

        config = self.config
        accelerator = self.accelerator
        device = accelerator.device
        world = accelerator.num_processes
        # The normaliser of the loss over the whole (global) mini-batch, so that the micro-batch
        # losses add up to the full-batch loss; DDP averages gradients, hence the factor `world`.
        if config.loss_agg_mode == "token-mean":
            count = mask.sum()
        else:
            count = (mask > 0).any(dim=1).sum().float()
        count = count + dropped_count
        count = accelerator.reduce(count.to(device), reduction="sum") if world > 1 else count.to(device)
        normalizer = count.clamp(min=1.0)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        tokens_seen = 0.0
        nonfinite = False
        size = config.micro_batch_size
        starts = list(range(0, len(batch), size))
        for index, start in enumerate(starts):
            stop = min(start + size, len(batch))
            micro = batch.select(start, stop)
            micro_mask = mask[start:stop].to(device)
            sync = index == len(starts) - 1
            context = contextlib.nullcontext() if sync or world == 1 else accelerator.no_sync(self.model)
            with context:
                logprobs, entropy = completion_logprobs(self.model, micro, with_entropy=config.entropy_coeff > 0,
                                                        **self._forward_kwargs())
                old = logprobs.detach() if old_logprobs is None else old_logprobs[start:stop].to(device)
                # `old` is the policy that sampled, as the trainer computes it: against the engine's own
                # log-probs it measures (and corrects) the sampler/trainer mismatch.
                rollout_weights = None
                rollout_stats: dict[str, torch.Tensor] = {}
                if sampler_logprobs is not None:
                    sampled = sampler_logprobs[start:stop].to(device)
                    rollout_stats = rollout_mismatch(old, sampled, micro_mask)
                    if config.rollout_correction is not None:
                        rollout_weights, correction = rollout_correction_weights(
                            old, sampled, micro_mask, config.rollout_correction, cap=config.rollout_correction_cap,
                            level=config.rollout_correction_level)
                        rollout_stats.update(is_weight_mean=correction["weight_mean"],
                                             corrected_frac=correction["corrected_frac"])
                loss, stats = policy_loss(logprobs, old, advantages[start:stop].to(device), micro_mask,
                                          clip_low=config.clip_low, clip_high=config.clip_high, clip_c=config.clip_c,
                                          ratio_level=config.ratio_level, loss_type=config.loss_type,
                                          rollout_weights=rollout_weights, loss_agg_mode=config.loss_agg_mode,
                                          max_len=config.max_new_tokens, normalizer=normalizer)
                values = {"pg_loss": float(loss.detach())}
                if ref_logprobs is not None:
                    kl = kl_penalty(logprobs, ref_logprobs[start:stop].to(device), config.kl_estimator)
                    kl_term = aggregate_loss(kl, micro_mask, config.loss_agg_mode, max_len=config.max_new_tokens,
                                             normalizer=normalizer)
                    loss = loss + config.beta * kl_term
                    values["kl"] = float(kl_term.detach())
                if entropy is not None:
                    entropy_term = aggregate_loss(entropy, micro_mask, config.loss_agg_mode,
                                                  max_len=config.max_new_tokens, normalizer=normalizer)
                    loss = loss - config.entropy_coeff * entropy_term
                    values["entropy"] = float(entropy_term.detach())
                if not torch.isfinite(loss):
                    nonfinite = True
                accelerator.backward(loss * world)
            values["loss"] = float(loss.detach())
            for key, value in values.items():  # these are shares of the full-batch value: sum them
                sums[key] = sums.get(key, 0.0) + value
            micro_tokens = float(micro_mask.sum())
            tokens_seen += micro_tokens
            for key in ("clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean"):
                sums[key] = sums.get(key, 0.0) + float(stats[key]) * micro_tokens
            sums["ratio_max"] = max(sums.get("ratio_max", 0.0), float(stats["ratio_max"]))
            for key, stat in rollout_stats.items():
                if key == "logprob_diff_max":
                    sums["rollout/logprob_diff_max"] = max(sums.get("rollout/logprob_diff_max", 0.0), float(stat))
                elif key != "ratio_mean":
                    sums[f"rollout/{key}"] = sums.get(f"rollout/{key}", 0.0) + float(stat) * micro_tokens
        token_means = ["clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl", "ratio_mean"]
        token_means += [key for key in sums if key.startswith("rollout/") and key != "rollout/logprob_diff_max"]
        for key in token_means:
            sums[key] = sums[key] / tokens_seen if tokens_seen else 0.0
        if world > 1:
            flag = accelerator.reduce(torch.tensor(float(nonfinite), device=device), reduction="sum")
            nonfinite = bool(flag > 0)
        grad_norm = float("nan")
        if not nonfinite:
            norm = accelerator.clip_grad_norm_(self.trainable, config.max_grad_norm)
            if norm is not None:  # DeepSpeed clips inside its own step and returns None
                grad_norm = float(norm)
                nonfinite = not math.isfinite(grad_norm)
        if nonfinite:
            self.optimizer.zero_grad(set_to_none=True)  # skip the update entirely
        else:
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if not _all_finite(self.trainable):  # finite gradients, yet the step overflowed the weights
                raise TrainingDivergedError(
                    f"step {self.step}: the weights became NaN/inf in the optimizer update (grad norm "
                    f"{grad_norm:.3g}, learning rate {self.scheduler.get_last_lr()[0]:g}); lower learning_rate and "
                    "resume from an earlier checkpoint")
        sums["grad_norm"] = grad_norm
        sums["nan_updates"] = float(nonfinite)
        return sums

    # ------------------------------------------------------------------ evaluation and logging
    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_items`` with :func:`mmdps.eval.evaluate_items` (main process); ``eval/*`` metrics."""
        from mmdps.eval import evaluate_items, flat_metrics

        config = self.config
        metrics: dict[str, float] = {}
        if self.accelerator.is_main_process:
            sampling = SamplingParams(max_new_tokens=config.eval_max_new_tokens or config.max_new_tokens,
                                      temperature=config.eval_temperature, top_p=config.eval_top_p, seed=config.seed)
            result = evaluate_items(self.engine, self.eval_items, n=config.eval_num_samples, sampling=sampling,
                                    progress=False)
            metrics = flat_metrics(result.report, with_groups=False)
        self.accelerator.wait_for_everyone()
        return metrics

    def _step_metrics(self, groups: list[Group], stats: RolloutStats) -> dict[str, Any]:
        trained_zero_var = sum(group.zero_variance for group in groups)
        metrics: dict[str, Any] = {
            "prompts_selected": len(groups),
            "prompts_generated": stats.prompts_generated,
            "rollout_rounds": stats.rounds,
            "rollouts": stats.rollouts,
            "rollouts_total": self.rollouts_total,
            "tokens_generated": stats.tokens,
            "tokens_total": self.tokens_total,
            "reward_mean": _mean(stats.scores),
            "reward_std": float(np.std(stats.scores)) if stats.scores else float("nan"),
            "acc_mean": _mean(stats.accs),
            "format_mean": _mean(stats.formats),
            "completion_length_mean": _mean(stats.lengths),
            "truncated_share": stats.truncated / stats.rollouts if stats.rollouts else 0.0,
            "zero_variance_share": stats.zero_variance_groups / stats.prompts_generated
            if stats.prompts_generated else 0.0,
            "effective_ratio": 1.0 - trained_zero_var / len(groups) if groups else 0.0,
            "reward/verifier_errors": stats.verifier_errors,
        }
        metrics.update({f"selector/{key}": value for key, value in self.selector.diagnostics().items()})
        metrics.update(self.selector.training_diagnostics())
        return metrics

    def _write_samples(self, groups: list[Group]) -> None:
        from mmdps.logging_utils import write_samples

        records = []
        for group in groups:
            item = self.items[group.position]
            for j, completion in enumerate(group.completions):
                records.append({"step": self.step, "position": group.position, "id": item.id, "prompt": item.text,
                                "ground_truth": item.ground_truth, "completion": completion.text,
                                "score": group.score[j], "acc": group.acc[j], "format": group.format[j],
                                "finish_reason": completion.finish_reason, "tokens": len(completion.token_ids)})
        if records:
            chosen = random.Random(self.step).sample(records, min(self.config.num_completions_to_log, len(records)))
            write_samples(self.output_dir, self.step, chosen)


# ---------------------------------------------------------------------- helpers
def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _mini_batch_spans(num_groups: int, num_mini: int) -> list[tuple[int, int]]:
    """Exactly ``num_mini`` contiguous ``(start, stop)`` group ranges covering ``range(num_groups)``,
    each at most ``ceil(num_groups / num_mini)`` long; trailing ranges are empty when there are
    fewer groups than mini-batches (a DDP process with a small share)."""
    size = max(1, math.ceil(num_groups / num_mini))
    return [(min(i * size, num_groups), min((i + 1) * size, num_groups)) for i in range(num_mini)]


def _drop_zero_advantage_groups(local, advantages: torch.Tensor, weight: float, k: int, loss_agg_mode: str,
                                mask_truncated: bool):
    """Remove the groups whose k advantages are all exactly 0. Returns the kept groups, their
    advantages and weight, and the normaliser count of what was removed (tokens for ``token-mean``,
    sequences otherwise). When nothing is kept, the first group stays at weight 0 so that the optimizer
    still sees zero gradients (AdamW's momentum and weight decay act as without the skip)."""
    keep = (advantages.view(-1, k) != 0).any(dim=1)
    dropped = 0.0
    for group, kept in zip(local, keep.tolist(), strict=True):
        if kept:
            continue
        for completion in group.completions:
            valid = len(completion.token_ids) if not (mask_truncated and completion.truncated) else 0
            dropped += valid if loss_agg_mode == "token-mean" else float(valid > 0)
    dropped *= weight
    if not keep.any():
        return local[:1], advantages[:k], 0.0, dropped
    kept_groups = [group for group, kept in zip(local, keep.tolist(), strict=True) if kept]
    return kept_groups, advantages[keep.repeat_interleave(k)], weight, dropped


def _sampler_logprobs(completions: Sequence[Completion], width: int) -> torch.Tensor | None:
    """The engine's log-probs of the completions' tokens, ``[N, width]`` right-padded with zeros (the
    layout of a policy batch), or None unless every completion has one per token."""
    rows = [c.logprobs for c in completions if c.logprobs is not None and len(c.logprobs) == len(c.token_ids)]
    if not rows or len(rows) != len(completions):
        return None
    out = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


def _cat_padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate [n_i, T_i] tensors along rows, right-padding to the widest T with zeros."""
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts])


def _check_items(items: Sequence[Item], what: str) -> None:
    """Unique ids, a verifier for every item, and images that exist (clear errors naming the row)."""
    if not items:
        raise ValueError(f"the {what} is empty")
    seen: dict[int, int] = {}
    for position, item in enumerate(items):
        if item.id in seen:
            raise ValueError(f"{what}: items {seen[item.id]} and {position} share id {item.id}; ids must be unique "
                             "(checkpoints and the selector key prompts by them)")
        seen[item.id] = position
        if not item.verifier:
            raise ValueError(f"{what}: item {item.id} names no verifier")
        for image in item.images:
            if image is None:
                raise ImageError(f"{what}: item {item.id} ({_where(item)}) has an image part without an image")
            if isinstance(image, (str, os.PathLike)) and not str(image).startswith(("http://", "https://")) \
                    and not os.path.exists(str(image).removeprefix("file://")):
                raise ImageError(f"{what}: item {item.id} ({_where(item)}): image file not found: {image}")


def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """True when no tensor holds a NaN or inf (one device sync for all of them)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


def _check_pool(items: Sequence[Item], batch_size: int) -> None:
    if batch_size > len(items):
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(items)} prompts): a step "
                         "selects batch_size different prompts; lower batch_size or train on more prompts")


def _where(item: Item) -> str:
    meta = item.metadata
    parts = [f"{key} {meta[key]}" for key in ("source", "file", "row") if key in meta]
    return ", ".join(parts) or f"task {item.task}"


def _check_modality(items: Sequence[Item], is_vl: bool, model_name: str) -> None:
    if is_vl:
        return
    with_images = next((item for item in items if item.images), None)
    if with_images is not None:
        raise ValueError(f"item {with_images.id} has images but {model_name} is a text-only model; use a "
                         "vision-language model (e.g. Qwen2.5-VL) or a text task")
