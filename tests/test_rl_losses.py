"""Masked reductions, loss aggregation and the clipped policy loss, against hand-computed values."""

import math

import pytest
import torch

from mmdps.rl import (
    LOSS_AGG_MODES,
    LOSS_TYPES,
    RATIO_LEVELS,
    aggregate_loss,
    entropy_loss,
    masked_mean,
    masked_whiten,
    policy_loss,
)

NAN, INF = float("nan"), float("inf")

# Two sequences, T = 4; the second has 2 valid tokens. Padding holds garbage on purpose.
LOSS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, NAN, INF]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)


def test_masked_mean_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, NAN]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor(7 / 3))  # (1 + 2 + 4) / 3
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([1.5, 4.0]))
    weights = torch.tensor([[0.5, 1.5, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(masked_mean(x, weights), torch.tensor(3.5 / 2))  # (.5 * 1 + 1.5 * 2) / 2
    torch.testing.assert_close(masked_mean(x, torch.zeros(2, 3)), torch.tensor(0.0))  # empty -> 0, not NaN


def test_masked_mean_gradient_ignores_padding_garbage():
    x = torch.tensor([[1.0, NAN], [INF, 3.0]], requires_grad=True)
    masked_mean(x, torch.tensor([[1, 0], [0, 1]], dtype=torch.bool)).backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.5, 0.0], [0.0, 0.5]]))


def test_masked_whiten_by_hand():
    # masked values 1, 2, 3: mean 2, Bessel variance (1 + 0 + 1) / 2 = 1
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1, 1, 1, 0], dtype=torch.bool)
    torch.testing.assert_close(masked_whiten(x, mask), torch.tensor([-1.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(masked_whiten(x, mask, shift_mean=False), torch.tensor([1.0, 2.0, 3.0, 0.0]))
    with pytest.raises(ValueError, match="more than one"):
        masked_whiten(x, torch.tensor([1, 0, 0, 0], dtype=torch.bool))


@pytest.mark.parametrize(
    ("mode", "kwargs", "expected"),
    [
        ("token-mean", {}, 3.5),  # (1 + 2 + 3 + 4 + 5 + 6) / 6
        ("seq-mean-token-mean", {}, 4.0),  # (10 / 4 + 11 / 2) / 2 = (2.5 + 5.5) / 2
        ("seq-mean-token-sum", {}, 10.5),  # (10 + 11) / 2
        ("seq-mean-token-sum-norm", {}, 2.625),  # (10 / 4 + 11 / 4) / 2, max_len defaults to T = 4
        ("seq-mean-token-sum-norm", {"max_len": 8}, 1.3125),  # (10 / 8 + 11 / 8) / 2
        ("token-mean", {"normalizer": 12}, 1.75),  # 21 / 12
        ("seq-mean-token-mean", {"normalizer": 4}, 2.0),  # (2.5 + 5.5) / 4
    ],
)
def test_aggregate_loss_by_hand(mode, kwargs, expected):
    torch.testing.assert_close(aggregate_loss(LOSS, MASK, mode, **kwargs), torch.tensor(expected))
    torch.testing.assert_close(aggregate_loss(LOSS, MASK.float(), mode, **kwargs), torch.tensor(expected))


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_empty_sequences_do_not_count(mode):
    # a fully masked row (e.g. a truncated completion) changes no mode's value
    loss = torch.cat([LOSS, torch.full((1, 4), 7.0)])
    mask = torch.cat([MASK, torch.zeros(1, 4, dtype=torch.bool)])
    torch.testing.assert_close(aggregate_loss(loss, mask, mode), aggregate_loss(LOSS, MASK, mode))


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_all_masked_gives_zero_and_zero_gradient(mode):
    loss = torch.ones(2, 3, requires_grad=True)
    out = aggregate_loss(loss, torch.zeros(2, 3), mode)
    out.backward()
    assert out.item() == 0.0 and torch.equal(loss.grad, torch.zeros(2, 3))


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_normalizer_makes_micro_batches_add_up(mode):
    gen = torch.Generator().manual_seed(0)
    loss = torch.randn(6, 5, generator=gen)
    mask = torch.rand(6, 5, generator=gen) > 0.3
    mask[:, 0] = True
    whole = aggregate_loss(loss, mask, mode)
    count = mask.sum() if mode == "token-mean" else 6
    parts = sum(aggregate_loss(loss[i : i + 2], mask[i : i + 2], mode, normalizer=count) for i in (0, 2, 4))
    torch.testing.assert_close(parts, whole)


def test_aggregate_loss_bad_input():
    with pytest.raises(ValueError, match="valid modes: token-mean, seq-mean-token-mean"):
        aggregate_loss(LOSS, MASK, "sum")
    with pytest.raises(ValueError, match=r"\[N, T\]"):
        aggregate_loss(torch.ones(4), torch.ones(4), "token-mean")
    with pytest.raises(ValueError, match="mask shape"):
        aggregate_loss(LOSS, MASK[:, :3], "token-mean")
    with pytest.raises(ValueError, match="max_len"):
        aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm", max_len=0)
    with pytest.raises(ValueError, match="normalizer"):
        aggregate_loss(LOSS, MASK, "token-mean", normalizer=0)


def test_entropy_loss_is_aggregated_entropy():
    entropy = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1, 0], [1, 1]], dtype=torch.bool)
    torch.testing.assert_close(entropy_loss(entropy, mask), torch.tensor(8 / 3))  # (1 + 3 + 4) / 3
    torch.testing.assert_close(entropy_loss(entropy, mask, "seq-mean-token-mean"), torch.tensor(2.25))  # (1 + 3.5) / 2


def _tokens(ratios, advantages, dtype=torch.float32):
    """One token per sequence with the given ratios: logp = old + ln(ratio)."""
    old = torch.full((len(ratios), 1), -1.0, dtype=dtype)
    logp = (old + torch.tensor(ratios, dtype=dtype).log().unsqueeze(1)).requires_grad_(True)
    return logp, old, torch.tensor(advantages, dtype=dtype), torch.ones(len(ratios), 1, dtype=torch.bool)


def test_clip_higher_by_hand():
    # token  A   r    -A r   -A clip(r, .8, 1.28)   loss    gradient wrt logp (= -A r / 4 if unclipped)
    #   a   +1  1.3  -1.3        -1.28             -1.28    0 (clipped high)
    #   b   -1  0.7   0.7         0.8               0.8     0 (clipped low)
    #   c   +1  0.7  -0.7        -0.8              -0.7    -0.175
    #   d   -1  1.3   1.3         1.28              1.3     0.325
    logp, old, adv, mask = _tokens([1.3, 0.7, 0.7, 1.3], [1.0, -1.0, 1.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, mask)
    torch.testing.assert_close(loss, torch.tensor(0.03))  # (-1.28 + .8 - .7 + 1.3) / 4
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0], [0.0], [-0.175], [0.325]]))
    assert stats["clip_frac_high"].item() == pytest.approx(0.25)
    assert stats["clip_frac_low"].item() == pytest.approx(0.25)
    assert stats["clip_frac"].item() == pytest.approx(0.5)
    assert stats["dual_clip_frac"].item() == 0.0
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    assert stats["ratio_min"].item() == pytest.approx(0.7)
    assert stats["ratio_max"].item() == pytest.approx(1.3)
    # approx_kl = -mean(ln r) = -(2 ln 1.3 + 2 ln .7) / 4 = -(.5247285 - .7133499) / 4
    assert stats["approx_kl"].item() == pytest.approx(0.0471553, abs=1e-6)
    assert all(not v.requires_grad and v.dim() == 0 for v in stats.values())


def test_symmetric_clip():
    logp, old, adv, mask = _tokens([1.3, 0.7], [1.0, -1.0])
    loss, _ = policy_loss(logp, old, adv, mask, clip_high=0.2)
    torch.testing.assert_close(loss, torch.tensor(-0.2))  # (-1.2 + .8) / 2


def test_dual_clip_caps_negative_advantages():
    # A = -1, r = 20: max(20, 1.28) = 20, then capped at -A * clip_c = 10
    logp, old, adv, mask = _tokens([20.0, 20.0], [-1.0, 1.0])
    plain, _ = policy_loss(logp, old, adv, mask)
    torch.testing.assert_close(plain, torch.tensor((20.0 - 1.28) / 2))
    capped, stats = policy_loss(logp, old, adv, mask, clip_c=10.0)
    torch.testing.assert_close(capped, torch.tensor((10.0 - 1.28) / 2))
    assert stats["dual_clip_frac"].item() == pytest.approx(0.5)
    capped.backward()
    assert torch.equal(logp.grad, torch.zeros(2, 1))


def test_huge_log_ratio_stays_finite():
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-500.0, 500.0]])
    loss, stats = policy_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 2))
    # ratios exp(20) and exp(-20): -A r = e^20 (unclipped side wins) and max(e^-20, .8) = .8
    assert loss.item() == pytest.approx((math.exp(20) + 0.8) / 2, rel=1e-5)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and torch.isfinite(stats["ratio_max"])


def _uniform_log_ratio(log_ratio: float):
    """Two sequences of three tokens whose token log-ratios are ``log_ratio + (3, 0, -3)``: the token and the
    sequence log-ratios are all ``log_ratio`` give or take 3; advantages +1 and -1."""
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.5, -2.5]], requires_grad=True)
    old = logp.detach() - log_ratio - torch.tensor([3.0, 0.0, -3.0])
    return logp, old, torch.tensor([1.0, -1.0]), torch.ones(2, 3)


@pytest.mark.parametrize("log_ratio", [25.0, -25.0, 100.0, -100.0])
@pytest.mark.parametrize("clip_c", [None, 10.0])
@pytest.mark.parametrize("level", RATIO_LEVELS)
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_log_ratio_past_the_clamp_passes_no_gradient(loss_type, level, clip_c, log_ratio):
    # GSPO-token used to add the pass-through term logp - sg[logp] after clamping the sequence mean, so at a
    # mean log-ratio of 25 with A = -1 and no dual clip each token got a gradient of e^20 / 6 ~ 8e7.
    logp, old, adv, mask = _uniform_log_ratio(log_ratio)
    loss, stats = policy_loss(logp, old, adv, mask, ratio_level=level, loss_type=loss_type, clip_c=clip_c)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    limit = math.exp(20.0 if log_ratio > 0 else -20.0)
    assert stats["ratio_max"].item() == pytest.approx(limit, rel=1e-5)
    if loss_type == "clip":  # the ratio is the only path to logp, and past the clamp it is constant
        assert torch.equal(logp.grad, torch.zeros(2, 3))
    else:  # CISPO's weight sg(min(r, 1 + clip_high)) is constant anyway; its REINFORCE term keeps -w A / 6
        weight = min(limit, 1.28)
        torch.testing.assert_close(logp.grad, -weight * adv.unsqueeze(1).expand(2, 3) / 6)


@pytest.mark.parametrize("level", RATIO_LEVELS)
def test_log_ratio_just_inside_the_clamp_keeps_its_gradient(level):
    # every log-ratio 19 and A = -1: -A r is the larger side, each token's gradient is r / 6 at every level
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, _ = policy_loss(logp, torch.full((2, 3), -19.0), torch.tensor([-1.0, -1.0]), torch.ones(2, 3),
                          ratio_level=level)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.full((2, 3), math.exp(19.0) / 6))


def test_on_policy_gradient_is_minus_advantage_per_token():
    gen = torch.Generator().manual_seed(1)
    logp = torch.randn(3, 4, generator=gen).requires_grad_(True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    loss, stats = policy_loss(logp, logp.detach(), adv, mask)
    torch.testing.assert_close(loss, torch.tensor(-(3 * 1.0 - 2 * 2.0 + 0.5) / 6))
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv.unsqueeze(1) * mask / 6)
    assert stats["clip_frac"].item() == 0.0 and stats["approx_kl"].item() == 0.0


def test_per_token_advantages_equal_broadcast_sequence_advantages():
    gen = torch.Generator().manual_seed(2)
    logp, old = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen) * 0.1
    old = logp + old
    adv = torch.randn(3, generator=gen)
    mask = torch.rand(3, 5, generator=gen) > 0.2
    for mode in LOSS_AGG_MODES:
        per_seq, _ = policy_loss(logp, old, adv, mask, loss_agg_mode=mode)
        per_tok, _ = policy_loss(logp, old, adv.unsqueeze(1).expand(3, 5), mask, loss_agg_mode=mode)
        torch.testing.assert_close(per_seq, per_tok)


def test_old_logprobs_and_advantages_get_no_gradient():
    logp = torch.zeros(2, 2, requires_grad=True)
    old = torch.full((2, 2), -0.1, requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    policy_loss(logp, old, adv, torch.ones(2, 2))[0].backward()
    assert old.grad is None and adv.grad is None and logp.grad is not None


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(3)
    logp = (torch.randn(3, 4, generator=gen, dtype=torch.float64) * 0.3).requires_grad_(True)
    old = torch.zeros(3, 4, dtype=torch.float64)
    adv = torch.tensor([1.5, -0.5, -2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    for mode in LOSS_AGG_MODES:
        def fn(x, mode=mode):
            return policy_loss(x, old, adv, mask, clip_c=3.0, loss_agg_mode=mode)[0]
        assert torch.autograd.gradcheck(fn, (logp,))


def test_half_precision_inputs():
    logp, old, adv, mask = _tokens([1.3, 0.7, 0.7, 1.3], [1.0, -1.0, 1.0, -1.0], dtype=torch.bfloat16)
    loss, stats = policy_loss(logp, old, adv, mask)
    assert loss.dtype == torch.bfloat16 and torch.isfinite(loss)
    assert stats["clip_frac"].item() == pytest.approx(0.5)


def test_empty_mask_stats():
    loss, stats = policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2), torch.zeros(2, 3))
    assert loss.item() == 0.0
    assert stats["ratio_min"].item() == stats["ratio_max"].item() == stats["ratio_mean"].item() == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_low": 1.0}, "clip_low"),
        ({"clip_high": -0.1}, "clip_high"),
        ({"clip_c": 1.0}, "clip_c"),
        ({"loss_agg_mode": "mean"}, "valid modes"),
    ],
)
def test_policy_loss_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2), torch.ones(2, 3), **kwargs)


def test_policy_loss_bad_shapes():
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="old_logprobs"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\[N, T\]"):
        policy_loss(torch.zeros(6), torch.zeros(6), torch.ones(6), torch.ones(6))
