"""DAPO's handling of over-long completions (arXiv 2503.14476, section 3.4).

Two independent tools:

- :func:`truncation_mask` ("overlong filtering"): completions cut off by the generation budget
  get no loss at all, so the model is not punished for a possibly sound but unfinished answer.
- :func:`soft_overlong_penalty` ("soft overlong punishment"): a length-aware reward term that
  ramps linearly from 0 to ``-factor`` over the last ``cache_len`` tokens of the budget.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["soft_overlong_penalty", "truncation_mask"]


def soft_overlong_penalty(lengths: Tensor, max_len: int, cache_len: int, factor: float = 1.0) -> Tensor:
    """Length penalty [N] to add to the rewards (DAPO Eq. 13, scaled by ``factor``).

        R(L) = 0                                          if L <= max_len - cache_len
             = factor * ((max_len - cache_len) - L) / cache_len    if max_len - cache_len < L <= max_len
             = -factor                                    if L > max_len

    ``lengths`` are completion token counts. DAPO uses ``max_len = 20,480`` (the generation
    budget) and ``cache_len = 4,096``. ``cache_len = 0`` gives a hard step at ``max_len``. The
    result is float32 (float64 for float64 lengths).
    """
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise ValueError(f"max_len must be a positive int (the generation budget in tokens), got {max_len!r}")
    if not isinstance(cache_len, int) or isinstance(cache_len, bool) or not 0 <= cache_len <= max_len:
        raise ValueError(f"cache_len must be an int in [0, max_len={max_len}], got {cache_len!r}")
    if factor < 0:
        raise ValueError(f"factor must be >= 0 (it is the size of the penalty), got {factor}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D [N], got shape {tuple(lengths.shape)}")
    dtype = torch.float64 if lengths.dtype == torch.float64 else torch.float32
    lengths = lengths.to(dtype)
    if cache_len == 0:
        return torch.where(lengths > max_len, -factor, 0.0).to(dtype)
    expected = max_len - cache_len
    ramp = (expected - lengths) / cache_len * factor
    return torch.clamp(ramp, min=-factor, max=0.0)


def truncation_mask(truncated: Tensor, mask: Tensor) -> Tensor:
    """Copy of the loss ``mask`` [N, T] with the rows of truncated completions zeroed.

    ``truncated`` is a bool [N] (``Completion.truncated``, i.e. the generation hit its token
    budget). The mask keeps its dtype (bool or float).
    """
    if truncated.dim() != 1 or mask.dim() != 2 or truncated.shape[0] != mask.shape[0]:
        raise ValueError(
            "truncated must be [N] and mask [N, T] with the same N, "
            f"got {tuple(truncated.shape)} and {tuple(mask.shape)}"
        )
    keep = ~truncated.to(device=mask.device, dtype=torch.bool).unsqueeze(1)
    if mask.dtype == torch.bool:
        return mask & keep
    return mask * keep.to(mask.dtype)
