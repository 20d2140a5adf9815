"""Per-token log-probabilities and entropies from logits, without [N, T, V] temporaries.

With a 150k vocabulary, ``torch.log_softmax(logits, -1).gather(...)`` materialises a second
tensor as large as the logits (several GiB for a long-completion batch) and keeps it alive for
the backward pass. The two functions here process the flattened rows in chunks instead:

- the forward pass holds one chunk of ``chunk_size`` rows at a time and saves only the logits
  (which the model already holds, kept as a view: ``logits[:, p:-1]`` slices are not copied)
  plus one number per row;
- the backward pass recomputes the softmax chunk by chunk, so the only full-size tensor it
  creates is the logits gradient itself, which autograd needs anyway.

Every chunk is computed in float32 (float64 for float64 logits), also for bf16/fp16 logits:
rounding ``gather - logsumexp`` to bf16 would lose about 0.03 nats at typical log-prob
magnitudes, which is noise on the same scale as the clipped importance ratio. Results are
therefore returned in ``promote_types(logits.dtype, float32)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["selective_log_softmax", "entropy_from_logits"]

# Elements of one row chunk (64 MiB in float32); e.g. 111 rows of a 151,936-token vocabulary.
_CHUNK_ELEMENTS = 1 << 24


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _chunk_rows(vocab: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int (rows per chunk) or None, got {chunk_size!r}")
    return chunk_size


def _as_3d(logits: Tensor, name: str) -> Tensor:
    """View logits [..., V] as [A, T, V] without copying (slices such as ``logits[:, p:-1]`` stay views)."""
    if logits.dim() < 1 or not logits.is_floating_point():
        raise ValueError(f"{name}: logits must be a floating tensor [..., V], got {logits.dtype} {tuple(logits.shape)}")
    if logits.shape[-1] == 0:
        raise ValueError(f"{name}: logits have an empty vocabulary dimension")
    if logits.dim() == 1:
        return logits.view(1, 1, -1)
    if logits.dim() == 2:
        return logits.unsqueeze(0)
    return logits.flatten(0, -3)  # a view whenever the leading dims can be merged


def _blocks(num_a: int, num_t: int, rows: int) -> Iterator[tuple[slice, slice]]:
    """Index pairs covering [A, T] in blocks of at most ``rows`` rows (at least one row each)."""
    if num_a == 0 or num_t == 0:
        return
    if num_t <= rows:
        step = rows // num_t
        for a in range(0, num_a, step):
            yield slice(a, a + step), slice(None)
    else:
        for a in range(num_a):
            for t in range(0, num_t, rows):
                yield slice(a, a + 1), slice(t, t + rows)


class _SelectiveLogSoftmax(torch.autograd.Function):
    """log p(index) = logits[index] - logsumexp(logits), chunked; backward recomputes softmax."""

    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, rows: int) -> Tensor:
        cdtype = _compute_dtype(logits.dtype)
        out = torch.empty(index.shape, dtype=cdtype, device=logits.device)
        lse = torch.empty_like(out)
        for a, t in _blocks(index.shape[0], index.shape[1], rows):
            chunk = logits[a, t].to(cdtype)
            chunk_lse = torch.logsumexp(chunk, dim=-1)
            out[a, t] = chunk.gather(-1, index[a, t].unsqueeze(-1)).squeeze(-1) - chunk_lse
            lse[a, t] = chunk_lse
        ctx.save_for_backward(logits, index, lse)
        ctx.rows = rows
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, index, lse = ctx.saved_tensors
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        for a, t in _blocks(index.shape[0], index.shape[1], ctx.rows):
            g = grad_out[a, t].unsqueeze(-1).to(lse.dtype)
            # d log p_i / d x_j = [i == j] - softmax(x)_j
            chunk_grad = torch.exp(logits[a, t].to(lse.dtype) - lse[a, t].unsqueeze(-1)).mul_(-g)
            chunk_grad.scatter_add_(-1, index[a, t].unsqueeze(-1), g)
            grad[a, t] = chunk_grad
        return grad, None, None


class _Entropy(torch.autograd.Function):
    """H = -sum_j p_j log p_j, chunked; dH/dx_j = -p_j (log p_j + H)."""

    @staticmethod
    def forward(ctx, logits: Tensor, rows: int) -> Tensor:
        cdtype = _compute_dtype(logits.dtype)
        out = torch.empty(logits.shape[:-1], dtype=cdtype, device=logits.device)
        lse = torch.empty_like(out)
        for a, t in _blocks(out.shape[0], out.shape[1], rows):
            chunk = logits[a, t].to(cdtype)
            chunk_lse = torch.logsumexp(chunk, dim=-1)
            probs = torch.exp(chunk - chunk_lse.unsqueeze(-1))
            # xlogy gives 0 * log 0 = 0, so -inf logits (masked vocabulary entries) stay finite.
            out[a, t] = -torch.xlogy(probs, probs).sum(dim=-1)
            lse[a, t] = chunk_lse
        ctx.save_for_backward(logits, lse, out)
        ctx.rows = rows
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, lse, entropy = ctx.saved_tensors
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        for a, t in _blocks(entropy.shape[0], entropy.shape[1], ctx.rows):
            probs = torch.exp(logits[a, t].to(lse.dtype) - lse[a, t].unsqueeze(-1))
            chunk_grad = torch.xlogy(probs, probs).add_(probs * entropy[a, t].unsqueeze(-1))
            grad[a, t] = chunk_grad.mul_(-grad_out[a, t].unsqueeze(-1).to(lse.dtype))
        return grad, None


def selective_log_softmax(logits: Tensor, index: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """Log-probability of the chosen token ids: ``log_softmax(logits, -1).gather(-1, index)``.

    ``logits`` is ``[..., V]`` and ``index`` is ``[...]`` (token ids, any integer dtype). The
    result has ``index``'s shape and dtype ``promote_types(logits.dtype, float32)``. Rows are
    processed ``chunk_size`` at a time (default: as many as fit in 2**24 elements), so neither
    the forward nor the backward pass allocates a full ``[..., V]`` log-softmax. Differentiable
    once (no double backward).
    """
    logits3 = _as_3d(logits, "selective_log_softmax")
    if index.shape != logits.shape[:-1]:
        raise ValueError(
            f"selective_log_softmax: index shape {tuple(index.shape)} must equal logits shape without the "
            f"vocabulary dim {tuple(logits.shape[:-1])}"
        )
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise ValueError(f"selective_log_softmax: index must hold integer token ids, got {index.dtype}")
    flat_index = index.reshape(logits3.shape[:-1]).to(device=logits.device, dtype=torch.long)
    vocab = logits.shape[-1]
    if flat_index.numel():
        low, high = torch.stack(torch.aminmax(flat_index)).tolist()  # one device sync
        if low < 0 or high >= vocab:
            raise ValueError(
                f"selective_log_softmax: token ids must lie in [0, {vocab}), got range [{low}, {high}]; "
                "do the ids and the model's vocabulary match?"
            )
    rows = _chunk_rows(vocab, chunk_size)
    return _SelectiveLogSoftmax.apply(logits3, flat_index, rows).view(index.shape)


def entropy_from_logits(logits: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """Entropy of the softmax distribution of each row, ``-sum_j p_j log p_j``, shape ``[...]``.

    Same chunking, dtype and memory behaviour as :func:`selective_log_softmax`; used for the
    entropy bonus and for entropy logging. Differentiable once.
    """
    logits3 = _as_3d(logits, "entropy_from_logits")
    rows = _chunk_rows(logits.shape[-1], chunk_size)
    return _Entropy.apply(logits3, rows).view(logits.shape[:-1])
