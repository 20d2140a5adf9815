"""Supervised warm-up (SFT) on reference completions, before RL.

RL only learns from prompts the policy partly solves, so a randomly initialised model must first be
taught the answer format and some of the skill. This is a plain completion-only cross-entropy loop
(prompt tokens are masked out of the loss), used by the CPU demos and usable for any pack whose items
carry reference solutions.

Prompts are either token-id lists (text models) or :class:`~mmdps.data.collate.EncodedPrompt` objects
from the rollout engine's :class:`~mmdps.data.collate.PromptEncoder`, which carry the image patches of
vision-language prompts. Encoded prompts are batched with
:func:`~mmdps.data.collate.build_policy_batch` and scored with
:func:`~mmdps.models.forward.completion_logprobs`: the very batches and forward pass of the GRPO
trainer, so SFT and RL see the same token ids, pixels and M-RoPE positions.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union, cast

import torch

if TYPE_CHECKING:
    from mmdps.data.collate import EncodedPrompt

Prompt = Union[Sequence[int], "EncodedPrompt"]


@dataclass
class SFTResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        tail = self.losses[-20:]
        return sum(tail) / max(1, len(tail))


def pack_examples(prompt_ids: Sequence[Sequence[int]], target_ids: Sequence[Sequence[int]], pad_token_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad ``prompt + target`` rows. Returns ``input_ids``, ``attention_mask`` and ``labels``
    (``-100`` on prompt and padding positions, so only the target is learned)."""
    if len(prompt_ids) != len(target_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(target_ids)} targets")
    rows = [list(p) + list(t) for p, t in zip(prompt_ids, target_ids, strict=True)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (p, row) in enumerate(zip(prompt_ids, rows, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        labels[i, len(p): len(row)] = torch.tensor(row[len(p):])
    return input_ids, attention, labels


def encoded_batch_loss(model: torch.nn.Module, prompts: Sequence[EncodedPrompt], target_ids: Sequence[Sequence[int]],
                       pad_token_id: int) -> torch.Tensor:
    """Mean cross-entropy of the target tokens after encoded (possibly image) prompts, through the
    trainer's batch builder and forward pass."""
    from mmdps.data.collate import build_policy_batch
    from mmdps.models.forward import completion_logprobs

    batch = build_policy_batch(prompts, target_ids, pad_token_id=pad_token_id)
    logprobs, _ = completion_logprobs(model, batch)
    mask = batch.completion_mask.to(logprobs.device)
    return -(logprobs * mask).sum() / mask.sum().clamp(min=1)


def supervised_warmup(model: torch.nn.Module, prompt_ids: Sequence[Prompt], target_ids: Sequence[Sequence[int]],
                      *, pad_token_id: int, max_steps: int | None = None, max_seconds: float | None = None,
                      batch_size: int = 64, lr: float = 2e-3, warmup_steps: int = 100, weight_decay: float = 0.01,
                      grad_clip: float = 1.0, seed: int = 0,
                      on_step: Callable[[int, float], None] | None = None) -> SFTResult:
    """Train ``model`` to produce ``target_ids`` after ``prompt_ids`` (AdamW, linear warm-up then
    constant LR, gradient clipping). Stops after ``max_steps`` or ``max_seconds``, whichever comes
    first; at least one of them must be given. ``on_step(step, loss)`` is called after every step.

    ``prompt_ids`` holds token-id lists, or for image prompts the ``EncodedPrompt`` objects of the
    policy's ``PromptEncoder`` (one kind per call)."""
    if max_steps is None and max_seconds is None:
        raise ValueError("give max_steps or max_seconds")
    if not prompt_ids:
        raise ValueError("no training examples")
    if len(prompt_ids) != len(target_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(target_ids)} targets")
    encoded = hasattr(prompt_ids[0], "input_ids")
    if any(hasattr(prompt, "input_ids") != encoded for prompt in prompt_ids):
        raise ValueError("prompts must be all token-id lists or all EncodedPrompt objects, not a mix")
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup_steps)))
    order_rng = random.Random(seed)
    order: list[int] = []
    result = SFTResult(steps=0, seconds=0.0)
    model.train()
    start = time.perf_counter()
    while True:
        if max_steps is not None and result.steps >= max_steps:
            break
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        if len(order) < batch_size:  # reshuffle once per epoch
            fresh = list(range(len(prompt_ids)))
            order_rng.shuffle(fresh)
            order.extend(fresh)
        idx, order = order[:batch_size], order[batch_size:]
        prompts, targets = [prompt_ids[i] for i in idx], [target_ids[i] for i in idx]
        if encoded:  # all prompts are of one kind (checked above)
            loss = encoded_batch_loss(model, cast("list[EncodedPrompt]", prompts), targets, pad_token_id)
        else:
            input_ids, attention, labels = pack_examples(cast("list[Sequence[int]]", prompts), targets, pad_token_id)
            loss = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                         labels=labels.to(device)).loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"SFT loss is {loss.item()} at step {result.steps}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        result.steps += 1
        result.losses.append(loss.item())
        if on_step is not None:
            on_step(result.steps, loss.item())
    result.seconds = time.perf_counter() - start
    model.eval()
    return result
