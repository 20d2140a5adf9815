"""The GRPO trainer: selector in the loop, text and vision-language policies, accelerate underneath.

One step (:meth:`GRPOTrainer.train_step`, read it top to bottom)::

    select B prompt ids (before any rollout) -> generate k completions per prompt -> verify
    -> selector.update(ids, success_rates)  [-> DS: admit + refill rounds, every rollout counted]
    -> group advantages -> policy loss over micro-batches -> clip grad -> optimizer step -> weight sync

The pieces live in :mod:`mmdps.training`: ``builders`` (what a run is built from), ``rollout`` (the rollout
phase), ``update`` (advantages and optimizer updates), ``metrics``; the RL math in :mod:`mmdps.rl`.

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

import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mmdps.config import GRPOConfig
from mmdps.data.item import Item
from mmdps.rollout.base import RolloutEngine, SamplingParams
from mmdps.rollout.scoring import Group
from mmdps.seeding import seed_everything
from mmdps.training import builders
from mmdps.training.collectives import any_rank, gather_with_timeout, process_group_kwargs
from mmdps.training.metrics import RolloutStats, step_metrics, write_samples
from mmdps.training.preemption import StopOnSignal
from mmdps.training.rollout import collect_groups
from mmdps.training.update import PolicyUpdate, TrainingDivergedError, mini_batch_spans, step_advantages
from mmdps.verifiers import base as verifier_base

logger = logging.getLogger(__name__)

__all__ = ["GRPOTrainer", "Group", "RolloutBudget", "RolloutStats", "TrainerCallback", "TrainingDivergedError"]

TINY_PREFIX = builders.TINY_PREFIX
_mini_batch_spans = mini_batch_spans  # deprecated private alias (one release)


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


class GRPOTrainer:
    """GRPO / DAPO training with a prompt selector in the loop.

    Args:
        config: the run's :class:`~mmdps.config.GRPOConfig`.
        items: training items (default: loaded from ``config.task`` / ``train_source``).
        eval_items: held-out items for ``eval_steps`` (default: loaded from ``eval_source`` when set).
        engine: a ready :class:`~mmdps.rollout.base.RolloutEngine` (default: ``make_engine(config.engine)``
            over the policy).
    """

    stopped_by_signal: str | None = None  # set by train(): the signal that stopped the last run, if any

    def __init__(self, config: GRPOConfig, *, items: Sequence[Item] | None = None,
                 eval_items: Sequence[Item] | None = None, engine: RolloutEngine | None = None):
        from accelerate import Accelerator

        from mmdps import verifiers
        from mmdps.checkpoint import adopt_timeline, item_digest, lock_output_dir, resolve_resume, resume_changes
        from mmdps.logging_utils import check_report_to
        from mmdps.models.loading import get_tokenizer, load_policy_processor

        self.config = config
        self.output_dir = Path(config.output_dir)
        bf16 = torch.cuda.is_available() if config.bf16 is None else config.bf16
        self.accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available(),
                                       kwargs_handlers=[process_group_kwargs(config.collective_timeout_s)])
        seed_everything(config.seed)
        if self.accelerator.is_main_process:  # one run per output_dir: a save prunes the folder's checkpoints
            check_report_to(config.report_to)  # a missing extra fails now, not after the model has loaded
            self._output_lock = lock_output_dir(self.output_dir)
            weakref.finalize(self, self._output_lock.release)
        verifiers.check_environment()  # a bad MMDPS_VERIFIER_* variable fails now, not at the first reward
        # Resume is decided once: the checkpoint (or None) and the settings it changes (others are refused).
        # A run resumed from an older checkpoint owns the timeline from there (newer ones are set aside).
        self.resume_from = resolve_resume(config.resume, self.output_dir)
        self.resume_changes = resume_changes(self.resume_from, config.to_dict()) if self.resume_from else {}
        self.accelerator.wait_for_everyone()
        if self.resume_from is not None and self.accelerator.is_main_process:
            adopt_timeline(self.output_dir, self.resume_from)

        # processor -> items -> selector -> model -> optimizer -> engine -> restore
        self.model_path = builders.model_path(config, self.output_dir, self.accelerator)
        self.processor, self.is_vl = load_policy_processor(self.model_path)
        self.tokenizer = get_tokenizer(self.processor)
        encoder = builders.build_encoder(config, self.processor)
        self.reward = builders.reward_verifier(config)  # the config's own reward function, when it names one
        self.items = self._prepare_items(items if items is not None else builders.training_items(config),
                                         encoder, "training set")
        builders.check_pool(self.items, config.batch_size)
        self.item_ids = [item.id for item in self.items]
        self.item_digests = [item_digest(item) for item in self.items]  # a checkpoint resumes onto these prompts only
        self.eval_items = list(eval_items) if eval_items is not None else builders.eval_items(config)
        if self.eval_items:
            self.eval_items = self._prepare_items(self.eval_items, encoder, "eval set")
        self.selector = builders.build_selector(config, len(self.items))

        self.model, self.ref_model = builders.build_policy(config, self.model_path, self.accelerator, self.processor,
                                                           weights_from=self.resume_from)
        self.model, self.optimizer, self.scheduler = builders.build_optimizer(config, self.model, self.accelerator)
        self.engine = engine if engine is not None else builders.build_engine(
            config, self.unwrapped_model, self.processor, self.model_path)
        self.encoder = getattr(self.engine, "encoder", None) or encoder
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.update = PolicyUpdate(config, self.accelerator, self.model, self.optimizer, self.scheduler,
                                   encoder=self.encoder, pad_token_id=pad, ref_model=self.ref_model)
        self.step = 0
        self.rollouts_total = 0
        self.tokens_total = 0
        if self.resume_from is not None:
            self._restore(self.resume_from)

    def _prepare_items(self, items: Sequence[Item], encoder, what: str) -> list[Item]:
        """Checked (ids, verifiers, images, modality), rewarded as configured, measured against
        ``max_prompt_length``, and their ground truths scored by the run's reward."""
        items = list(items)
        builders.check_items(items, what)
        builders.check_modality(items, self.is_vl, self.config.model_name_or_path)
        items = builders.fit_prompts(items, encoder, self.config, what)
        builders.check_ground_truth(self.config, items, what, self.reward)
        return builders.use_reward(items, self.reward)

    @property
    def unwrapped_model(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def trainable(self) -> list[torch.nn.Parameter]:
        return self.update.trainable

    @property
    def pad_token_id(self) -> int:
        return self.update.pad_token_id

    @property
    def updates_per_step(self) -> int:
        """Optimizer updates in a full step: mini-batches x ``ppo_epochs`` (what the LR schedule counts)."""
        return builders.num_mini_batches(self.config, self.config.batch_size) * self.config.ppo_epochs

    # ------------------------------------------------------------------ the loop
    def train(self, *, stop: Callable[[GRPOTrainer], bool] | None = None,
              callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
        """Run until ``max_steps``, or until ``stop(trainer)`` is true (asked before each step, e.g.
        :class:`RolloutBudget`; it must give the same answer on every process). After each step, once it is
        logged and checkpointed, every callback's ``on_step_end(trainer, metrics)`` runs (evaluation
        curves, custom logging). Returns the last step's metrics (empty when nothing was left to do).

        SIGTERM (preemption) stops the run after the step in progress, on every process at the same step, with
        a checkpoint; :attr:`stopped_by_signal` then names the signal (None after a run that went to its end)."""
        from mmdps.logging_utils import (
            MetricsLogger,
            ProgressBar,
            config_yaml,
            eval_line,
            metrics_line,
            step_figures,
            write_run_config,
        )

        config = self.config
        main = self.accelerator.is_main_process
        console = main and config.console_log  # independent of the progress bar
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
        self.stopped_by_signal = None
        stop_signal = StopOnSignal()
        stop_signal.install()
        try:
            while self.step < config.max_steps and not (stop is not None and stop(self)):
                self.step += 1
                last = self.train_step()
                if self.step % config.logging_steps == 0 or self.step == config.max_steps:
                    metrics_logger.log(self.step, last)
                    if console:  # above the progress bar (rich redirects stdout while it is live)
                        print(metrics_line(self.step, config.max_steps, last), flush=True)
                if console and (line := eval_line(self.step, last)) is not None:
                    print(line, flush=True)
                bar.update(self.step, step_figures(last))
                if config.save_steps and self.step % config.save_steps == 0:
                    self.save_checkpoint()
                for callback in callbacks:
                    callback.on_step_end(self, last)
                if self.step < config.max_steps and self._stop_requested(stop_signal):
                    self.stopped_by_signal = stop_signal.signal_name or "SIGTERM"  # or it reached another rank
                    break
            if (config.save_final or self.stopped_by_signal) and self.step > 0:
                from mmdps.checkpoint import find_latest_checkpoint

                latest = find_latest_checkpoint(self.output_dir)
                if latest is None or not latest.name.endswith(f"{self.step:06d}"):
                    self.save_checkpoint()
        finally:
            stop_signal.uninstall()
            bar.close()
            metrics_logger.close()
        if self.stopped_by_signal and main:
            logger.warning("stopped by %s at step %d of %d with a checkpoint; run again with resume=auto to go on",
                           self.stopped_by_signal, self.step, config.max_steps)
        if main and self.step > 0:  # how well the selector predicted: <output_dir>/selection.png (DPS, MoPPS)
            from mmdps.selection_plot import plot_selection

            plot_selection(self.output_dir)
        return last

    def _stop_requested(self, stop_signal: StopOnSignal) -> bool:
        """Whether any process received a stop signal: all of them must stop after the same step, or the ones
        going on would wait forever in the next step's collectives."""
        return any_rank(stop_signal.requested, self.config.collective_timeout_s,
                        f"step {self.step}: agreeing whether to stop", device=self.accelerator.device)

    def train_step(self) -> dict[str, Any]:
        """One full GRPO step at ``self.step`` (already incremented); returns its metrics."""
        t_start = time.perf_counter()
        # select -> rollout -> verify -> selector update (Dynamic Sampling: admit and refill)
        groups, stats = collect_groups(self.config, self.step, self.selector, self.engine, self.items,
                                       self.accelerator)
        self.selector.record_trained(np.array([group.position for group in groups], dtype=np.int64))
        self.rollouts_total += stats.rollouts
        self.tokens_total += stats.tokens
        # advantages -> loss over micro-batches -> optimizer step (ppo_epochs x mini-batches)
        t_train = time.perf_counter()
        advantages = step_advantages(groups, self.config) if groups else []
        metrics = self.update(groups, advantages, self.step)
        self.engine.sync_weights(self.unwrapped_model)  # the engine samples the updated policy next step
        time_train = time.perf_counter() - t_train

        metrics.update(step_metrics(groups, stats, self.selector, rollouts_total=self.rollouts_total,
                                    tokens_total=self.tokens_total))
        metrics.update({"time/select": stats.time_select, "time/rollout": stats.time_rollout,
                        "time/reward": stats.time_reward, "time/train": time_train})
        if self._due(self.config.log_completions_steps) and self.accelerator.is_main_process:
            write_samples(self.output_dir, self.step, groups, self.config.num_completions_to_log)
        if self.eval_items and self._due(self.config.eval_steps):
            metrics.update(self.evaluate())
        metrics["time/step"] = time.perf_counter() - t_start
        return metrics

    def _due(self, every: int) -> bool:
        return every > 0 and (self.step % every == 0 or self.step == self.config.max_steps)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Evaluate on ``eval_items`` with :func:`mmdps.eval.evaluate_items`; ``eval/*`` metrics on the main
        process. Every process samples its share of the batches (the same completions as one process would),
        and the report is computed from all of them."""
        from mmdps.eval import evaluate_items, flat_metrics

        config = self.config
        sampling = SamplingParams(max_new_tokens=config.eval_max_new_tokens or config.max_new_tokens,
                                  temperature=config.eval_temperature, top_p=config.eval_top_p, seed=config.seed)

        def gather(part):
            return gather_with_timeout(part, config.collective_timeout_s, f"step {self.step}: gathering the evaluation")

        result = evaluate_items(self.engine, self.eval_items, n=config.eval_num_samples, sampling=sampling,
                                progress=False, shard=(self.accelerator.process_index, self.accelerator.num_processes),
                                gather=gather)
        return flat_metrics(result.report, with_groups=False) if self.accelerator.is_main_process else {}

    # ------------------------------------------------------------------ checkpoints
    def _trainer_state(self) -> dict[str, Any]:
        return {"rollouts_total": self.rollouts_total, "tokens_total": self.tokens_total,
                "consecutive_nan": self.update.consecutive_nan, "nan_steps": self.update.nan_steps,
                "config": self.config.to_dict()}

    def save_checkpoint(self) -> Path:
        from mmdps.checkpoint import save_checkpoint

        return save_checkpoint(self.output_dir, self.step, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, selector=self.selector, item_ids=self.item_ids,
                               trainer_state=self._trainer_state(), processor=self.processor,
                               accelerator=self.accelerator, keep_last=self.config.save_total_limit,
                               item_digests=self.item_digests)

    def _restore(self, path: Path) -> None:
        """Optimizer, scheduler, selector, RNG and counters from checkpoint ``path`` (the weights were loaded
        before the model was wrapped), with the changed settings applied from here on."""
        from mmdps.checkpoint import load_checkpoint, rescale_learning_rate

        state = load_checkpoint(path, optimizer=self.optimizer, scheduler=self.scheduler, selector=self.selector,
                                item_ids=self.item_ids, accelerator=self.accelerator, item_digests=self.item_digests)
        if "learning_rate" in self.resume_changes:  # the restored optimizer holds the checkpoint's rate
            rescale_learning_rate(self.optimizer, self.scheduler, *self.resume_changes["learning_rate"])
        if self.resume_changes and self.accelerator.is_main_process:
            logger.warning("resuming %s with changed settings, applied from step %d on: %s", path, state["step"],
                           "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in self.resume_changes.items()))
        self.step = int(state["step"])
        self.rollouts_total = int(state.get("rollouts_total", 0))
        self.tokens_total = int(state.get("tokens_total", 0))
        self.update.consecutive_nan = int(state.get("consecutive_nan", 0))
        self.update.nan_steps = int(state.get("nan_steps", 0))
        self.engine.sync_weights(self.unwrapped_model)
        if self.accelerator.is_main_process:
            logger.info("resumed from %s at step %d", path, self.step)
