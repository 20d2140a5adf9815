"""Per-token estimators of KL(pi_theta || pi_ref) from sampled-token log-probabilities.

The estimators are Schulman's (http://joschu.net/blog/kl-approx.html); with ``d = ref_logp - logp``
for tokens sampled from the current policy:

- ``"k1"``: ``-d = logp - ref_logp``. Unbiased, high variance, can be negative per token.
- ``"k2"``: ``d^2 / 2``. Biased, low variance, always >= 0.
- ``"k3"``: ``exp(d) - d - 1``. Unbiased, low variance, always >= 0; the GRPO paper's
  (arXiv 2402.03300) KL loss and verl's ``low_var_kl``.
- ``"abs"``: ``|logp - ref_logp|``.

The DPS runs use no KL for MATH and Countdown and a k3 KL *loss* with coefficient 0.01 (3B) /
0.03 (7B) for Geometry3K; our default coefficient is 0, so no reference model is loaded.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KL_KINDS", "kl_penalty"]

KL_KINDS = ("k1", "k2", "k3", "abs")

_LOG_RATIO_LIMIT = 20.0


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "k3", *, k3_max: float | None = 10.0) -> Tensor:
    """Per-token KL estimate between the policy and the reference, same shape as ``logprobs``.

    ``ref_logprobs`` is detached. For ``"k3"`` the log-ratio is clamped to +-20 before ``exp`` and
    the result is clamped to at most ``k3_max`` (10 by default, as verl's ``low_var_kl``): a token
    on which the two models disagree by many nats would otherwise dominate the loss with an
    exponentially large value (and gradient). Clamped tokens get no gradient; ``k3_max=None``
    turns the clamp off.
    """
    if kind not in KL_KINDS:
        raise ValueError(f"unknown KL estimator {kind!r}; valid kinds: {', '.join(KL_KINDS)}")
    if ref_logprobs.shape != logprobs.shape:
        raise ValueError(
            f"ref_logprobs shape {tuple(ref_logprobs.shape)} must equal logprobs shape {tuple(logprobs.shape)}"
        )
    diff = logprobs - ref_logprobs.detach().to(logprobs.dtype)
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff.square()
    if kind == "abs":
        return diff.abs()
    log_ratio = torch.clamp(-diff, -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)
    k3 = torch.exp(log_ratio) - log_ratio - 1.0
    return k3 if k3_max is None else torch.clamp(k3, max=k3_max)
