"""Masked reductions, loss aggregation and the policy-gradient losses (PPO clip, GSPO, CISPO).

Shapes: ``N`` sequences (completions) by ``T`` completion tokens. ``mask`` marks the tokens that
count (1/True) and may be bool or float (float masks act as per-token weights). Padding positions
may hold anything, NaN and inf included: they are zeroed before any arithmetic, so they can
neither poison the result nor its gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "LOSS_AGG_MODES",
    "LOSS_TYPES",
    "RATIO_LEVELS",
    "aggregate_loss",
    "entropy_loss",
    "masked_mean",
    "masked_whiten",
    "policy_loss",
]

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
RATIO_LEVELS = ("token", "sequence", "sequence_token")
LOSS_TYPES = ("clip", "cispo")

_LOG_RATIO_LIMIT = 20.0  # exp(20) ~ 5e8: far outside any clip range, and never inf


def _weights(mask: Tensor, like: Tensor, name: str = "mask") -> Tensor:
    if mask.shape != like.shape:
        raise ValueError(f"{name} shape {tuple(mask.shape)} must equal the values' shape {tuple(like.shape)}")
    return mask.to(dtype=like.dtype, device=like.device)


def _masked(values: Tensor, weights: Tensor) -> Tensor:
    """values * weights, with masked-out positions set to exactly 0 (even where values are NaN/inf)."""
    return torch.where(weights != 0, values, torch.zeros((), dtype=values.dtype, device=values.device)) * weights


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, and 0 where the denominator is 0 (the numerator is then 0 too)."""
    return numerator / torch.where(denominator != 0, denominator, torch.ones_like(denominator))


def _masked_extreme(values: Tensor, valid: Tensor, reduce) -> Tensor:
    """amin/amax over the valid entries; the neutral sentinel also makes empty tensors work."""
    sentinel = float("inf") if reduce is torch.amin else float("-inf")
    filled = values.masked_fill(~valid, sentinel).flatten()
    return reduce(torch.cat([filled, filled.new_full((1,), sentinel)]))


def masked_mean(values: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Weighted mean ``sum(values * mask) / sum(mask)`` over ``dim`` (all dims when None).

    An empty selection (mask sums to 0) gives 0 rather than NaN, and a zero gradient.
    """
    weights = _weights(mask, values)
    if dim is None:
        return _safe_divide(_masked(values, weights).sum(), weights.sum())
    return _safe_divide(_masked(values, weights).sum(dim=dim), weights.sum(dim=dim))


def masked_whiten(values: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise ``values`` to zero mean and unit variance over the masked entries.

    Variance is the weighted, Bessel-corrected ``sum(mask * (x - mean)^2) / (sum(mask) - 1)``
    (as verl's ``masked_whiten``); with ``shift_mean=False`` the mean is added back, so only the
    scale changes. Masked-out positions come back as 0.
    """
    weights = _weights(mask, values)
    mean = masked_mean(values, weights)
    total = weights.sum()
    if total <= 1:
        raise ValueError(f"masked_whiten needs more than one masked-in value, got a mask summing to {float(total)}")
    variance = _masked((values - mean) ** 2, weights).sum() / (total - 1)
    whitened = (values - mean) * torch.rsqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    return _masked(whitened, (weights != 0).to(values.dtype))


def aggregate_loss(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    max_len: int | None = None,
    normalizer: float | Tensor | None = None,
) -> Tensor:
    """Reduce a per-token loss ``[N, T]`` to a scalar.

    Modes (``l`` = loss, ``m`` = mask, ``S`` = sequences with at least one masked-in token):

    - ``"token-mean"`` (default; DAPO's token-level loss, arXiv 2503.14476):
      ``sum_{i,t} m l / sum_{i,t} m``: every token weighs the same, long answers weigh more.
    - ``"seq-mean-token-mean"`` (the original GRPO objective, arXiv 2402.03300):
      ``mean_{i in S} (sum_t m l / sum_t m)``: every sequence weighs the same.
    - ``"seq-mean-token-sum"``: ``mean_{i in S} sum_t m l``.
    - ``"seq-mean-token-sum-norm"`` (Dr.GRPO, arXiv 2503.20783):
      ``mean_{i in S} (sum_t m l / max_len)``, a constant length normaliser (``max_len`` defaults
      to ``T``; pass the generation budget to match the paper).

    ``normalizer`` replaces the denominator of the outer mean (token count for ``token-mean``,
    sequence count otherwise). Use it for gradient accumulation: pass the count over the whole
    accumulated batch so that micro-batch losses add up to the full-batch loss. An empty mask
    yields 0 with a zero gradient.
    """
    if mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; valid modes: {', '.join(LOSS_AGG_MODES)}")
    if loss_mat.dim() != 2:
        raise ValueError(f"loss_mat must be [N, T] (sequences x tokens), got shape {tuple(loss_mat.shape)}")
    weights = _weights(mask, loss_mat)
    masked = _masked(loss_mat, weights)
    if normalizer is not None:
        normalizer = torch.as_tensor(normalizer, dtype=loss_mat.dtype, device=loss_mat.device)
        if normalizer.numel() != 1 or not bool(normalizer > 0):
            raise ValueError(f"normalizer must be a positive count, got {normalizer}")

    if mode == "token-mean":
        return _safe_divide(masked.sum(), weights.sum() if normalizer is None else normalizer)

    if mode == "seq-mean-token-mean":
        per_seq = _safe_divide(masked.sum(dim=1), weights.sum(dim=1))
    elif mode == "seq-mean-token-sum":
        per_seq = masked.sum(dim=1)
    else:  # seq-mean-token-sum-norm
        if max_len is None:
            max_len = loss_mat.shape[1]
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise ValueError(f"max_len must be a positive int (the generation budget in tokens), got {max_len!r}")
        per_seq = masked.sum(dim=1) / max_len
    if normalizer is None:
        normalizer = (weights != 0).any(dim=1).sum().to(loss_mat.dtype)
    return _safe_divide(per_seq.sum(), normalizer)


def entropy_loss(
    entropy: Tensor, mask: Tensor, mode: str = "token-mean", *, max_len: int | None = None,
    normalizer: float | Tensor | None = None,
) -> Tensor:
    """Aggregated token entropy ``[N, T] -> scalar`` for the entropy bonus.

    The bonus is *subtracted* from the objective: ``loss = pg_loss - entropy_coeff * entropy_loss``
    (verl's convention; the DPS runs use ``entropy_coeff = 0.001``). ``normalizer``: as in
    :func:`aggregate_loss` (the count over the whole accumulated batch).
    """
    return aggregate_loss(entropy, mask, mode, max_len=max_len, normalizer=normalizer)


def _log_ratio(logprobs: Tensor, old_logprobs: Tensor, weights: Tensor, level: str) -> Tensor:
    """The log importance ratio ``[N, T]`` at ``level`` (clamped to +-20 so ``exp`` never overflows).

    - ``token``: ``logp_t - old_t``;
    - ``sequence`` (GSPO): the length-normalised sequence log-ratio ``mean_t (logp_t - old_t)`` on every
      token of the sequence, its gradient spread over the sequence's tokens (``1 / |y_i|`` each);
    - ``sequence_token`` (GSPO-token): the same value, with gradient ``grad logp_t`` on token ``t``:
      ``sg[mean_t (logp_t - old_t)] + logp_t - sg[logp_t]``.

    The clamp comes last at every level, so where it binds the gradient is zero (for GSPO-token too: the
    pass-through term ``logp_t - sg[logp_t]`` is inside the clamp, as in verl's ``compute_policy_loss_gspo``).
    """
    token = logprobs - old_logprobs.detach()
    if level == "token":
        return torch.clamp(token, -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)
    per_sequence = _safe_divide(_masked(token, weights).sum(dim=1), weights.sum(dim=1)).unsqueeze(1)
    if level == "sequence":
        return torch.clamp(per_sequence, -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT).expand_as(token)
    composed = per_sequence.detach() + logprobs - logprobs.detach()
    return torch.clamp(composed, -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    clip_c: float | None = None,
    ratio_level: str = "token",
    loss_type: str = "clip",
    rollout_weights: Tensor | None = None,
    loss_agg_mode: str = "token-mean",
    max_len: int | None = None,
    normalizer: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Importance-ratio policy-gradient loss (PPO clip / GSPO / CISPO) and its statistics.

    ``r`` is the importance ratio ``pi_theta / pi_old`` at ``ratio_level`` (log-ratio clamped to
    +-20 so it never overflows) and ``A`` the advantage. Per token, ``loss_type="clip"`` (default):

        l = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))          (PPO, arXiv 1707.06347)

    Decoupled bounds are DAPO's clip-higher (arXiv 2503.14476; defaults 0.2 / 0.28). With
    ``clip_c`` set (> 1, e.g. 10 in the DPS runs), negative-advantage tokens are further capped
    at ``-A clip_c`` (dual-clip PPO, arXiv 1912.09729), so a huge ratio cannot blow up the loss.

    ``loss_type="cispo"`` (MiniMax-M1, arXiv 2506.13585, the CISPO objective of Sec. 3.1): a
    REINFORCE loss on every token, weighted by the importance ratio clipped from above and
    stop-gradiented, so no token loses its gradient:

        l = -sg(min(r, 1 + clip_high)) A log pi_theta

    The paper sets no lower bound on the weight, so ``clip_low`` and ``clip_c`` play no part.

    ``ratio_level`` (GSPO, Zheng et al. 2025, arXiv 2507.18071):

    - ``"token"`` (default): ``r_t = pi_theta(y_t) / pi_old(y_t)``, one ratio per token (PPO/GRPO);
    - ``"sequence"`` (GSPO): ``s_i = exp(mean_t log(pi_theta(y_t) / pi_old(y_t)))``, the
      length-normalised sequence ratio, clipped once per sequence (the paper's ranges are tiny,
      e.g. 3e-4 / 4e-4). Aggregate with ``loss_agg_mode="seq-mean-token-mean"`` for the paper's
      ``1/G sum_i`` objective;
    - ``"sequence_token"`` (GSPO-token): ``s_{i,t} = sg[s_i] pi_theta(y_t) / sg[pi_theta(y_t)]``,
      numerically ``s_i`` but with gradient ``s_i grad log pi_theta(y_t)`` per token, so per-token
      advantages ``[N, T]`` can be used. With one advantage per sequence it equals GSPO.

    ``rollout_weights`` (``[N, T]`` or ``[N]``, detached): per-token weights that multiply the loss
    before aggregation, e.g. the rollout-correction weights of
    :func:`~mmdps.rl.rollout_correction.rollout_correction_weights` (TIS / MIS).

    ``logprobs``/``old_logprobs``/``mask`` are ``[N, T]``; ``advantages`` is per sequence ``[N]``
    or per token ``[N, T]``. ``old_logprobs`` and ``advantages`` are detached. The loss is reduced
    with :func:`aggregate_loss` (``loss_agg_mode``, ``max_len``, ``normalizer``). Returns
    ``(loss, stats)``; ``stats`` holds detached scalars over the masked tokens (a sequence ratio
    counts once per token of its sequence):

    - ``clip_frac_high``: share of tokens with ``A > 0`` and ``r > 1 + clip_high`` (no gradient);
      for CISPO, the share with ``r > 1 + clip_high`` (weight truncated, gradient kept),
    - ``clip_frac_low``: share with ``A < 0`` and ``r < 1 - clip_low`` (no gradient; 0 for CISPO),
    - ``clip_frac``: their sum,
    - ``dual_clip_frac``: share with ``A < 0`` capped by ``clip_c`` (0 without dual clip),
    - ``approx_kl``: mean of ``old_logp - logp``, the k1 estimate of KL(old || new),
    - ``ratio_mean``, ``ratio_min``, ``ratio_max`` (1 for an empty mask).
    """
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [N, T], got shape {tuple(logprobs.shape)}")
    if old_logprobs.shape != logprobs.shape:
        raise ValueError(
            f"old_logprobs shape {tuple(old_logprobs.shape)} must equal logprobs shape {tuple(logprobs.shape)}"
        )
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(
            f"advantages must be per sequence [N]={list(logprobs.shape[:1])} or per token [N, T]="
            f"{list(logprobs.shape)}, got {list(advantages.shape)}"
        )
    if rollout_weights is not None and rollout_weights.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(
            f"rollout_weights must be per sequence [N]={list(logprobs.shape[:1])} or per token [N, T]="
            f"{list(logprobs.shape)}, got {list(rollout_weights.shape)}"
        )
    if ratio_level not in RATIO_LEVELS:
        raise ValueError(f"unknown ratio_level {ratio_level!r}; valid: {', '.join(RATIO_LEVELS)}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
    if clip_high < 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if clip_c is not None and clip_c <= 1.0:
        raise ValueError(f"clip_c (dual clip) must be > 1 or None, got {clip_c}")
    weights = _weights(mask, logprobs)

    adv = advantages.detach().to(logprobs.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(1).expand_as(logprobs)
    log_ratio = _log_ratio(logprobs, old_logprobs, weights, ratio_level)
    ratio = torch.exp(log_ratio)
    dual_clipped = torch.zeros_like(logprobs, dtype=torch.bool)
    if loss_type == "cispo":
        per_token = -torch.clamp(ratio.detach(), max=1.0 + clip_high) * adv * logprobs
    else:
        unclipped = -adv * ratio
        clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
        per_token = torch.maximum(unclipped, clipped)
        if clip_c is not None:
            cap = -adv * clip_c
            dual_clipped = (adv < 0) & (per_token > cap)
            per_token = torch.where(dual_clipped, cap, per_token)
    if rollout_weights is not None:
        extra = rollout_weights.detach().to(logprobs.dtype)
        per_token = per_token * (extra.unsqueeze(1) if extra.dim() == 1 else extra)
    loss = aggregate_loss(per_token, weights, loss_agg_mode, max_len=max_len, normalizer=normalizer)

    with torch.no_grad():
        ratio = ratio.detach()
        if loss_type == "cispo":
            high = (ratio > 1.0 + clip_high).to(weights.dtype)
            low = torch.zeros_like(high)
        else:
            high = ((adv > 0) & (ratio > 1.0 + clip_high)).to(weights.dtype)
            low = ((adv < 0) & (ratio < 1.0 - clip_low)).to(weights.dtype)
        valid = weights != 0
        any_valid = valid.any()
        one = torch.ones((), dtype=ratio.dtype, device=ratio.device)
        token_log_ratio = torch.clamp(logprobs.detach() - old_logprobs.detach(), -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)
        stats = {
            "clip_frac_high": masked_mean(high, weights),
            "clip_frac_low": masked_mean(low, weights),
            "clip_frac": masked_mean(high + low, weights),
            "dual_clip_frac": masked_mean(dual_clipped.to(weights.dtype), weights),
            "approx_kl": masked_mean(-token_log_ratio, weights),
            "ratio_mean": torch.where(any_valid, masked_mean(ratio, weights), one),
            "ratio_min": torch.where(any_valid, _masked_extreme(ratio, valid, torch.amin), one),
            "ratio_max": torch.where(any_valid, _masked_extreme(ratio, valid, torch.amax), one),
        }
    return loss, stats
