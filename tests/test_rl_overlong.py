"""DAPO's soft overlong penalty and overlong filtering (truncation mask)."""

import pytest
import torch

from mmdps.rl import soft_overlong_penalty, truncation_mask


def test_soft_penalty_piecewise_by_hand():
    # max_len 20, cache 4: free up to 16, then (16 - L) / 4, then -1 beyond 20
    lengths = torch.tensor([0, 16, 17, 18, 19, 20, 21, 100])
    expected = torch.tensor([0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0, -1.0])
    torch.testing.assert_close(soft_overlong_penalty(lengths, 20, 4), expected)
    torch.testing.assert_close(soft_overlong_penalty(lengths, 20, 4, factor=0.5), expected * 0.5)


def test_soft_penalty_edge_caches():
    lengths = torch.tensor([0, 5, 10, 11])
    # cache_len == max_len: the ramp starts at length 0
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 10), torch.tensor([0.0, -0.5, -1.0, -1.0]))
    # cache_len == 0: a hard step just past the budget
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 0, 2.0), torch.tensor([0.0, 0.0, 0.0, -2.0]))


def test_soft_penalty_dtype():
    assert soft_overlong_penalty(torch.tensor([3, 4]), 4, 2).dtype == torch.float32
    assert soft_overlong_penalty(torch.tensor([3.0, 4.0], dtype=torch.float64), 4, 2).dtype == torch.float64


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.tensor([1]), 0, 0), "max_len"),
        ((torch.tensor([1]), 10, 11), "cache_len"),
        ((torch.tensor([1]), 10, -1), "cache_len"),
        ((torch.tensor([1]), 10, 4, -1.0), "factor"),
        ((torch.tensor([[1]]), 10, 4), "1-D"),
    ],
)
def test_soft_penalty_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        soft_overlong_penalty(*args)


def test_truncation_mask_zeroes_truncated_rows():
    truncated = torch.tensor([False, True, False])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    expected = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    assert torch.equal(truncation_mask(truncated, mask), expected)
    assert mask[1].all()  # the input is not modified
    weights = mask.float() * 0.5
    out = truncation_mask(truncated, weights)
    assert out.dtype == torch.float32 and torch.equal(out, expected.float() * 0.5)


def test_truncation_mask_bad_shapes():
    with pytest.raises(ValueError, match="same N"):
        truncation_mask(torch.tensor([True, False]), torch.ones(3, 4))
    with pytest.raises(ValueError, match="same N"):
        truncation_mask(torch.tensor([True]), torch.ones(4))
