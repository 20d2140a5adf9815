"""Per-token log-probs (and entropies) of completions under a policy, for the GRPO loss.

The forward pass keeps only the last ``T + 1`` positions' logits (``logits_to_keep``), so a batch
never holds ``[N, L, V]`` logits, and log-probs come from the chunked selective log-softmax of
:mod:`mmdps.rl.logprobs`, so no full log-softmax is built either.

Position ids: text models get ``cumsum(attention_mask) - 1``, exactly what ``generate`` uses for
left-padded prompts, so a completion scores the same alone or in a padded batch. Qwen2-VL-style
models are given no position ids: they derive their 3-D M-RoPE index from ``input_ids``,
``image_grid_thw``, ``mm_token_type_ids`` and the attention mask, as ``generate`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmdps.data.collate import PolicyBatch
from mmdps.models.loading import is_vision_language
from mmdps.rl.logprobs import entropy_from_logits, selective_log_softmax


def _model_dtype(model: nn.Module) -> torch.dtype:
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def policy_forward_inputs(model: nn.Module, batch: PolicyBatch) -> dict[str, Any]:
    """The keyword arguments of the model's forward for ``batch`` (without ``logits_to_keep``)."""
    device = next(model.parameters()).device
    batch = batch.to(device)
    inputs: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                              "use_cache": False}
    if is_vision_language(model):
        if batch.mm_token_type_ids is not None:
            inputs["mm_token_type_ids"] = batch.mm_token_type_ids
        if batch.pixel_values is not None:
            inputs["pixel_values"] = batch.pixel_values.to(_model_dtype(model))
            inputs["image_grid_thw"] = batch.image_grid_thw
    else:
        inputs["position_ids"] = (batch.attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
    return inputs


def completion_logprobs(model: nn.Module, batch: PolicyBatch, *, temperature: float = 1.0,
                        with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Log-probs ``[N, T]`` of ``batch.completion_ids`` under ``model`` at ``temperature``.

    Gradients flow when called outside ``torch.no_grad``. Positions outside ``completion_mask`` are
    set to 0. With ``with_entropy`` the second result is the per-token entropy ``[N, T]`` of the
    tempered distribution (masked the same way); otherwise it is ``None``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive for log-probs, got {temperature} "
                         "(greedy rollouts are scored at temperature 1)")
    width = batch.completion_length
    logits = model(**policy_forward_inputs(model, batch), logits_to_keep=width + 1).logits
    logits = logits[:, -(width + 1):-1, :]  # position t predicts token t + 1
    if temperature != 1.0:
        logits = logits / temperature
    mask = batch.completion_mask.to(logits.device)
    targets = batch.completion_ids.to(logits.device)
    logprobs = selective_log_softmax(logits, targets) * mask
    entropy = entropy_from_logits(logits) * mask if with_entropy else None
    return logprobs, entropy
