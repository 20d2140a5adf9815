"""The GRPO objective of one micro-batch: policy loss, KL to a reference, entropy bonus (pure tensors).

``loss = policy_loss - entropy_coeff * entropy + beta * KL`` (equations: docs/rl_math.md). Rows are
sequences, so groups of any size work: the group structure enters only through the advantages.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from mmdps.rl.kl import kl_penalty
from mmdps.rl.losses import aggregate_loss, entropy_loss, policy_loss

__all__ = ["ObjectiveSettings", "grpo_objective"]


@dataclass(frozen=True)
class ObjectiveSettings:
    """The knobs of :func:`grpo_objective` (the trainer fills them from ``GRPOConfig``'s fields of the same names)."""

    clip_low: float = 0.2
    clip_high: float = 0.28
    clip_c: float | None = None
    ratio_level: str = "token"
    loss_type: str = "clip"
    loss_agg_mode: str = "token-mean"
    max_new_tokens: int | None = None  # the generation budget: Dr.GRPO's constant length normaliser
    beta: float = 0.0
    kl_estimator: str = "k3"
    entropy_coeff: float = 0.0


def grpo_objective(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                   settings: ObjectiveSettings, *, normalizer: float | Tensor | None = None,
                   ref_logprobs: Tensor | None = None, entropy: Tensor | None = None,
                   rollout_weights: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of one micro-batch and its detached statistics.

    Args:
        logprobs, old_logprobs, mask: ``[N, T]`` completion log-probs (with gradient), those of the sampling
            policy, and the loss mask (its values weight the tokens).
        advantages: ``[N]`` (or ``[N, T]``).
        normalizer: the count the aggregation divides by, over the whole accumulated batch (see
            :func:`~mmdps.rl.losses.aggregate_loss`), so that micro-batch losses add up to the batch loss.
        ref_logprobs: the reference policy's log-probs; the KL term is added when given.
        entropy: ``[N, T]`` token entropies; the bonus is subtracted when given.
        rollout_weights: per-token importance weights correcting the sampler/trainer mismatch (TIS / MIS).

    Returns ``(loss, stats)``: :func:`~mmdps.rl.losses.policy_loss`'s statistics plus ``pg_loss``, ``kl`` and
    ``entropy`` (the aggregated terms, when present).
    """
    s = settings
    loss, stats = policy_loss(logprobs, old_logprobs, advantages, mask, clip_low=s.clip_low, clip_high=s.clip_high,
                              clip_c=s.clip_c, ratio_level=s.ratio_level, loss_type=s.loss_type,
                              rollout_weights=rollout_weights, loss_agg_mode=s.loss_agg_mode,
                              max_len=s.max_new_tokens, normalizer=normalizer)
    stats = dict(stats, pg_loss=loss.detach())
    if ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs, s.kl_estimator)
        kl_term = aggregate_loss(kl, mask, s.loss_agg_mode, max_len=s.max_new_tokens, normalizer=normalizer)
        loss = loss + s.beta * kl_term
        stats["kl"] = kl_term.detach()
    if entropy is not None:
        entropy_term = entropy_loss(entropy, mask, s.loss_agg_mode, max_len=s.max_new_tokens, normalizer=normalizer)
        loss = loss - s.entropy_coeff * entropy_term
        stats["entropy"] = entropy_term.detach()
    return loss, stats
