"""Sampler/trainer mismatch statistics and TIS / MIS weights: by hand, and against TRL's and verl's formulas."""

import math

import pytest
import torch

from mmdps.rl import (
    ROLLOUT_CORRECTION_LEVELS,
    ROLLOUT_CORRECTIONS,
    rollout_correction_weights,
    rollout_mismatch,
)

NAN = float("nan")



def _inputs():
    trainer = torch.tensor([[-1.0, -2.0, -0.5], [-0.5, 0.0, NAN]])
    sampler = torch.tensor([[-1.1, -1.8, -1.5], [-1.0, 0.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    return trainer, sampler, mask


def test_tis_token_by_hand():
    trainer, sampler, mask = _inputs()
    weights, stats = rollout_correction_weights(trainer, sampler, mask, "tis", cap=2.0)
    expected = torch.tensor([[math.exp(0.1), math.exp(-0.2), 2.0], [math.exp(0.5), 0.0, 0.0]])
    torch.testing.assert_close(weights, expected)
    assert stats["corrected_frac"].item() == pytest.approx(0.25)
    assert stats["weight_mean"].item() == pytest.approx(float(expected.sum()) / 4, rel=1e-6)


def test_mis_token_by_hand():
    trainer, sampler, mask = _inputs()
    weights, stats = rollout_correction_weights(trainer, sampler, mask, "mis", cap=2.0)
    expected = torch.tensor([[math.exp(0.1), math.exp(-0.2), 0.0], [math.exp(0.5), 0.0, 0.0]])
    torch.testing.assert_close(weights, expected)
    assert stats["corrected_frac"].item() == pytest.approx(0.25)


def test_sequence_level_by_hand():
    # sequence ratios: e^(.1 - .2 + 1) = e^.9 = 2.46 (beyond 2) and e^.5 = 1.65
    trainer, sampler, mask = _inputs()
    tis, _ = rollout_correction_weights(trainer, sampler, mask, "tis", cap=2.0, level="sequence")
    torch.testing.assert_close(tis, torch.tensor([[2.0, 2.0, 2.0], [math.exp(0.5), 0.0, 0.0]]))
    mis, stats = rollout_correction_weights(trainer, sampler, mask, "mis", cap=2.0, level="sequence")
    torch.testing.assert_close(mis, torch.tensor([[0.0, 0.0, 0.0], [math.exp(0.5), 0.0, 0.0]]))
    assert stats["corrected_frac"].item() == pytest.approx(0.75)  # the three tokens of sequence 0


def test_mismatch_by_hand():
    trainer, sampler, mask = _inputs()
    stats = rollout_mismatch(trainer, sampler, mask)
    diffs = torch.tensor([0.1, -0.2, 1.0, 0.5], dtype=torch.float64)
    assert stats["logprob_diff_mean"].item() == pytest.approx(float(diffs.abs().mean()), rel=1e-6)
    assert stats["logprob_diff_max"].item() == pytest.approx(1.0, rel=1e-6)
    k3 = float((diffs.exp() - diffs - 1).mean())
    assert stats["kl_sampler_trainer"].item() == pytest.approx(k3, rel=1e-5)
    assert stats["ratio_mean"].item() == pytest.approx(float(diffs.exp().mean()), rel=1e-6)


def test_identical_log_probs_mean_no_mismatch():
    logp = -torch.rand(3, 5, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 5)
    stats = rollout_mismatch(logp, logp.clone(), mask)
    assert stats["logprob_diff_mean"].item() == 0.0 and stats["kl_sampler_trainer"].item() == 0.0
    for mode in ROLLOUT_CORRECTIONS:
        for level in ROLLOUT_CORRECTION_LEVELS:
            weights, _ = rollout_correction_weights(logp, logp.clone(), mask, mode, level=level)
            assert torch.equal(weights, torch.ones(3, 5))


def _trl_vllm_is(old, sampling, mask, mode, clip_max):
    # TRL vllm_importance_sampling_mode with clip_min=None
    diff = (old - sampling) * mask
    if mode.startswith("sequence"):
        diff = diff.sum(dim=-1, keepdim=True)
    ratio = torch.exp(diff)
    if mode.endswith("truncate"):
        return torch.clamp(ratio, max=clip_max)
    return ratio.masked_fill(ratio > clip_max, 0.0)


def _verl_token_tis(old, rollout, mask, threshold):
    # verl compute_rollout_correction_weights(rollout_is="token")
    ratio = torch.exp(torch.clamp(old - rollout, -20.0, 20.0)) * mask
    return ratio.clamp(max=threshold)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("mode", "level", "trl_mode"), [("tis", "token", "token_truncate"),
                                                         ("mis", "token", "token_mask"),
                                                         ("tis", "sequence", "sequence_truncate"),
                                                         ("mis", "sequence", "sequence_mask")])
def test_equals_trl(seed, mode, level, trl_mode):
    gen = torch.Generator().manual_seed(seed)
    trainer = -torch.rand(4, 6, generator=gen, dtype=torch.float64) * 3
    sampler = trainer + torch.randn(4, 6, generator=gen, dtype=torch.float64) * 0.3
    mask = (torch.arange(6) < torch.randint(1, 7, (4, 1), generator=gen)).double()
    ours, _ = rollout_correction_weights(trainer, sampler, mask, mode, cap=1.5, level=level)
    theirs = _trl_vllm_is(trainer, sampler, mask, trl_mode, 1.5).expand(4, 6) * mask  # TRL masks in the loss
    torch.testing.assert_close(ours, theirs)
    if (mode, level) == ("tis", "token"):
        torch.testing.assert_close(ours, _verl_token_tis(trainer, sampler, mask, 1.5))


def test_weights_are_detached_and_padding_garbage_is_ignored():
    trainer = torch.tensor([[-1.0, NAN]], requires_grad=True)
    weights, _ = rollout_correction_weights(trainer, torch.tensor([[-1.2, float("inf")]]), torch.tensor([[1, 0]]))
    assert not weights.requires_grad and torch.isfinite(weights).all()


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "clip"}, "rollout correction"),
                                               ({"level": "batch"}, "level"),
                                               ({"cap": 0.0}, "cap")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rollout_correction_weights(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), **kwargs)
    with pytest.raises(ValueError, match="sampler_logprobs shape"):
        rollout_mismatch(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))


def test_tiny_mismatch_gives_a_non_negative_kl():
    # float rounding (1e-6 nats): k3 is ~5e-13 per token and must not come out negative
    trainer = -torch.rand(4, 50, generator=torch.Generator().manual_seed(3))
    sampler = trainer + (torch.rand(4, 50, generator=torch.Generator().manual_seed(4)) - 0.5) * 2e-6
    kl = rollout_mismatch(trainer, sampler, torch.ones(4, 50))["kl_sampler_trainer"].item()
    assert 0 <= kl < 1e-11
