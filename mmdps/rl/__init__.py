"""Pure torch RL math for GRPO-style training (imports torch only; CPU-tested).

- :mod:`~mmdps.rl.advantages`: group advantages (GRPO / Dr.GRPO), success rates, zero-variance groups
- :mod:`~mmdps.rl.logprobs`: chunked selective log-softmax and entropy (no [N, T, V] temporaries)
- :mod:`~mmdps.rl.losses`: clipped policy loss (clip-higher, dual clip), loss aggregation, masked stats
- :mod:`~mmdps.rl.kl`: k1 / k2 / k3 / abs KL estimators against a frozen reference
- :mod:`~mmdps.rl.overlong`: DAPO overlong filtering and soft overlong penalty

Equations and sources: docs/rl_math.md.
"""

from mmdps.rl.advantages import group_advantages, group_success_rates, zero_variance_mask
from mmdps.rl.kl import KL_KINDS, kl_penalty
from mmdps.rl.logprobs import entropy_from_logits, selective_log_softmax
from mmdps.rl.losses import (
    LOSS_AGG_MODES,
    aggregate_loss,
    entropy_loss,
    masked_mean,
    masked_whiten,
    policy_loss,
)
from mmdps.rl.overlong import soft_overlong_penalty, truncation_mask

__all__ = [
    "KL_KINDS",
    "LOSS_AGG_MODES",
    "aggregate_loss",
    "entropy_from_logits",
    "entropy_loss",
    "group_advantages",
    "group_success_rates",
    "kl_penalty",
    "masked_mean",
    "masked_whiten",
    "policy_loss",
    "selective_log_softmax",
    "soft_overlong_penalty",
    "truncation_mask",
    "zero_variance_mask",
]
