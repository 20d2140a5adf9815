"""GSPO, GSPO-token and CISPO losses, and which reference each loss aggregation equals.

By hand, and against the formulas as verl (core_algos.py at b178a3c) and TRL (grpo_trainer.py, 1.x)
write them, restated below as small reference functions.
"""

import math

import pytest
import torch

from mmdps.rl import LOSS_AGG_MODES, RATIO_LEVELS, aggregate_loss, policy_loss

NAN = float("nan")


def _batch(seed: int, n: int = 4, t: int = 6, spread: float = 0.3):
    gen = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(n, t, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    old = logp.detach() + torch.randn(n, t, generator=gen, dtype=torch.float64) * spread
    adv = torch.randn(n, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).double()
    return logp, old, adv, mask


def _grad(loss, x):
    (grad,) = torch.autograd.grad(loss, x)
    return grad


# ---------------------------------------------------------------------- GSPO
def test_gspo_by_hand():
    # seq 0: token log-ratios (.1, -.1, .3) -> s = e^.1 = 1.10517, inside [.8, 1.2]: l = -A s = -1.10517
    # seq 1: log-ratios (.6, .6), one padding slot (NaN) -> s = e^.6 = 1.822 > 1.2, A = 1 > 0: clipped, l = -1.2
    logp = torch.tensor([[0.1, -0.1, 0.3], [0.6, 0.6, NAN]], requires_grad=True)
    old = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, stats = policy_loss(logp, old, torch.ones(2), mask, clip_low=0.2, clip_high=0.2, ratio_level="sequence",
                              loss_agg_mode="seq-mean-token-mean")
    s0 = math.exp(0.1)
    assert loss.item() == pytest.approx((-s0 - 1.2) / 2, rel=1e-6)
    # d/dlogp_{0,t} of -s0 / 2 is -s0 / 3 / 2 on each token of seq 0; the clipped seq 1 gets none
    torch.testing.assert_close(_grad(loss, logp), torch.tensor([[-s0 / 6] * 3, [0.0, 0.0, 0.0]]))
    assert stats["clip_frac_high"].item() == pytest.approx(2 / 5)  # seq 1's two tokens
    assert stats["ratio_max"].item() == pytest.approx(math.exp(0.6), rel=1e-6)


def test_gspo_token_value_is_gspo_and_gradient_is_per_token():
    logp, old, _, mask = _batch(0)
    adv_tok = torch.randn(4, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    kwargs = {"clip_low": 0.5, "clip_high": 0.5, "loss_agg_mode": "token-mean"}  # wide: nothing clipped
    gspo, _ = policy_loss(logp, old, adv_tok, mask, ratio_level="sequence", **kwargs)
    token, _ = policy_loss(logp, old, adv_tok, mask, ratio_level="sequence_token", **kwargs)
    torch.testing.assert_close(gspo, token)
    # GSPO-token: token t of sequence i gets -A_{i,t} s_i / (number of tokens); GSPO spreads sum_t A_{i,t}
    # s_i evenly over the sequence's tokens.
    s = torch.exp(((logp.detach() - old) * mask).sum(1) / mask.sum(1)).unsqueeze(1)
    total = mask.sum()
    torch.testing.assert_close(_grad(token, logp), -adv_tok * s * mask / total)
    spread = (adv_tok * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(_grad(gspo, logp), -spread * s * mask / total)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_gspo_token_equals_gspo_for_sequence_advantages(mode):
    logp, old, adv, mask = _batch(1)
    for clip in (0.05, 0.3):
        kwargs = {"clip_low": clip, "clip_high": clip, "loss_agg_mode": mode}
        a, _ = policy_loss(logp, old, adv, mask, ratio_level="sequence", **kwargs)
        b, _ = policy_loss(logp, old, adv, mask, ratio_level="sequence_token", **kwargs)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(_grad(a, logp), _grad(b, logp))


def _verl_gspo(old, logp, adv, mask, clip_low, clip_high):
    # verl compute_policy_loss_gspo: GSPO-token ratio, log ratio clamped at 10 from above,
    # always aggregated seq-mean-token-mean (sequences with no token excluded).
    seq = ((logp - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    log_ratio = torch.clamp(logp - logp.detach() + seq.detach().unsqueeze(-1), max=10.0)
    ratio = torch.exp(log_ratio)
    a = adv.unsqueeze(-1)
    losses = torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
    per_seq = (losses * mask).sum(-1) / (mask.sum(-1) + 1e-8)
    return per_seq.sum() / (mask.sum(-1) > 0).sum()


def _trl_sequence_level(old, logp, adv, mask, clip_low, clip_high):
    # TRL importance_sampling_level="sequence", loss_type="grpo" (one micro-batch, no accumulation)
    log_w = ((logp - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    coef_1 = torch.exp(log_w.unsqueeze(-1))
    coef_2 = torch.clamp(coef_1, 1 - clip_low, 1 + clip_high)
    a = adv.unsqueeze(1)
    per_token = -torch.min(coef_1 * a, coef_2 * a)
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


@pytest.mark.parametrize("seed", range(3))
def test_gspo_equals_verl_and_trl(seed):
    logp, old, adv, mask = _batch(seed, spread=0.05)
    clip = (3e-3, 4e-3)  # tight, GSPO-like: some sequences clip, some do not
    ours_token, _ = policy_loss(logp, old, adv, mask, clip_low=clip[0], clip_high=clip[1],
                                ratio_level="sequence_token", loss_agg_mode="seq-mean-token-mean")
    verl = _verl_gspo(old, logp, adv, mask, *clip)
    torch.testing.assert_close(ours_token, verl)
    torch.testing.assert_close(_grad(ours_token, logp), _grad(verl, logp))
    ours_seq, _ = policy_loss(logp, old, adv, mask, clip_low=clip[0], clip_high=clip[1], ratio_level="sequence",
                              loss_agg_mode="seq-mean-token-mean")
    trl = _trl_sequence_level(old, logp, adv, mask, *clip)
    torch.testing.assert_close(ours_seq, trl)
    torch.testing.assert_close(_grad(ours_seq, logp), _grad(trl, logp))


@pytest.mark.parametrize("level", RATIO_LEVELS)
def test_every_ratio_level_is_minus_advantage_on_policy(level):
    # at the old policy every ratio is 1, so the gradient is -A grad log p for all levels (token-mean)
    logp, _, adv, mask = _batch(2)
    loss, stats = policy_loss(logp, logp.detach(), adv, mask, ratio_level=level)
    expected = -adv.unsqueeze(1) * mask / mask.sum()
    torch.testing.assert_close(_grad(loss, logp), expected)
    assert stats["ratio_mean"].item() == pytest.approx(1.0)


def test_sequence_ratio_of_huge_log_ratio_stays_finite():
    logp = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-100.0, -100.0], [100.0, 100.0]])
    for level in ("sequence", "sequence_token"):
        loss, stats = policy_loss(logp, old, torch.tensor([1.0, -1.0]), torch.ones(2, 2), ratio_level=level)
        assert torch.isfinite(loss) and torch.isfinite(_grad(loss, logp)).all()
        assert stats["ratio_max"].item() == pytest.approx(math.exp(20), rel=1e-5)


def test_empty_sequence_gets_ratio_one_and_no_gradient():
    logp = torch.tensor([[0.5, 0.1], [NAN, NAN]], requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(2, 2), torch.ones(2), torch.tensor([[1, 1], [0, 0]]),
                          ratio_level="sequence")
    grad = _grad(loss, logp)
    assert torch.isfinite(loss) and torch.equal(grad[1], torch.zeros(2))


# ---------------------------------------------------------------------- CISPO
def test_cispo_by_hand():
    # ratios e^.5 = 1.6487 (truncated to 1.28) and e^-.5 = .6065 (no lower bound): weights 1.28, .6065
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old = torch.tensor([[-1.5, -1.5]])
    loss, stats = policy_loss(logp, old, torch.tensor([2.0]), torch.ones(1, 2), loss_type="cispo")
    w = torch.tensor([[1.28, math.exp(-0.5)]])
    expected = (-w * 2.0 * logp.detach()).mean()
    torch.testing.assert_close(loss, expected)
    # a REINFORCE gradient on every token, the truncated one included: -w A / 2
    torch.testing.assert_close(_grad(loss, logp), -w * 2.0 / 2)
    assert stats["clip_frac_high"].item() == 0.5 and stats["clip_frac_low"].item() == 0.0


def _trl_cispo(old, logp, adv, mask, epsilon_high):
    # TRL loss_type="cispo": clamp(coef_1, max=epsilon_high).detach() * A * logp, summed over the
    # tokens and divided by the number of tokens (num_items_in_batch).
    coef_1 = torch.exp(logp - old)
    per_token = -torch.clamp(coef_1, max=epsilon_high).detach() * adv.unsqueeze(1) * logp
    return (per_token * mask).sum() / mask.sum()


def _verl_cispo(old, logp, adv, mask, clip_low, clip_high):
    # verl compute_policy_loss_cispo: the weight is clipped on both sides, token-mean
    ratio = torch.exp(torch.clamp(logp - old, -20.0, 20.0))
    w = torch.clamp(ratio, 1 - clip_low, 1 + clip_high).detach()
    return (-w * adv.unsqueeze(1) * logp * mask).sum() / mask.sum()


@pytest.mark.parametrize("seed", range(3))
def test_cispo_equals_trl_and_verl_without_lower_clip(seed):
    logp, old, adv, mask = _batch(seed)
    ours, _ = policy_loss(logp, old, adv, mask, clip_high=0.28, loss_type="cispo")
    trl = _trl_cispo(old, logp, adv, mask, epsilon_high=1.28)
    torch.testing.assert_close(ours, trl)
    torch.testing.assert_close(_grad(ours, logp), _grad(trl, logp))
    # verl's extra lower bound 1 - clip_low: equal once that bound never binds
    verl = _verl_cispo(old, logp, adv, mask, clip_low=0.999999, clip_high=0.28)
    torch.testing.assert_close(ours, verl)


def test_cispo_ignores_dual_clip_and_accepts_sequence_ratios():
    logp, old, adv, mask = _batch(4)
    plain, _ = policy_loss(logp, old, adv, mask, loss_type="cispo")
    dual, _ = policy_loss(logp, old, adv, mask, loss_type="cispo", clip_c=3.0)
    torch.testing.assert_close(plain, dual)
    seq, _ = policy_loss(logp, old, adv, mask, loss_type="cispo", ratio_level="sequence")
    seq_tok, _ = policy_loss(logp, old, adv, mask, loss_type="cispo", ratio_level="sequence_token")
    torch.testing.assert_close(seq, seq_tok)  # the weight is stop-gradient: the two coincide


# ---------------------------------------------------------------------- rollout weights
def test_rollout_weights_multiply_the_token_loss():
    logp, old, adv, mask = _batch(6)
    w = torch.rand(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for loss_type in ("clip", "cispo"):
        plain, _ = policy_loss(logp, old, adv, mask, loss_type=loss_type, loss_agg_mode="seq-mean-token-sum")
        weighted, _ = policy_loss(logp, old, adv, mask, loss_type=loss_type, rollout_weights=w,
                                  loss_agg_mode="seq-mean-token-sum")
        ones, _ = policy_loss(logp, old, adv, mask, loss_type=loss_type, rollout_weights=torch.ones(4),
                              loss_agg_mode="seq-mean-token-sum")
        torch.testing.assert_close(ones, plain)
        assert not torch.allclose(weighted, plain)
    with pytest.raises(ValueError, match="rollout_weights"):
        policy_loss(logp, old, adv, mask, rollout_weights=torch.ones(3))


@pytest.mark.parametrize(("kwargs", "match"), [({"ratio_level": "seq"}, "ratio_level"),
                                               ({"loss_type": "ppo"}, "loss_type")])
def test_bad_objective_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2), torch.ones(2, 3), **kwargs)


# ---------------------------------------------------------------------- aggregation vs references
def _trl_dr_grpo(loss_mat, mask, max_completion_length):
    # TRL loss_type="dr_grpo": sum of the masked token losses / (rows * max_completion_length)
    return (loss_mat * mask).sum() / (loss_mat.size(0) * max_completion_length)


def _verl_seq_mean_token_sum_norm(loss_mat, mask, loss_scale_factor=None):
    # verl agg_loss "seq-mean-token-sum-norm": sum of the token sums / horizon, no division by rows
    horizon = mask.shape[-1] if loss_scale_factor is None else loss_scale_factor
    return (loss_mat * mask).sum(-1).sum() / horizon


def test_seq_mean_token_sum_norm_equals_trl_dr_grpo_and_is_verls_divided_by_rows():
    gen = torch.Generator().manual_seed(0)
    loss_mat = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    mask = (torch.rand(5, 7, generator=gen) > 0.3).double()
    mask[:, 0] = 1  # every row has a token (TRL counts empty rows, mmdps does not)
    ours = aggregate_loss(loss_mat, mask, "seq-mean-token-sum-norm", max_len=16)
    torch.testing.assert_close(ours, _trl_dr_grpo(loss_mat, mask, 16))
    torch.testing.assert_close(_verl_seq_mean_token_sum_norm(loss_mat, mask, 16), ours * 5)
    torch.testing.assert_close(_verl_seq_mean_token_sum_norm(loss_mat, mask),
                               aggregate_loss(loss_mat, mask, "seq-mean-token-sum-norm") * 5)


def test_other_modes_equal_verl_agg_loss_and_trl():
    gen = torch.Generator().manual_seed(1)
    loss_mat = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    mask = (torch.rand(5, 7, generator=gen) > 0.3).double()
    mask[2] = 0  # one empty row: verl excludes it from the seq-mean modes, as mmdps does
    rows = (mask.sum(-1) > 0).sum()
    token_sum = (loss_mat * mask).sum(-1)
    torch.testing.assert_close(aggregate_loss(loss_mat, mask, "token-mean"), token_sum.sum() / mask.sum())
    torch.testing.assert_close(aggregate_loss(loss_mat, mask, "seq-mean-token-sum"), token_sum.sum() / rows)
    per_seq = token_sum / (mask.sum(-1) + 1e-8)
    torch.testing.assert_close(aggregate_loss(loss_mat, mask, "seq-mean-token-mean"), per_seq.sum() / rows)
    # TRL loss_type="grpo" divides by every row, the empty one included
    trl_grpo = (token_sum / mask.sum(-1).clamp(min=1.0)).mean()
    torch.testing.assert_close(aggregate_loss(loss_mat, mask, "seq-mean-token-mean") * rows / 5, trl_grpo)
