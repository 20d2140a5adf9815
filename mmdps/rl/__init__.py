"""Pure torch RL math for GRPO-style training (imports torch only; CPU-tested).

- :mod:`~mmdps.rl.advantages`: outcome advantages (GRPO / Dr.GRPO / batch-scaled, RLOO, REINFORCE++),
  success rates, zero-variance groups
- :mod:`~mmdps.rl.logprobs`: chunked selective log-softmax and entropy (no [N, T, V] temporaries)
- :mod:`~mmdps.rl.objective`: :func:`grpo_objective`, the loss of one micro-batch (policy loss, KL, entropy)
- :mod:`~mmdps.rl.losses`: policy losses (PPO clip with clip-higher and dual clip, GSPO / GSPO-token
  ratios, CISPO), loss aggregation, masked stats
- :mod:`~mmdps.rl.rollout_correction`: sampler/trainer mismatch statistics and TIS / MIS weights
- :mod:`~mmdps.rl.kl`: k1 / k2 / k3 / abs KL estimators against a frozen reference
- :mod:`~mmdps.rl.overlong`: DAPO overlong filtering and soft overlong penalty

Each set of choices (``ADVANTAGE_ESTIMATORS``, ``LOSS_TYPES`` ...) is defined here once; the config
validates against these tuples. Equations and sources: docs/rl_math.md.
"""

from mmdps.rl.advantages import (
    ADVANTAGE_ESTIMATORS,
    REWARD_SCALES,
    group_advantages,
    group_sizes,
    group_success_rates,
    zero_variance_mask,
)
from mmdps.rl.kl import KL_KINDS, kl_penalty
from mmdps.rl.logprobs import entropy_from_logits, selective_log_softmax
from mmdps.rl.losses import (
    LOSS_AGG_MODES,
    LOSS_TYPES,
    RATIO_LEVELS,
    aggregate_loss,
    entropy_loss,
    masked_mean,
    masked_whiten,
    policy_loss,
)
from mmdps.rl.objective import ObjectiveSettings, grpo_objective
from mmdps.rl.overlong import soft_overlong_penalty, truncation_mask
from mmdps.rl.rollout_correction import (
    ROLLOUT_CORRECTION_LEVELS,
    ROLLOUT_CORRECTIONS,
    rollout_correction_weights,
    rollout_mismatch,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "KL_KINDS",
    "LOSS_AGG_MODES",
    "LOSS_TYPES",
    "RATIO_LEVELS",
    "REWARD_SCALES",
    "ROLLOUT_CORRECTIONS",
    "ROLLOUT_CORRECTION_LEVELS",
    "ObjectiveSettings",
    "aggregate_loss",
    "entropy_from_logits",
    "entropy_loss",
    "group_advantages",
    "group_sizes",
    "grpo_objective",
    "group_success_rates",
    "kl_penalty",
    "masked_mean",
    "masked_whiten",
    "policy_loss",
    "rollout_correction_weights",
    "rollout_mismatch",
    "selective_log_softmax",
    "soft_overlong_penalty",
    "truncation_mask",
    "zero_variance_mask",
]
