"""Chunked selective log-softmax and entropy: values, gradients, dtypes and memory."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from mmdps.rl import entropy_from_logits, selective_log_softmax


def _reference(logits, index):
    return torch.log_softmax(logits, dim=-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)


def test_by_hand():
    # exp(logits) = (1, 2, 3), sum 6 -> p = (1/6, 1/3, 1/2)
    logits = torch.tensor([[0.0, math.log(2.0), math.log(3.0)]] * 3)
    logp = selective_log_softmax(logits, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(logp, torch.tensor([-1.7917595, -1.0986123, -0.6931472]))
    # H = ln6 / 6 + ln3 / 3 + ln2 / 2 = .2986266 + .3662041 + .3465736
    torch.testing.assert_close(entropy_from_logits(logits), torch.full((3,), 1.0114043))


def test_masked_vocabulary_entries_stay_finite():
    logits = torch.tensor([[0.0, 0.0, float("-inf")]], requires_grad=True)
    entropy = entropy_from_logits(logits)
    torch.testing.assert_close(entropy.detach(), torch.tensor([math.log(2.0)]))
    entropy.sum().backward()
    assert torch.isfinite(logits.grad).all()
    torch.testing.assert_close(selective_log_softmax(logits.detach(), torch.tensor([1])), torch.tensor([-math.log(2)]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 5, 64])
def test_matches_log_softmax_gather(dtype, chunk_size):
    gen = torch.Generator().manual_seed(0)
    full = torch.randn(3, 9, 40, generator=gen, dtype=dtype) * 4
    logits = full[:, 2:-1]  # non-contiguous slice, as the trainer takes completion positions
    index = torch.randint(0, 40, logits.shape[:-1], generator=gen)
    got = selective_log_softmax(logits, index, chunk_size=chunk_size)
    assert got.dtype == dtype and got.shape == index.shape
    torch.testing.assert_close(got, _reference(logits, index))
    probs = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(
        entropy_from_logits(logits, chunk_size=chunk_size), -(probs * probs.log()).sum(-1)
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_computed_and_returned_in_float32(dtype):
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(4, 6, 300, generator=gen) * 3).to(dtype)
    index = torch.randint(0, 300, (4, 6), generator=gen)
    got = selective_log_softmax(logits, index, chunk_size=5)
    assert got.dtype == torch.float32
    # exact against the float32 computation on the same (rounded) logits ...
    torch.testing.assert_close(got, _reference(logits.float(), index))
    # ... and within half-precision rounding of torch's own half-precision result
    torch.testing.assert_close(got, _reference(logits, index).float(), rtol=2**-7, atol=1e-3)
    probs = torch.softmax(logits.float(), dim=-1)
    torch.testing.assert_close(entropy_from_logits(logits, chunk_size=5), -(probs * probs.log()).sum(-1))


def test_leading_shapes():
    gen = torch.Generator().manual_seed(2)
    one_row = torch.randn(17, generator=gen)
    torch.testing.assert_close(selective_log_softmax(one_row, torch.tensor(4)), torch.log_softmax(one_row, -1)[4])
    four_d = torch.randn(2, 3, 4, 11, generator=gen)
    index = torch.randint(0, 11, (2, 3, 4), generator=gen)
    torch.testing.assert_close(selective_log_softmax(four_d, index, chunk_size=3), _reference(four_d, index))
    assert entropy_from_logits(four_d).shape == (2, 3, 4)
    assert selective_log_softmax(torch.randn(2, 0, 5), torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 7, (2, 5), generator=gen)
    # slice so the inputs are non-contiguous, and chunk so rows split across blocks
    assert torch.autograd.gradcheck(lambda x: selective_log_softmax(x[:, 1:], index, chunk_size=2), (logits,))
    assert torch.autograd.gradcheck(lambda x: entropy_from_logits(x[:, 1:], chunk_size=4), (logits,))


def test_half_precision_gradient_matches_reference():
    gen = torch.Generator().manual_seed(4)
    logits = (torch.randn(3, 5, 50, generator=gen) * 2).bfloat16().requires_grad_(True)
    index = torch.randint(0, 50, (3, 5), generator=gen)
    weights = torch.randn(3, 5, generator=gen)
    (selective_log_softmax(logits, index, chunk_size=4) * weights).sum().backward()
    assert logits.grad.dtype == torch.bfloat16
    reference = logits.detach().float().requires_grad_(True)
    (_reference(reference, index) * weights).sum().backward()
    torch.testing.assert_close(logits.grad.float(), reference.grad, rtol=2**-7, atol=2**-8)


class _AllocationLog(TorchDispatchMode):
    """Records the element count of every tensor an op creates (views of inputs excluded)."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.sizes.append(t.numel())
        return out


def test_large_vocabulary_never_allocates_full_size_temporaries():
    vocab, rows_per_chunk = 150_000, 2
    logits = torch.randn(2, 3, vocab, requires_grad=True)
    index = torch.randint(0, vocab, (2, 3))
    full = logits.numel()
    with _AllocationLog() as forward_log:
        logp = selective_log_softmax(logits, index, chunk_size=rows_per_chunk)
        entropy = entropy_from_logits(logits, chunk_size=rows_per_chunk)
    assert max(forward_log.sizes) <= rows_per_chunk * vocab < full
    torch.testing.assert_close(logp, _reference(logits.detach(), index))
    with _AllocationLog() as backward_log:
        (logp.sum() + entropy.sum()).backward()
    # each backward creates the logits gradient (autograd needs it) and nothing else that large;
    # the two gradients are then added into logits.grad
    full_size = [n for n in backward_log.sizes if n >= full]
    assert len(full_size) <= 3
    assert max(n for n in backward_log.sizes if n < full) <= rows_per_chunk * vocab


def test_bad_input_raises():
    logits = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="index shape"):
        selective_log_softmax(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        selective_log_softmax(logits, torch.full((2, 3), 5))
    with pytest.raises(ValueError, match="integer token ids"):
        selective_log_softmax(logits, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        selective_log_softmax(logits, torch.zeros(2, 3, dtype=torch.long), chunk_size=0)
    with pytest.raises(ValueError, match="floating"):
        entropy_from_logits(torch.zeros(2, 3, dtype=torch.long))
