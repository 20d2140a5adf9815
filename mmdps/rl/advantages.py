"""Group-relative advantages (GRPO, Dr.GRPO) and per-group statistics.

Rollouts are laid out *group-contiguous*: the ``k`` completions of prompt ``i`` sit at
``[i * k : (i + 1) * k]``, which is how the trainer and every rollout engine order them.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["group_advantages", "group_success_rates", "zero_variance_mask"]


def _grouped(values: Tensor, group_size: int, name: str) -> Tensor:
    """Check ``values`` is a flat tensor of whole groups and view it as [num_groups, group_size]."""
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be a positive int (the number k of rollouts per prompt), got {group_size!r}")
    if values.dim() != 1:
        raise ValueError(f"{name} must be 1-D [num_prompts * group_size], got shape {tuple(values.shape)}")
    if values.numel() == 0 or values.numel() % group_size:
        raise ValueError(
            f"{name} has {values.numel()} entries, which is not a positive multiple of group_size={group_size}; "
            "pass the k rollouts of every prompt, group-contiguous"
        )
    if values.dtype == torch.bool or not values.is_floating_point():
        values = values.float()
    return values.view(-1, group_size)


def zero_variance_mask(rewards: Tensor, group_size: int) -> Tensor:
    """Bool [num_groups]: True where all ``group_size`` rewards of a prompt are identical.

    Such groups give GRPO no learning signal (all advantages are zero); DAPO's Dynamic Sampling
    drops them and DPS tries to avoid selecting them. Equality is exact, not within a tolerance.
    """
    grouped = _grouped(rewards, group_size, "rewards")
    return grouped.amax(dim=1) == grouped.amin(dim=1)


def group_success_rates(acc: Tensor, group_size: int, *, threshold: float | None = None) -> Tensor:
    """Mean accuracy of each prompt's group, float [num_groups] in [0, 1] for 0/1 accuracies.

    This is the ``success_rates`` a selector's ``update`` expects. With ``threshold`` set, each
    rollout first counts as correct iff ``acc >= threshold`` (DPS uses ``acc >= 1``).
    """
    grouped = _grouped(acc, group_size, "acc")
    if threshold is not None:
        grouped = (grouped >= threshold).to(grouped.dtype)
    return grouped.mean(dim=1)


def group_advantages(
    rewards: Tensor,
    group_size: int,
    *,
    scale_std: bool = True,
    eps: float = 1e-6,
    unbiased: bool = True,
) -> Tensor:
    """Outcome advantages normalised within each prompt's group of rollouts, float [N].

    GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300):
        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
    Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", arXiv 2503.20783),
    ``scale_std=False``:
        A_i = r_i - mean(r_group)

    ``std`` is the unbiased (n - 1) sample standard deviation by default, as ``torch.std`` in
    verl's ``compute_grpo_outcome_advantage`` (the framework the DPS paper trains with); pass
    ``unbiased=False`` for the population std. Groups whose rewards are all identical get
    advantage exactly 0 (not merely close to it through rounding). The result keeps the
    rewards' floating dtype (float32 for integer or bool rewards) and carries no gradient.

    Raises ``ValueError`` for a group size below 2 (no group baseline exists), a length that is
    not a multiple of ``group_size``, or non-finite rewards.
    """
    if isinstance(group_size, int) and not isinstance(group_size, bool) and group_size < 2:
        raise ValueError(
            f"group_size must be >= 2 for group-relative advantages (got {group_size}); "
            "GRPO needs several rollouts per prompt"
        )
    grouped = _grouped(rewards.detach(), group_size, "rewards")
    if not torch.isfinite(grouped).all():
        raise ValueError("rewards contain NaN or inf; fix the reward function before computing advantages")
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_std:
        std = grouped.std(dim=1, keepdim=True, unbiased=unbiased)
        centred = centred / (std + eps)
    constant = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)
    return torch.where(constant, torch.zeros_like(centred), centred).reshape(-1)
