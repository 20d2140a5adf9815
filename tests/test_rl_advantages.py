"""Group advantages, success rates and zero-variance groups, against hand-computed values."""

import math

import pytest
import torch

from mmdps.rl import group_advantages, group_success_rates, zero_variance_mask
from mmdps.verifiers import success_rate

# Three prompts, k = 4 rollouts each, group-contiguous.
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])


def test_grpo_unbiased_std_by_hand():
    # group 0: mean .5, deviations +-.5, unbiased var = 4 * .25 / 3 = 1/3 -> A = .5 * sqrt(3) = .8660254
    # group 1: all equal -> 0
    # group 2: mean .25, deviations (-.25, -.25, .75, -.25), var = .75 / 3 = .25, std .5 -> (-.5, -.5, 1.5, -.5)
    a = 0.8660254
    expected = torch.tensor([a, -a, -a, a, 0, 0, 0, 0, -0.5, -0.5, 1.5, -0.5])
    torch.testing.assert_close(group_advantages(REWARDS, 4, eps=0.0), expected)


def test_grpo_default_eps_is_added_to_std():
    adv = group_advantages(REWARDS, 4)
    assert adv[0].item() == pytest.approx(0.5 / (math.sqrt(1 / 3) + 1e-6), rel=1e-6)


def test_grpo_population_std_by_hand():
    # group 0: population std .5 -> +-1; group 2: var .75 / 4 = .1875, std .4330127 -> -.57735, 1.7320508
    expected = torch.tensor([1.0, -1, -1, 1, 0, 0, 0, 0, -0.5773503, -0.5773503, 1.7320508, -0.5773503])
    torch.testing.assert_close(group_advantages(REWARDS, 4, eps=0.0, unbiased=False), expected)


def test_dr_grpo_is_centred_not_scaled():
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, -0.25, -0.25, 0.75, -0.25])
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale_std=False), expected)


@pytest.mark.parametrize("scale_std", [True, False])
def test_zero_variance_groups_get_exactly_zero(scale_std):
    # 0.7 and 0.1 are not exactly representable: a plain (r - mean) could leave rounding residue.
    rewards = torch.tensor([0.7, 0.7, 0.7, 0.1, 0.1, 0.1, 0.2, 0.9, 0.9])
    adv = group_advantages(rewards, 3, scale_std=scale_std)
    assert torch.equal(adv[:6], torch.zeros(6))
    assert (adv[6:] != 0).all()


def test_dtypes():
    assert group_advantages(REWARDS.double(), 4).dtype == torch.float64
    as_int = group_advantages(REWARDS.long(), 4)
    assert as_int.dtype == torch.float32
    torch.testing.assert_close(as_int, group_advantages(REWARDS, 4))
    torch.testing.assert_close(group_advantages(REWARDS.bool(), 4), group_advantages(REWARDS, 4))


def test_advantages_carry_no_gradient():
    rewards = REWARDS.clone().requires_grad_(True)
    assert not group_advantages(rewards, 4).requires_grad


def test_zero_variance_mask_and_success_rates():
    assert zero_variance_mask(REWARDS, 4).tolist() == [False, True, False]
    with pytest.deprecated_call():
        torch.testing.assert_close(group_success_rates(REWARDS, 4), torch.tensor([0.5, 1.0, 0.25]))
    # partial credit: mean is (1 + .5 + 0 + 1) / 4 = .625, but only 2 of 4 reach acc >= 1
    acc = torch.tensor([1.0, 0.5, 0.0, 1.0])
    with pytest.deprecated_call():
        torch.testing.assert_close(group_success_rates(acc, 4), torch.tensor([0.625]))
        torch.testing.assert_close(group_success_rates(acc, 4, threshold=1.0), torch.tensor([0.5]))
    assert success_rate(acc.tolist()) == 0.5  # the one definition: acc >= 1 counts as correct


# Groups of different sizes: rewards of a 2-group, a 3-group and a 4-group, with hand-computed advantages.
RAGGED = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0])
SIZES = [2, 3, 4]


def test_ragged_grpo_by_hand():
    adv = group_advantages(RAGGED, SIZES)
    # group 1: mean .5, unbiased std sqrt(.5); group 2: mean 2/3, std sqrt(1/3); group 3: constant
    s1, s2 = math.sqrt(0.5), math.sqrt(1 / 3)
    expected = [0.5 / s1, -0.5 / s1, (1 / 3) / s2, (1 / 3) / s2, (-2 / 3) / s2, 0, 0, 0, 0]
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_ragged_rloo_and_dr_grpo_by_hand():
    rloo = group_advantages(RAGGED, SIZES, estimator="rloo")
    # RLOO: r_i minus the mean of the other k - 1 rewards of its own group
    expected = [1.0, -1.0, 1 - 0.5, 1 - 0.5, 0 - 1.0, 0, 0, 0, 0]
    torch.testing.assert_close(rloo, torch.tensor(expected))
    dr = group_advantages(RAGGED, SIZES, scale_std=False)
    torch.testing.assert_close(dr, torch.tensor([0.5, -0.5, 1 / 3, 1 / 3, -2 / 3, 0, 0, 0, 0]))
    assert zero_variance_mask(RAGGED, SIZES).tolist() == [False, False, True]


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "reinforce_pp"])
def test_equal_sizes_give_exactly_the_fixed_k_result(estimator):
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5])
    assert torch.equal(group_advantages(rewards, [4, 4], estimator=estimator),
                       group_advantages(rewards, 4, estimator=estimator))


@pytest.mark.parametrize(("sizes", "match"), [([2, 3], "sum to"), ([1, 8], ">= 2"), ([0, 9], "positive")])
def test_ragged_bad_sizes(sizes, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(RAGGED, sizes)


@pytest.mark.parametrize(
    ("rewards", "group_size", "match"),
    [
        (torch.ones(6), 4, "multiple of group_size"),
        (torch.ones(0), 2, "multiple of group_size"),
        (torch.ones(2, 4), 4, "1-D"),
        (torch.ones(4), 1, ">= 2"),
        (torch.ones(4), 0, ">= 2"),
        (torch.tensor([1.0, float("nan")]), 2, "NaN or inf"),
    ],
)
def test_bad_input_raises(rewards, group_size, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, group_size)


def test_bad_group_size_type_raises():
    with pytest.raises(ValueError, match="positive int"):
        zero_variance_mask(REWARDS, 2.0)
    with pytest.raises(ValueError, match="positive int"), pytest.deprecated_call():
        group_success_rates(REWARDS, 0)
