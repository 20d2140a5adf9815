"""Rollouts per prompt from the selector's prediction: the allocation math against hand computations, and the
selectors with groups of different sizes (ragged rewards, DPS's weak evidence, predict)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmdps.config import GRPOConfig
from mmdps.selection import make_selector
from mmdps.selection.allocation import (
    AllocationSettings,
    allocate,
    allocation_metrics,
    allocation_settings,
    beta_signal_table,
    partial_degenerate_probability,
    predicted_plan,
    state_signal_table,
    until_signal_round,
    value_table,
)
from mmdps.selection.base import check_rewards


# ---------------------------------------------------------------------- P(signal | k)
def test_partial_degenerate_probability_by_hand():
    # q(k) = (K - k) / ((k + 1)(K - 1)), K = 8
    q = partial_degenerate_probability(np.array([1, 2, 4, 7, 8, 12]), 8)
    np.testing.assert_allclose(q, [1 / 2, 6 / 21, 4 / 35, 1 / 56, 0.0, 0.0])
    # the same from its definition: (P(first k wrong) - P(all K wrong)) / P(K mixed) with p ~ U(0, 1)
    k, big = 3, 8
    assert q[0] != 0 and partial_degenerate_probability(k, big) == pytest.approx(
        (1 / (k + 1) - 1 / (big + 1)) / ((big - 1) / (big + 1)))
    with pytest.raises(ValueError, match="reference_k"):
        partial_degenerate_probability(2, 1)


def test_state_signal_table_by_hand():
    table = state_signal_table(np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]), k_max=5, reference_k=4)
    # K = 4: q(2) = 2/9, q(3) = 1/12, q(>=4) = 0; P(signal) = P(partial) (1 - 2q)
    np.testing.assert_allclose(table[0], [0, 0, 0.5 * 5 / 9, 0.5 * 5 / 6, 0.5, 0.5])
    np.testing.assert_array_equal(table[1], np.zeros(6))
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        state_signal_table(np.ones((2, 2)), 4, 4)


def test_beta_signal_table_by_hand():
    table = beta_signal_table(np.array([1.0, 2.0]), np.array([1.0, 1.0]), k_max=3)
    # Beta(1, 1): P(mixed of k) = (k - 1) / (k + 1)
    np.testing.assert_allclose(table[0], [0, 0, 1 / 3, 1 / 2])
    # Beta(2, 1): E[p^2] = 2/3 * 3/4 = 1/2, E[(1-p)^2] = 1/3 * 2/4 = 1/6 -> 1/3;
    # E[p^3] = 1/2 * 4/5 = 2/5, E[(1-p)^3] = 1/6 * 3/5 = 1/10 -> 1/2
    np.testing.assert_allclose(table[1], [0, 0, 1 / 3, 1 / 2])


def test_value_table_objectives():
    signal = np.array([[0, 0, 0.5, 0.6]])
    np.testing.assert_array_equal(value_table(signal, "groups"), signal)
    np.testing.assert_allclose(value_table(signal, "rollouts"), [[0, 0, 1.0, 1.8]])
    with pytest.raises(ValueError, match="objective"):
        value_table(signal, "tokens")


# ---------------------------------------------------------------------- the split
def _table(partial: list[float], k_max: int = 4, reference_k: int = 4) -> np.ndarray:
    probs = np.array([[(1 - m) / 2, m, (1 - m) / 2] for m in partial])
    return state_signal_table(probs, k_max, reference_k)


def test_allocate_by_hand():
    # P(partial) 0.9, 0.5, 0.05 at K = 4: values 0.9 x (0, 0, 5/9, 5/6, 1), ...
    values = _table([0.9, 0.5, 0.05])
    # budget 6: (4, 2, 0) = 0.9 + 0.5*5/9 = 1.178 beats (3, 3, 0) = 1.167 and (2, 2, 2) = 0.806
    np.testing.assert_array_equal(allocate(values, 6, 2, 4), [4, 2, 0])
    # budget 5: (3, 2, 0) = 0.75 + 0.278 beats (2, 3, 0) = 0.5 + 0.417
    np.testing.assert_array_equal(allocate(values, 5, 2, 4), [3, 2, 0])
    np.testing.assert_array_equal(allocate(values, 0, 2, 4), [0, 0, 0])
    with pytest.raises(ValueError, match="cannot split 1 rollouts"):
        allocate(values, 1, 2, 4)
    with pytest.raises(ValueError, match="cannot split 13 rollouts"):
        allocate(values, 13, 2, 4)  # 3 prompts x k_max 4 = 12 at most


def test_allocate_ties_go_to_more_prompts_then_to_the_earlier_prompt():
    # equal predictions at K = 8: P(2)/2 = P(3) - P(2) exactly, so (2, 2, 2) and (3, 3, 0) tie in value
    values = _table([0.4, 0.4, 0.4], k_max=8, reference_k=8)
    assert values[0, 2] * 3 == pytest.approx(values[0, 3] * 2)
    np.testing.assert_array_equal(allocate(values, 6, 2, 8), [2, 2, 2])  # more distinct prompts
    np.testing.assert_array_equal(allocate(values[:2], 5, 2, 8), [3, 2])  # then the earlier prompt gets more
    np.testing.assert_array_equal(allocate(values[:2], 5, 2, 8), allocate(values[:2], 5, 2, 8))


@pytest.mark.parametrize("seed", range(6))
def test_allocate_is_optimal_exact_and_within_bounds(seed):
    rng = np.random.default_rng(seed)
    n, k_min, k_max = 4, 2, 5
    values = np.sort(rng.random((n, k_max + 1)), axis=1)
    values[:, :2] = 0.0
    budget = int(rng.integers(2, n * k_max + 1))
    choices = [0, *range(k_min, k_max + 1)]
    feasible = [combo for combo in itertools.product(choices, repeat=n) if sum(combo) == budget]
    if not feasible:
        with pytest.raises(ValueError):
            allocate(values, budget, k_min, k_max)
        return
    best = max(sum(values[i, k] for i, k in enumerate(combo)) for combo in feasible)
    sizes = allocate(values, budget, k_min, k_max)
    assert sizes.sum() == budget
    assert all(k == 0 or k_min <= k <= k_max for k in sizes)
    assert sum(values[i, k] for i, k in enumerate(sizes)) == pytest.approx(best, abs=1e-8)


def test_allocate_refuses_bad_input():
    with pytest.raises(ValueError, match="shape"):
        allocate(np.zeros((2, 3)), 4, 2, 4)
    with pytest.raises(ValueError, match="NaN"):
        allocate(np.full((2, 5), np.nan), 4, 2, 4)


def test_until_signal_round_by_hand():
    extra = until_signal_round(np.array([2, 2, 2, 4]), np.array([True, False, False, False]), round_k=2, k_max=4,
                               budget_left=3)
    np.testing.assert_array_equal(extra, [0, 2, 1, 0])  # prompt 3 is at k_max; the budget ends inside prompt 2
    # a prompt is never left at one rollout
    np.testing.assert_array_equal(until_signal_round(np.array([0]), np.array([False]), round_k=2, k_max=4,
                                                     budget_left=1), [0])
    np.testing.assert_array_equal(until_signal_round(np.array([4, 3]), np.array([False, False]), round_k=2,
                                                     k_max=4, budget_left=10), [0, 1])


def test_allocation_metrics_by_hand():
    out = allocation_metrics(np.array([2, 2, 8]), candidates=6, signal=np.array([True, False, True]), rounds=1)
    assert out["allocation/k_mean"] == 4 and out["allocation/k_max"] == 8 and out["allocation/k_min"] == 2
    assert out["allocation/k0_share"] == 0.5 and out["allocation/distinct_prompts"] == 3
    assert out["allocation/informative_rollout_share"] == pytest.approx(10 / 12)
    assert out["allocation/k_2_3_share"] == pytest.approx(2 / 3)
    assert out["allocation/k_8_15_share"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------------- settings and config
def test_allocation_settings_defaults_and_errors():
    settings = allocation_settings("predicted", {}, k=8)
    assert (settings.k_min, settings.k_max, settings.candidates, settings.round_k) == (2, 16, 4.0, 2)
    assert settings.budget(3) == 24 and settings.num_candidates(3, 100) == 12 and settings.num_candidates(3, 5) == 5
    assert allocation_settings("fixed", None, k=8) == AllocationSettings(mode="fixed", k=8, k_min=8, k_max=8,
                                                                         candidates=1.0, round_k=8)
    for mode, kwargs, match in [
        ("fixed", {"k_max": 4}, "apply to rollout_allocation=predicted or until_signal only"),
        ("predicted", {"k_min": 1}, r"k_min must be an integer >= 2 \(one rollout has no group baseline\)"),
        ("predicted", {"k_max": 4}, "k_max=4 is below num_generations=8"),
        ("until_signal", {"round_k": 10}, "round_k=10 is above num_generations=8"),
        ("predicted", {"candidates": 0.5}, "candidates must be a number >= 1"),
        ("predicted", {"objective": "x"}, "objective must be one of groups, rollouts"),
        ("predicted", {"kmax": 4}, "unknown key"),
        ("adaptive", {}, "rollout_allocation must be one of fixed, predicted, until_signal"),
    ]:
        with pytest.raises(ValueError, match=match):
            allocation_settings(mode, kwargs, k=8)


def test_config_refuses_refill_selectors_and_mini_batches_with_allocation():
    base = dict(model_name_or_path="tiny:qwen2", batch_size=4)
    assert GRPOConfig(**base).rollout_allocation == "fixed"
    GRPOConfig(**base, rollout_allocation="predicted", allocation_kwargs={"k_max": 8})
    with pytest.raises(ValueError, match="does not combine with selector='ds'"):
        GRPOConfig(**base, selector="ds", rollout_allocation="until_signal")
    with pytest.raises(ValueError, match="mini_batch_size=2"):
        GRPOConfig(**base, mini_batch_size=2, rollout_allocation="predicted")
    with pytest.raises(ValueError, match="allocation_kwargs"):
        GRPOConfig(**base, allocation_kwargs={"k_max": 8})


# ---------------------------------------------------------------------- the selectors
def test_predicted_plan_spends_the_budget_exactly_and_uniform_keeps_k():
    settings = allocation_settings("predicted", {"k_max": 8}, k=4)
    dps = make_selector("dps", 50, rollouts_per_prompt=4)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ids, sizes, candidates = predicted_plan(dps, 5, settings)
        assert sizes.sum() == 20 and sizes.min() >= 2 and sizes.max() <= 8 and candidates == 10
        assert np.unique(ids).size == ids.size
        dps.update(ids, rng.choice([0.0, 0.5, 1.0], ids.size), rewards=[rng.integers(0, 2, k) for k in sizes])
    ids, sizes, candidates = predicted_plan(make_selector("uniform", 50), 5, settings)
    assert ids.size == 5 == candidates and (sizes == 4).all()


def test_predict_exposes_the_prediction_of_the_selected_ids():
    dps = make_selector("dps", 10, rollouts_per_prompt=4)
    dps.update(np.array([3]), np.array([0.5]))
    np.testing.assert_allclose(dps.predict(np.array([3, 4])), dps.predicted_state_probs()[[3, 4]])
    mopps = make_selector("mopps", 10, rollouts_per_prompt=4)
    mopps.update(np.array([2]), np.array([0.75]))
    np.testing.assert_allclose(mopps.predict(np.array([2, 0])), [4 / 6, 0.5])  # Beta(1 + 3, 1 + 1), Beta(1, 1)
    np.testing.assert_allclose(mopps.signal_probability(np.array([0]), 3), [[0, 0, 1 / 3, 1 / 2]])
    assert make_selector("uniform", 10).predict(np.array([1])) is None
    assert make_selector("cdas", 10).signal_probability(np.array([1]), 4) is None


def test_ragged_rewards_are_checked_and_equal_sizes_are_stacked():
    stacked = check_rewards([np.array([1.0, 0.0]), [0.0, 0.0]], 2)
    assert isinstance(stacked, np.ndarray) and stacked.shape == (2, 2)
    ragged = check_rewards([np.array([1.0, 0.0]), [0.0, 0.0, 1.0]], 2)
    assert isinstance(ragged, list) and [r.size for r in ragged] == [2, 3]
    for rewards, match in [([np.ones(2)], "one group per id"), ([np.ones(2), np.ones((2, 2))], r"rewards\[1\]"),
                           ([np.ones(2), np.array([np.nan])], r"rewards\[1\] contains NaN"),
                           ([np.ones(2), np.array([])], r"rewards\[1\] must be a non-empty")]:
        with pytest.raises(ValueError, match=match):
            check_rewards(rewards, 2)


def test_mopps_dopr_and_ds_count_each_group_at_its_own_size():
    mopps = make_selector("mopps", 5, rollouts_per_prompt=8)
    mopps.update(np.array([0, 1]), np.array([0.5, 0.75]), rewards=[np.array([1.0, 0.0]), np.array([1.0, 1, 1, 0])])
    alpha, beta = mopps.posterior()
    np.testing.assert_allclose(alpha[:2], [2.0, 4.0])  # 1 + 0.5 x 2, 1 + 0.75 x 4
    np.testing.assert_allclose(beta[:2], [2.0, 2.0])
    dopr = make_selector("dopr", 5)
    dopr.update(np.array([0, 1]), np.array([0.5, 0.0]), rewards=[np.array([1.0, 0.0]), np.array([0.5, 0, 0])])
    np.testing.assert_allclose(dopr.reward_count[:2], [2, 3])
    np.testing.assert_allclose(dopr.reward_sum[:2], [1.0, 0.5])
    np.testing.assert_allclose(dopr.reward_sq_sum[:2], [1.0, 0.25])
    ds = make_selector("ds", 5, rollouts_per_prompt=8)
    ds.update(np.array([0, 1]), np.array([0.5, 0.0]), rewards=[np.array([1.0, 0.0]), np.zeros(5)])
    assert ds.diagnostics()["rollouts_spent"] == 7


def _dps_arrays(sel) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in sel._export_arrays().items()}


def test_dps_with_equal_k_is_bit_identical_to_the_paper_update():
    rng = np.random.default_rng(1)
    plain = make_selector("dps", 40, seed=3)  # no reference k, no rewards: every observation exact
    sized = make_selector("dps", 40, seed=3, rollouts_per_prompt=4)
    for _ in range(6):
        ids = plain.select(8)
        np.testing.assert_array_equal(ids, sized.select(8))
        rewards = rng.integers(0, 2, size=(8, 4)).astype(float)
        rates = rewards.mean(axis=1)
        plain.update(ids, rates)
        sized.update(ids, rates, rewards=list(rewards))  # one array per group, all of size 4
    for key, value in _dps_arrays(plain).items():
        np.testing.assert_array_equal(value, _dps_arrays(sized)[key], err_msg=key)


def test_dps_small_degenerate_groups_are_weak_evidence():
    dps = make_selector("dps", 5, rollouts_per_prompt=8)
    # all wrong with k = 2 from the uniform start: L = (1, q(2) = 2/7, 0), posterior (7/9, 2/9, 0); with alpha0
    # all ones every column of the new mean matrix is (1 + 7/27, 1 + 2/27, 1) / (10/3) = (34, 29, 27) / 90
    dps.update(np.array([0]), np.array([0.0]), rewards=[np.zeros(2)])
    np.testing.assert_allclose(dps.predict(np.array([0]))[0], np.array([34, 29, 27]) / 90)
    np.testing.assert_allclose(dps.transition_counts(np.array([0]))[0], 1 + np.array([[7, 7, 7], [2, 2, 2],
                                                                                      [0, 0, 0]]) / 27)
    # the same outcome with k = 8 is the paper's exact observation: (0.4, 0.3, 0.3)
    exact = make_selector("dps", 5, rollouts_per_prompt=8)
    exact.update(np.array([0]), np.array([0.0]), rewards=[np.zeros(8)])
    np.testing.assert_allclose(exact.predict(np.array([0]))[0], [0.4, 0.3, 0.3])
    # a mixed group of any size is exact evidence of "partial": the first DPS observation, (0.3, 0.4, 0.3)
    mixed = make_selector("dps", 5, rollouts_per_prompt=8)
    mixed.update(np.array([0, 1]), np.array([0.5, 1.0]), rewards=[np.array([1.0, 0.0]), np.ones(3)])
    np.testing.assert_allclose(mixed.predict(np.array([0]))[0], [0.3, 0.4, 0.3])
    # all right with k = 3: q(3) = 5/28, soft counts 5/99 (partial) and 28/99 (solved) per column
    np.testing.assert_allclose(mixed.predict(np.array([1]))[0], np.array([99, 104, 127]) / 330)


def _reference_dps_with_likelihood(n, decay, alpha0, pi0, reference_k, steps):
    """Per-prompt loop of the filter with an observation likelihood (docs/selection.md), no vectorisation:
    L = onehot(state) for a mixed group or one of >= K rollouts, else (1, q(k), 0) / (0, q(k), 1)."""
    alpha = [alpha0.copy() for _ in range(n)]
    prior = [pi0.copy() for _ in range(n)]
    last = [pi0.copy() for _ in range(n)]
    for ids, rates, sizes in steps:
        seen = {int(i): (s, k) for i, s, k in zip(ids, rates, sizes, strict=True)}
        for p in range(n):
            mean = alpha[p] / alpha[p].sum(axis=0, keepdims=True)
            if p in seen:
                s, k = seen[p]
                state = 0 if s == 0 else 2 if s == 1 else 1
                likelihood = np.eye(3)[state]
                if state != 1 and k < reference_k:
                    likelihood[1] = (reference_k - k) / ((k + 1) * (reference_k - 1))
                xi = likelihood[:, None] * mean * last[p][None, :]
                if xi.sum() <= 0:
                    xi = likelihood[:, None] * last[p][None, :]
                xi = xi / xi.sum()
                post = xi.sum(axis=1)
            else:
                post, xi = prior[p], np.zeros((3, 3))
            alpha[p] = decay * alpha[p] + (1 - decay) * alpha0 + xi
            nxt = alpha[p] / alpha[p].sum(axis=0, keepdims=True) @ post
            prior[p], last[p] = nxt / nxt.sum(), post
    return np.array(prior), np.array(alpha)


@pytest.mark.parametrize("decay,prior_alpha", [(0.5, 1.0), (0.7, "progress"), (0.3, "local"), (1.0, 2.0)])
def test_dps_with_groups_of_different_sizes_matches_a_per_prompt_reference(decay, prior_alpha):
    rng = np.random.default_rng(7)
    n, big = 30, 6
    sel = make_selector("dps", n, {"decay": decay, "prior_alpha": prior_alpha}, rollouts_per_prompt=big)
    steps = []
    for _ in range(25):
        ids = rng.choice(n, size=rng.integers(0, 10), replace=False)
        sizes = rng.integers(2, 10, size=ids.size)
        wins = rng.binomial(sizes, rng.choice([0.0, 0.3, 1.0], size=ids.size))
        rewards = [np.r_[np.ones(w), np.zeros(k - w)] for w, k in zip(wins, sizes, strict=True)]
        sel.update(ids, wins / sizes, rewards=rewards)
        steps.append((ids, wins / sizes, sizes))
    prior, alpha = _reference_dps_with_likelihood(n, decay, sel.alpha0, sel.pi0, big, steps)
    np.testing.assert_allclose(sel.predicted_state_probs(), prior, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sel.transition_counts(np.arange(n)), alpha, rtol=0, atol=1e-9)
