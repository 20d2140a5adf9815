"""Outcome advantages from k rollouts per prompt (GRPO, Dr.GRPO, RLOO, REINFORCE++) and per-group statistics.

Rollouts are laid out *group-contiguous*: the ``k`` completions of prompt ``i`` sit at
``[i * k : (i + 1) * k]``, which is how the trainer and every rollout engine order them. Groups may also
have different sizes (``group_size`` a sequence of sizes, one per prompt, summing to the number of rollouts):
prompt ``i``'s rollouts then follow prompt ``i - 1``'s.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

GroupSizes = int | Sequence[int] | Tensor

__all__ = ["ADVANTAGE_ESTIMATORS", "REWARD_SCALES", "group_advantages", "group_success_rates", "zero_variance_mask"]

ADVANTAGE_ESTIMATORS = ("grpo", "rloo", "reinforce_pp")
REWARD_SCALES = ("group", "batch", "none")  # what GRPO divides the centred rewards by


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


def group_sizes(group_size: GroupSizes, num_values: int, name: str = "rewards") -> int | Tensor:
    """``group_size`` as an int when every group has the same size, else as a long tensor of sizes
    (each >= 1, summing to ``num_values``)."""
    if isinstance(group_size, int) and not isinstance(group_size, bool):
        return group_size
    if isinstance(group_size, (float, bool, str)):
        raise ValueError(f"group_size must be a positive int or one size per group, got {group_size!r}")
    sizes = torch.as_tensor(group_size).reshape(-1)
    if sizes.numel() == 0 or sizes.is_floating_point() or sizes.dtype == torch.bool or bool((sizes < 1).any()):
        raise ValueError(f"group sizes must be positive ints, got {sizes.tolist()}")
    if int(sizes.sum()) != num_values:
        raise ValueError(f"{name} has {num_values} entries but the group sizes {sizes.tolist()} sum to "
                         f"{int(sizes.sum())}; pass every group's rollouts, group-contiguous")
    if bool((sizes == sizes[0]).all()):
        return int(sizes[0])
    return sizes.long()


def _segments(values: Tensor, sizes: Tensor) -> Tensor:
    """The group index of each entry, for groups of ``sizes``."""
    return torch.repeat_interleave(torch.arange(len(sizes), device=values.device), sizes.to(values.device))


def _segment_extremes(values: Tensor, sizes: Tensor) -> tuple[Tensor, Tensor]:
    index = _segments(values, sizes)
    low = values.new_full((len(sizes),), float("inf")).scatter_reduce(0, index, values, "amin")
    high = values.new_full((len(sizes),), float("-inf")).scatter_reduce(0, index, values, "amax")
    return low, high


def _flat(values: Tensor, name: str) -> Tensor:
    if values.dim() != 1:
        raise ValueError(f"{name} must be 1-D [num_rollouts], got shape {tuple(values.shape)}")
    return values.float() if values.dtype == torch.bool or not values.is_floating_point() else values


def zero_variance_mask(rewards: Tensor, group_size: GroupSizes) -> Tensor:
    """Bool [num_groups]: True where all rewards of a prompt's group are identical.

    Such groups give GRPO no learning signal (all advantages are zero); DAPO's Dynamic Sampling
    drops them and DPS tries to avoid selecting them. Equality is exact, not within a tolerance.
    ``group_size``: the k of every group, or one size per group.
    """
    sizes = group_sizes(group_size, rewards.numel()) if rewards.dim() == 1 else group_size
    if isinstance(sizes, Tensor):
        low, high = _segment_extremes(_flat(rewards, "rewards"), sizes)
        return high == low
    grouped = _grouped(rewards, sizes, "rewards")  # type: ignore[arg-type]
    return grouped.amax(dim=1) == grouped.amin(dim=1)


def group_success_rates(acc: Tensor, group_size: int, *, threshold: float | None = None) -> Tensor:
    """Deprecated: success rates have one definition, :func:`mmdps.verifiers.success_rate` (``acc >= 1``
    counts as correct), which the trainer and the integrations use. Mean accuracy per group here."""
    warnings.warn("mmdps.rl.group_success_rates is deprecated and will be removed in the next release; use "
                  "mmdps.verifiers.success_rate (the one definition of a group's success rate)",
                  DeprecationWarning, stacklevel=2)
    grouped = _grouped(acc, group_size, "acc")
    if threshold is not None:
        grouped = (grouped >= threshold).to(grouped.dtype)
    return grouped.mean(dim=1)


def _reward_scale(scale_std: bool | str | None, estimator: str) -> str:
    """The GRPO scaling ``scale_std`` names, as one of :data:`REWARD_SCALES`."""
    if estimator != "grpo":
        if scale_std is not None:
            raise ValueError(f"scale_std applies to estimator 'grpo' only, got scale_std={scale_std!r} with "
                             f"estimator={estimator!r} (rloo never scales, reinforce_pp whitens over the batch); "
                             "leave it unset")
        return "none"
    if scale_std is None or scale_std is True:
        return "group"
    if scale_std is False:
        return "none"
    if scale_std not in REWARD_SCALES:
        raise ValueError(f"scale_std must be True, False or one of {REWARD_SCALES}, got {scale_std!r}")
    return scale_std


def group_advantages(
    rewards: Tensor,
    group_size: GroupSizes,
    *,
    estimator: str = "grpo",
    scale_std: bool | str | None = None,
    eps: float = 1e-6,
    unbiased: bool = True,
) -> Tensor:
    """Outcome advantages of ``N = num_prompts * group_size`` rollouts, float [N], no gradient.

    ``r`` are the rewards, ``mean_g`` / ``std_g`` the mean and standard deviation over a prompt's
    group of ``k = group_size`` rollouts, ``std_B`` over the whole batch of ``N`` rollouts.

    ``estimator="grpo"`` (GRPO, Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, Sec. 4.1.2),
    with the scaling ``scale_std`` chooses:

    - ``True`` / ``"group"`` (default): ``A_i = (r_i - mean_g r) / (std_g r + eps)``;
    - ``False`` / ``"none"`` (Dr.GRPO, Liu et al. 2025, arXiv 2503.20783, Sec. 3.2): ``A_i = r_i - mean_g r``;
    - ``"batch"`` (TRL ``scale_rewards="batch"``; the group-mean, batch-std advantage of Liu et al. 2025,
      "Tricks or Traps? A Deep Dive into RL for LLM Reasoning", arXiv 2508.08221):
      ``A_i = (r_i - mean_g r) / (std_B r + eps)``, the std of the raw rewards over the batch.

    ``estimator="rloo"`` (REINFORCE Leave-One-Out, Kool et al. 2019, "Buy 4 REINFORCE samples, get a
    baseline for free!", ICLR 2019 workshop; Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740,
    Sec. 3): each rollout's baseline is
    the mean of the *other* ``k - 1`` rewards, no scaling:
    ``A_i = r_i - (sum_g r - r_i) / (k - 1) = k / (k - 1) * (r_i - mean_g r)``.

    ``estimator="reinforce_pp"`` (REINFORCE++ with baseline, Hu et al. 2025, arXiv 2501.03262): the
    group mean is subtracted, then the centred values are normalised over the whole batch:
    ``A'_i = r_i - mean_g r``, ``A_i = A'_i / (std_B A' + eps)``. (The paper also subtracts the batch
    mean of ``A'``; over sequences that mean is exactly 0, so it is left out and zero-variance groups
    keep advantage exactly 0.)

    ``std`` is the unbiased (n - 1) sample standard deviation by default, as ``torch.std`` in verl
    and TRL; ``unbiased=False`` gives the population std. Groups whose rewards are all identical get
    advantage exactly 0 under every estimator (not merely close to it through rounding). The result
    keeps the rewards' floating dtype (float32 for integer or bool rewards). ``scale_std`` may only
    be given with ``estimator="grpo"``.

    ``group_size`` may be one size per group (groups of different sizes, e.g. rollouts allocated per
    prompt): every formula above then uses each group's own ``k``; equal sizes give exactly the fixed-k result.

    Raises ``ValueError`` for an unknown estimator or scaling, a group size below 2 (no group
    baseline exists), a length that is not a multiple of ``group_size``, or non-finite rewards.
    """
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; valid: {', '.join(ADVANTAGE_ESTIMATORS)}")
    scale = _reward_scale(scale_std, estimator)
    if not isinstance(group_size, int) or isinstance(group_size, bool):
        sizes = group_sizes(group_size, rewards.numel())
        if isinstance(sizes, Tensor):
            return _ragged_advantages(_flat(rewards.detach(), "rewards"), sizes, estimator, scale, eps, unbiased)
        group_size = sizes
    if group_size < 2:
        raise ValueError(
            f"group_size must be >= 2 for group-relative advantages (got {group_size}); "
            "GRPO needs several rollouts per prompt"
        )
    grouped = _grouped(rewards.detach(), group_size, "rewards")
    if not torch.isfinite(grouped).all():
        raise ValueError("rewards contain NaN or inf; fix the reward function before computing advantages")
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if estimator == "rloo":
        centred = centred * (group_size / (group_size - 1))
    elif estimator == "reinforce_pp":
        centred = centred / (_batch_std(centred, unbiased) + eps)
    elif scale == "group":
        centred = centred / (grouped.std(dim=1, keepdim=True, unbiased=unbiased) + eps)
    elif scale == "batch":
        centred = centred / (_batch_std(grouped, unbiased) + eps)
    constant = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)
    return torch.where(constant, torch.zeros_like(centred), centred).reshape(-1)


def _ragged_advantages(rewards: Tensor, sizes: Tensor, estimator: str, scale: str, eps: float,
                       unbiased: bool) -> Tensor:
    """:func:`group_advantages` for groups of different sizes (the same formulas, each group's own k)."""
    if bool((sizes < 2).any()):
        raise ValueError(f"every group needs >= 2 rollouts for a group baseline, got sizes {sizes.tolist()}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf; fix the reward function before computing advantages")
    index = _segments(rewards, sizes)
    k = sizes.to(rewards.device, rewards.dtype)
    mean = rewards.new_zeros(len(sizes)).index_add_(0, index, rewards) / k
    centred = rewards - mean[index]
    if estimator == "rloo":
        centred = centred * (k / (k - 1))[index]
    elif estimator == "reinforce_pp":
        centred = centred / (_batch_std(centred, unbiased) + eps)
    elif scale == "group":
        var = rewards.new_zeros(len(sizes)).index_add_(0, index, centred * centred) / (k - 1 if unbiased else k)
        centred = centred / (var.sqrt() + eps)[index]
    elif scale == "batch":
        centred = centred / (_batch_std(rewards, unbiased) + eps)
    low, high = _segment_extremes(rewards, sizes)
    return torch.where((high == low)[index], torch.zeros_like(centred), centred)


def _batch_std(values: Tensor, unbiased: bool) -> Tensor:
    """Std over every entry; 0 for a single entry (instead of NaN), so the advantages stay finite."""
    if values.numel() < 2:
        return values.new_zeros(())
    return values.std(unbiased=unbiased)
