"""RLOO, REINFORCE++ and batch-scaled GRPO advantages: by hand, and against verl's / TRL's formulas.

The reference functions below restate, in plain loops, what verl (core_algos.py at b178a3c) and
TRL (grpo_trainer.py, 1.x) compute, so a change of convention on either side shows up here.
"""

import pytest
import torch

from mmdps.rl import ADVANTAGE_ESTIMATORS, group_advantages

# Three prompts, k = 4 rollouts each, group-contiguous (the same rewards as test_rl_advantages.py).
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])


def test_rloo_by_hand():
    # group 0: A = 1 - mean(0, 0, 1) = 2/3 and 0 - mean(1, 0, 1) = -2/3; group 2: 1 - 0 = 1, 0 - 1/3
    third = 1 / 3
    expected = torch.tensor([2 * third, -2 * third, -2 * third, 2 * third, 0, 0, 0, 0, -third, -third, 1, -third])
    torch.testing.assert_close(group_advantages(REWARDS, 4, estimator="rloo"), expected)


def test_reinforce_pp_by_hand():
    # centred: (.5, -.5, -.5, .5, 0 x4, -.25, -.25, .75, -.25); sum of squares 1.75, unbiased var 1.75 / 11
    std = (1.75 / 11) ** 0.5
    centred = torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, -0.25, -0.25, 0.75, -0.25])
    torch.testing.assert_close(group_advantages(REWARDS, 4, estimator="reinforce_pp", eps=0.0), centred / std)


def test_batch_scaled_grpo_by_hand():
    # the std of the raw rewards: 7 ones and 5 zeros, unbiased var = 12 * (7/12) * (5/12) / 11 = 35 / 132
    std = (35 / 132) ** 0.5
    centred = torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, -0.25, -0.25, 0.75, -0.25])
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale_std="batch", eps=0.0), centred / std)


def _verl_rloo(scores: torch.Tensor, k: int) -> torch.Tensor:
    # verl compute_rloo_outcome_advantage: r * n / (n - 1) - mean * n / (n - 1)
    out = scores.clone()
    for g in range(len(scores) // k):
        group = scores[g * k:(g + 1) * k]
        for j in range(k):
            out[g * k + j] = group[j] * k / (k - 1) - group.mean() * k / (k - 1)
    return out


def _verl_reinforce_pp_baseline(scores: torch.Tensor, k: int, length: int) -> torch.Tensor:
    # verl compute_reinforce_plus_plus_baseline_outcome_advantage: group mean subtracted, broadcast
    # over the response tokens, then masked_whiten over every token (mean shifted, Bessel variance).
    centred = scores.view(-1, k) - scores.view(-1, k).mean(dim=1, keepdim=True)
    tokens = centred.reshape(-1, 1).expand(-1, length)
    mean = tokens.mean()
    var = ((tokens - mean) ** 2).sum() / (tokens.numel() - 1)
    return ((tokens - mean) * torch.rsqrt(var + 1e-8))[:, 0]


def _trl_batch_scaled(rewards: torch.Tensor, k: int) -> torch.Tensor:
    # TRL scale_rewards="batch": (r - group mean) / (std of all rewards + 1e-4)
    mean = rewards.view(-1, k).mean(dim=1).repeat_interleave(k)
    return (rewards - mean) / (rewards.std() + 1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_rloo_equals_verl(seed):
    rewards = torch.rand(24, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(group_advantages(rewards, 6, estimator="rloo"), _verl_rloo(rewards, 6))


@pytest.mark.parametrize("seed", range(3))
def test_reinforce_pp_equals_verl_for_one_token_responses(seed):
    # verl whitens over tokens; with one token per response that is exactly the per-rollout whitening
    # (its batch mean of group-centred values is 0 up to rounding).
    rewards = torch.rand(32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ours = group_advantages(rewards, 8, estimator="reinforce_pp", eps=0.0)
    torch.testing.assert_close(ours, _verl_reinforce_pp_baseline(rewards, 8, length=1), rtol=1e-6, atol=1e-6)


def test_reinforce_pp_differs_from_verl_when_responses_are_longer():
    # With T > 1 tokens per response verl's Bessel correction runs over N * T tokens: same direction,
    # a scale of sqrt((N T - 1) / ((N - 1) T)) apart. mmdps normalises per rollout, as the paper writes it.
    rewards = torch.rand(16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ours = group_advantages(rewards, 4, estimator="reinforce_pp", eps=0.0)
    theirs = _verl_reinforce_pp_baseline(rewards, 4, length=3)
    scale = ((16 * 3 - 1) / (15 * 3)) ** 0.5
    torch.testing.assert_close(theirs, ours * scale, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_batch_scaled_grpo_equals_trl(seed):
    rewards = (torch.rand(24, generator=torch.Generator().manual_seed(seed)) > 0.5).float()
    torch.testing.assert_close(group_advantages(rewards, 4, scale_std="batch", eps=1e-4),
                               _trl_batch_scaled(rewards, 4))


@pytest.mark.parametrize("estimator", ADVANTAGE_ESTIMATORS)
def test_zero_variance_groups_get_exactly_zero(estimator):
    rewards = torch.tensor([0.7, 0.7, 0.7, 0.1, 0.1, 0.1, 0.2, 0.9, 0.9])
    adv = group_advantages(rewards, 3, estimator=estimator)
    assert torch.equal(adv[:6], torch.zeros(6))
    assert (adv[6:] != 0).all()


def test_all_constant_batch_gives_zeros_not_nan():
    for estimator in ADVANTAGE_ESTIMATORS:
        assert torch.equal(group_advantages(torch.ones(8), 4, estimator=estimator), torch.zeros(8))
    assert torch.equal(group_advantages(torch.ones(8), 4, scale_std="batch"), torch.zeros(8))


def test_scale_std_spellings():
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale_std="group"), group_advantages(REWARDS, 4))
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale_std="none"),
                               group_advantages(REWARDS, 4, scale_std=False))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"estimator": "ppo"}, "unknown advantage estimator"),
        ({"scale_std": "prompt"}, "scale_std must be"),
        ({"estimator": "rloo", "scale_std": True}, "applies to estimator 'grpo' only"),
        ({"estimator": "reinforce_pp", "scale_std": "batch"}, "applies to estimator 'grpo' only"),
    ],
)
def test_bad_estimator_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(REWARDS, 4, **kwargs)
