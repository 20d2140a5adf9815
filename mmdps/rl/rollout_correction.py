"""Rollout/training mismatch: how far the sampler's log-probs are from the trainer's, and the
importance weights that correct for it (TIS, MIS).

The engine that samples (vLLM, or HF ``generate`` with a KV cache, other kernels, bf16) and the
trainer's forward pass give different log-probs for the same tokens, so the rollouts come from a
distribution ``mu`` slightly off the policy ``pi`` the loss assumes. With ``rho = pi / mu`` per
token (``pi``: the trainer's log-probs before the update, ``mu``: the sampler's):

- TIS, truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings
  You Off-Policy RL Training"): weight ``min(rho, C)``;
- MIS, masked importance sampling (as verl's rollout correction and TRL's ``*_mask`` modes): weight
  ``rho`` where ``rho <= C`` and 0 beyond, so the tokens (or sequences) furthest off-policy are
  dropped instead of down-weighted.

At ``level="sequence"`` the ratio is the product over the sequence's tokens,
``rho_i = exp(sum_t (log pi - log mu))``, and one weight covers the whole sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmdps.rl.losses import (
    _LOG_RATIO_LIMIT,
    _masked,
    _masked_extreme,
    _weights,
    masked_mean,
)

__all__ = ["ROLLOUT_CORRECTIONS", "ROLLOUT_CORRECTION_LEVELS", "rollout_correction_weights", "rollout_mismatch"]

ROLLOUT_CORRECTIONS = ("tis", "mis")
ROLLOUT_CORRECTION_LEVELS = ("token", "sequence")


def _checked(trainer_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(log pi - log mu, weights)`` with padding zeroed; both ``[N, T]``."""
    if trainer_logprobs.dim() != 2:
        raise ValueError(f"trainer_logprobs must be [N, T], got shape {tuple(trainer_logprobs.shape)}")
    if sampler_logprobs.shape != trainer_logprobs.shape:
        raise ValueError(f"sampler_logprobs shape {tuple(sampler_logprobs.shape)} must equal trainer_logprobs "
                         f"shape {tuple(trainer_logprobs.shape)}")
    trainer = trainer_logprobs.detach()
    weights = _weights(mask, trainer)
    sampler = sampler_logprobs.detach().to(trainer.dtype)
    return _masked(trainer - sampler, (weights != 0).to(trainer.dtype)), weights


def rollout_mismatch(trainer_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """How far the sampler's log-probs are from the trainer's, over the masked tokens (detached scalars).

    - ``logprob_diff_mean`` / ``logprob_diff_max``: mean / max of ``|log pi - log mu|`` per token
      (TRL's ``sampling/sampling_logp_difference``);
    - ``kl_sampler_trainer``: the k3 estimate of KL(mu || pi) from the sampled tokens,
      ``mean(rho - log rho - 1)`` with ``rho = pi / mu`` (non-negative per token; verl's
      ``rollout_corr/k3_kl``);
    - ``ratio_mean``: mean token ratio ``rho``.

    An empty mask gives zeros (ratio 1).
    """
    diff, weights = _checked(trainer_logprobs, sampler_logprobs, mask)
    diff = torch.clamp(diff, -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)
    valid = weights != 0
    zero = torch.zeros((), dtype=diff.dtype, device=diff.device)
    # k3 in float64 with expm1: for differences of 1e-6 (float rounding) rho - log rho - 1 is ~1e-12, which
    # float32 arithmetic would round to noise of either sign.
    wide = diff.double()
    k3 = torch.clamp(torch.expm1(wide) - wide, min=0.0)
    return {
        "logprob_diff_mean": masked_mean(diff.abs(), weights),
        "logprob_diff_max": torch.where(valid.any(), _masked_extreme(diff.abs(), valid, torch.amax), zero),
        "kl_sampler_trainer": masked_mean(k3, weights.double()).to(diff.dtype),
        "ratio_mean": torch.where(valid.any(), masked_mean(torch.exp(diff), weights), zero + 1.0),
    }


def rollout_correction_weights(
    trainer_logprobs: Tensor,
    sampler_logprobs: Tensor,
    mask: Tensor,
    mode: str = "tis",
    *,
    cap: float = 2.0,
    level: str = "token",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Detached importance weights ``[N, T]`` that correct the loss for the sampler/trainer mismatch.

    ``rho`` is ``exp(log pi - log mu)`` per token (``level="token"``) or ``exp(sum_t (log pi - log mu))``
    per sequence (``level="sequence"``, broadcast over its tokens); log-ratios are clamped to +-20.

    - ``mode="tis"`` (Yao et al. 2025): ``w = min(rho, cap)``;
    - ``mode="mis"``: ``w = rho`` if ``rho <= cap`` else 0.

    ``trainer_logprobs`` are the trainer's log-probs of the sampled tokens under the policy that
    sampled them (before the update); ``sampler_logprobs`` the engine's. Multiply the per-token
    policy loss by the weights (``policy_loss(..., rollout_weights=w)``). Padding gets weight 0.
    Returns ``(weights, stats)`` with ``weight_mean`` (over masked tokens) and ``corrected_frac``:
    the share of masked tokens whose weight was truncated (TIS) or zeroed (MIS).
    """
    if mode not in ROLLOUT_CORRECTIONS:
        raise ValueError(f"unknown rollout correction {mode!r}; valid: {', '.join(ROLLOUT_CORRECTIONS)}")
    if level not in ROLLOUT_CORRECTION_LEVELS:
        raise ValueError(f"unknown rollout correction level {level!r}; valid: {', '.join(ROLLOUT_CORRECTION_LEVELS)}")
    if not cap > 0:
        raise ValueError(f"the rollout correction cap must be > 0 (e.g. 2.0), got {cap}")
    diff, weights = _checked(trainer_logprobs, sampler_logprobs, mask)
    if level == "sequence":
        diff = diff.sum(dim=1, keepdim=True).expand_as(diff)
    ratio = torch.exp(torch.clamp(diff, -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT))
    beyond = ratio > cap
    if mode == "tis":
        corrected = torch.clamp(ratio, max=cap)
    else:
        corrected = torch.where(beyond, torch.zeros_like(ratio), ratio)
    corrected = _masked(corrected, (weights != 0).to(ratio.dtype))
    stats = {
        "weight_mean": masked_mean(corrected, weights),
        "corrected_frac": masked_mean(beyond.to(weights.dtype), weights),
    }
    return corrected, stats
