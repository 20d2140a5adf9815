"""The learning half of a GRPO step: advantages over the step's groups, then ``ppo_epochs`` x mini-batch
optimizer updates (micro-batch gradient accumulation, :func:`~mmdps.rl.grpo_objective`, a guarded optimizer
step). Groups may have different sizes; under DDP each process trains on its slice of the groups."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmdps.config import GRPOConfig
from mmdps.rl import ObjectiveSettings
from mmdps.rollout.base import Completion
from mmdps.rollout.scoring import Group
from mmdps.training.collectives import reduce_with_timeout
from mmdps.training.metrics import UpdateStats

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """Raised after ``max_consecutive_nan`` non-finite losses or gradient norms in a row, and at once
    when an update leaves non-finite weights or the policy's logits become non-finite in rollout."""


def step_advantages(groups: Sequence[Group], config: GRPOConfig) -> list[torch.Tensor]:
    """Each group's advantages, computed over every group of the step (not only this process's share), so
    that batch-level statistics (``scale_rewards="batch"``, ``reinforce_pp``) agree across processes."""
    from mmdps.rl import group_advantages, soft_overlong_penalty

    scores = torch.tensor(np.concatenate([group.score for group in groups]), dtype=torch.float32)
    if config.overlong_buffer_len > 0:
        lengths = torch.tensor([length for group in groups for length in group.lengths])
        scores = scores + soft_overlong_penalty(lengths, config.max_new_tokens, config.overlong_buffer_len,
                                                config.overlong_penalty_factor)
    sizes = [group.size for group in groups]
    scale = config.scale_rewards if config.advantage_estimator == "grpo" else None
    advantages = group_advantages(scores, sizes, estimator=config.advantage_estimator, scale_std=scale)
    return list(advantages.split(sizes))


def objective_settings(config: GRPOConfig) -> ObjectiveSettings:
    return ObjectiveSettings(clip_low=config.clip_low, clip_high=config.clip_high, clip_c=config.clip_c,
                             ratio_level=config.ratio_level, loss_type=config.loss_type,
                             loss_agg_mode=config.loss_agg_mode, max_new_tokens=config.max_new_tokens,
                             beta=config.beta, kl_estimator=config.kl_estimator, entropy_coeff=config.entropy_coeff)


class PolicyUpdate:
    """Turns a step's groups and advantages into optimizer updates of ``model``; counts non-finite steps."""

    def __init__(self, config: GRPOConfig, accelerator, model, optimizer, scheduler, *, encoder, pad_token_id: int,
                 ref_model=None):
        self.config, self.accelerator = config, accelerator
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.encoder, self.pad_token_id, self.ref_model = encoder, pad_token_id, ref_model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.consecutive_nan = 0
        self.nan_steps = 0

    def __call__(self, groups: list[Group], advantages: list[torch.Tensor], step: int) -> dict[str, Any]:
        """``ppo_epochs`` x mini-batch updates on this process's share of ``groups``; returns the metrics."""
        from mmdps.data.collate import build_policy_batch
        from mmdps.rl import truncation_mask
        from mmdps.training.builders import num_mini_batches

        config = self.config
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        if not groups:  # DS found nothing to keep within max_rounds
            self.optimizer.zero_grad(set_to_none=True)
            return {"skipped_update": 1.0, "lr": self.scheduler.get_last_lr()[0]}
        # Every process trains on a slice of the groups; a process without one replays group 0 at
        # weight 0 so that collective ops (DDP all-reduce) stay in step.
        local, local_adv = groups[rank::world], advantages[rank::world]
        weight = 1.0
        if not local:
            local, local_adv, weight = groups[:1], advantages[:1], 0.0
        token_stats = _informative_tokens(local, local_adv)
        # The number of updates comes from the global group count: under DDP every process must make
        # the same number of optimizer steps, whatever its share.
        num_mini = num_mini_batches(config, len(groups))
        dropped_count = 0.0
        if self._can_skip_zero_advantage(num_mini):
            local, local_adv, weight, dropped_count = drop_zero_advantage_groups(
                local, local_adv, weight, config.loss_agg_mode, config.mask_truncated_completions)
        completions = [c for group in local for c in group.completions]
        prompts = self.encoder.encode([group.item for group in local])
        batch = build_policy_batch([p for p, group in zip(prompts, local, strict=True) for _ in range(group.size)],
                                   [c.token_ids for c in completions], pad_token_id=self.pad_token_id)
        flat_adv = torch.cat(local_adv)
        mask = batch.completion_mask.float()
        if config.mask_truncated_completions:
            mask = truncation_mask(torch.tensor([c.truncated for c in completions]), mask)
        mask = mask * weight

        sampler_logprobs = sampler_logprobs_of(completions, batch.completion_length)
        if config.rollout_correction is not None and sampler_logprobs is None:
            raise RuntimeError(f"rollout_correction={config.rollout_correction!r} needs the sampling log-probs of "
                               "every completion, and the engine reported none (an engine built with "
                               "return_logprobs=False?); turn the correction off or let the engine report them")
        offsets = np.cumsum([0] + [group.size for group in local]).tolist()
        spans = mini_batch_spans(len(local), num_mini)
        need_old = config.ppo_epochs > 1 or len(spans) > 1
        old_logprobs = self._logprobs_no_grad(self.model, batch) if need_old else None
        ref_logprobs = self._reference_logprobs(batch) if config.beta > 0 else None

        totals: dict[str, float] = {}
        for _ in range(config.ppo_epochs):
            for first, last in spans:
                start, stop = (offsets[first], offsets[last]) if last > first else (0, offsets[1])
                span_mask = mask[start:stop] if last > first else torch.zeros_like(mask[start:stop])
                rows = slice(start, stop)
                update = self._update(batch.select(start, stop), flat_adv[rows], span_mask,
                                      None if old_logprobs is None else old_logprobs[rows],
                                      None if ref_logprobs is None else ref_logprobs[rows],
                                      sampler_logprobs=None if sampler_logprobs is None else sampler_logprobs[rows],
                                      dropped_count=dropped_count, step=step)
                for key, value in update.items():
                    totals[key] = totals.get(key, 0.0) + value
        updates = config.ppo_epochs * len(spans)
        result = {key: value / updates for key, value in totals.items()}
        result["nan_updates"] = totals.get("nan_updates", 0.0)
        result["lr"] = self.scheduler.get_last_lr()[0]
        result.update(token_stats)
        self._count_nonfinite(result["nan_updates"] > 0, step)
        return result

    def _count_nonfinite(self, nonfinite: bool, step: int) -> None:
        if not nonfinite:
            self.consecutive_nan = 0
            return
        self.nan_steps += 1
        self.consecutive_nan += 1
        logger.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", step,
                       self.consecutive_nan)
        if self.consecutive_nan >= self.config.max_consecutive_nan:
            raise TrainingDivergedError(
                f"step {step}: the loss or gradient norm was NaN/inf in {self.consecutive_nan} consecutive "
                f"steps (max_consecutive_nan={self.config.max_consecutive_nan}); stopping. Lower learning_rate, "
                "use float32 / bf16 instead of float16, or resume from an earlier checkpoint.")

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
        with self.accelerator.unwrap_model(self.model).disable_adapter():  # LoRA: the frozen base is the reference
            return self._logprobs_no_grad(self.model, batch)

    def _normalizer(self, mask: torch.Tensor, dropped_count: float) -> torch.Tensor:
        """The loss normaliser over the whole (global) mini-batch, so that the micro-batch losses add up to the
        full-batch loss: tokens for ``token-mean``, sequences otherwise, left-out rows included."""
        accelerator = self.accelerator
        if self.config.loss_agg_mode == "token-mean":
            count = mask.sum()
        else:
            count = (mask > 0).any(dim=1).sum().float()
        count = (count + dropped_count).to(accelerator.device)
        if accelerator.num_processes > 1:
            count = reduce_with_timeout(count, self.config.collective_timeout_s, "the loss normaliser")
        return count.clamp(min=1.0)

    def _update(self, batch, advantages: torch.Tensor, mask: torch.Tensor, old_logprobs: torch.Tensor | None,
                ref_logprobs: torch.Tensor | None, *, sampler_logprobs: torch.Tensor | None = None,
                dropped_count: float = 0.0, step: int = 0) -> dict[str, float]:
        """One optimizer update over ``batch`` with gradient accumulation over micro-batches.
        ``sampler_logprobs``: the rollout engine's log-probs of the same tokens (mismatch statistics and
        ``rollout_correction``). ``dropped_count``: tokens (or sequences) of rows left out of ``batch`` that
        still count in the loss normaliser (see ``skip_zero_advantage_groups``)."""
        from mmdps.models.forward import completion_logprobs
        from mmdps.rl import grpo_objective

        config, accelerator = self.config, self.accelerator
        device, world = accelerator.device, accelerator.num_processes
        normalizer = self._normalizer(mask, dropped_count)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        stats = UpdateStats()
        nonfinite = False
        starts = list(range(0, len(batch), config.micro_batch_size))
        for index, start in enumerate(starts):
            stop = min(start + config.micro_batch_size, len(batch))
            micro_mask = mask[start:stop].to(device)
            sync = index == len(starts) - 1
            context = contextlib.nullcontext() if sync or world == 1 else accelerator.no_sync(self.model)
            with context:
                logprobs, entropy = completion_logprobs(self.model, batch.select(start, stop),
                                                        with_entropy=config.entropy_coeff > 0,
                                                        **self._forward_kwargs())
                # `old` is the policy that sampled, as the trainer computes it: against the engine's own
                # log-probs it measures (and corrects) the sampler/trainer mismatch.
                old = logprobs.detach() if old_logprobs is None else old_logprobs[start:stop].to(device)
                sampled = None if sampler_logprobs is None else sampler_logprobs[start:stop].to(device)
                rollout_weights, rollout_stats = self._rollout_correction(old, sampled, micro_mask)
                loss, loss_stats = grpo_objective(
                    logprobs, old, advantages[start:stop].to(device), micro_mask, objective_settings(config),
                    normalizer=normalizer, entropy=entropy, rollout_weights=rollout_weights,
                    ref_logprobs=None if ref_logprobs is None else ref_logprobs[start:stop].to(device))
                nonfinite = nonfinite or not bool(torch.isfinite(loss))
                accelerator.backward(loss * world)
            stats.add_micro(loss, loss_stats, rollout_stats, tokens=float(micro_mask.sum()))
        if world > 1:
            flag = reduce_with_timeout(torch.tensor(float(nonfinite), device=device), config.collective_timeout_s,
                                       f"step {step}: agreeing whether the loss is finite")
            nonfinite = bool(flag > 0)
        grad_norm, skipped = self._guarded_step(nonfinite, step)
        return stats.result(grad_norm, skipped=skipped)

    def _rollout_correction(self, old: torch.Tensor, sampled: torch.Tensor | None, mask: torch.Tensor):
        """TIS / MIS weights (when configured) and sampler/trainer mismatch statistics, from the engine's
        log-probs of the sampled tokens (none: no correction, no statistics)."""
        from mmdps.rl import rollout_correction_weights, rollout_mismatch

        if sampled is None:
            return None, {}
        stats = rollout_mismatch(old, sampled, mask)
        config = self.config
        if config.rollout_correction is None:
            return None, stats
        weights, correction = rollout_correction_weights(old, sampled, mask, config.rollout_correction,
                                                         cap=config.rollout_correction_cap,
                                                         level=config.rollout_correction_level)
        stats.update(is_weight_mean=correction["weight_mean"], corrected_frac=correction["corrected_frac"])
        return weights, stats

    def _guarded_step(self, nonfinite: bool, step: int) -> tuple[float, bool]:
        """Clip and step unless a loss or the gradient norm is non-finite (then skip the update); returns the
        gradient norm (NaN when not computed) and whether the update was skipped."""
        grad_norm = float("nan")
        if not nonfinite:
            norm = self.accelerator.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
            if norm is not None:  # DeepSpeed clips inside its own step and returns None
                grad_norm = float(norm)
                nonfinite = not math.isfinite(grad_norm)
        if nonfinite:
            self.optimizer.zero_grad(set_to_none=True)  # skip the update entirely
            return grad_norm, True
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not _all_finite(self.trainable):  # finite gradients, yet the step overflowed the weights
            raise TrainingDivergedError(
                f"step {step}: the weights became NaN/inf in the optimizer update (grad norm "
                f"{grad_norm:.3g}, learning rate {self.scheduler.get_last_lr()[0]:g}); lower learning_rate and "
                "resume from an earlier checkpoint")
        return grad_norm, False


# ---------------------------------------------------------------------- helpers (group layout)
def mini_batch_spans(num_groups: int, num_mini: int) -> list[tuple[int, int]]:
    """Exactly ``num_mini`` contiguous ``(start, stop)`` group ranges covering ``range(num_groups)``,
    each at most ``ceil(num_groups / num_mini)`` long; trailing ranges are empty when there are
    fewer groups than mini-batches (a DDP process with a small share)."""
    size = max(1, math.ceil(num_groups / num_mini))
    return [(min(i * size, num_groups), min((i + 1) * size, num_groups)) for i in range(num_mini)]


def drop_zero_advantage_groups(groups: list[Group], advantages: list[torch.Tensor], weight: float,
                               loss_agg_mode: str, mask_truncated: bool):
    """Remove the groups whose advantages are all exactly 0. Returns the kept groups, their advantages and
    weight, and the normaliser count of what was removed (tokens for ``token-mean``, sequences otherwise).
    When nothing is kept, the first group stays at weight 0 so that the optimizer still sees zero
    gradients (AdamW's momentum and weight decay act as without the skip)."""
    keep = [bool((adv != 0).any()) for adv in advantages]
    dropped = 0.0
    for group, kept in zip(groups, keep, strict=True):
        if kept:
            continue
        for completion in group.completions:
            valid = len(completion.token_ids) if not (mask_truncated and completion.truncated) else 0
            dropped += valid if loss_agg_mode == "token-mean" else float(valid > 0)
    dropped *= weight
    if not any(keep):
        return groups[:1], advantages[:1], 0.0, dropped
    kept_groups = [group for group, kept in zip(groups, keep, strict=True) if kept]
    kept_adv = [adv for adv, kept in zip(advantages, keep, strict=True) if kept]
    return kept_groups, kept_adv, weight, dropped


def _informative_tokens(groups: Sequence[Group], advantages: Sequence[torch.Tensor]) -> dict[str, float]:
    """What the loss normaliser sees: all completion tokens, of which only the informative groups' (some
    non-zero advantage) carry policy gradient."""
    tokens = torch.tensor([float(sum(group.lengths)) for group in groups])
    informative = torch.tensor([bool((adv != 0).any()) for adv in advantages])
    share = tokens[informative].sum() / tokens.sum().clamp(min=1)
    return {"informative_token_share": float(share), "completion_tokens": float(tokens.sum())}


def sampler_logprobs_of(completions: Sequence[Completion], width: int) -> torch.Tensor | None:
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


def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """True when no tensor holds a NaN or inf (one device sync for all of them)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True
