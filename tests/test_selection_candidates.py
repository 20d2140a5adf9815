"""Candidate batches (candidate_ratio), the data diagnostics every selector keeps, and the DPS options
that trade selectivity for diversity (strategy='sample', max_consecutive)."""

from __future__ import annotations

import numpy as np
import pytest

from mmdps.selection import DPSSelector, MoPPSSelector, make_selector
from mmdps.selection.history import REPEAT_WINDOW


def feed(selector, ids, rates):
    selector.update(np.asarray(ids), np.asarray(rates, dtype=float))


def test_candidates_are_a_seeded_shuffled_pass_shared_by_selectors():
    dps = DPSSelector(20, seed=3, candidate_ratio=2.5)
    mopps = MoPPSSelector(20, seed=3, candidate_ratio=2.5)
    reference = np.random.default_rng([3, 0x43414E44]).permutation(20)
    for step in range(2):  # 2 x ceil(2.5 * 4) = 20: one full pass
        batch = dps.select(4)
        chosen = mopps.select(4)
        window = set(reference[step * 10:(step + 1) * 10].tolist())
        assert set(batch.tolist()) <= window and set(chosen.tolist()) <= window
        feed(dps, batch, [0.5] * 4)
        feed(mopps, chosen, [0.5] * 4)
    assert dps.candidate_sampler.epoch == 1 and dps.candidate_sampler.position == 20
    dps.select(4)
    assert dps.candidate_sampler.epoch == 2  # the next pass starts with a fresh shuffle


def test_candidate_stream_is_restored_from_state_dict():
    a = DPSSelector(50, seed=1, candidate_ratio=3.0, decay=0.7)
    for _ in range(3):
        ids = a.select(4)
        feed(a, ids, np.linspace(0, 1, 4))
        a.record_trained(ids)
    b = DPSSelector(50, seed=1, candidate_ratio=3.0, decay=0.7)
    b.load_state_dict(a.state_dict())
    for _ in range(4):
        ids = a.select(4)
        np.testing.assert_array_equal(b.select(4), ids)
        feed(a, ids, [0.0, 0.5, 1.0, 0.5])
        feed(b, ids, [0.0, 0.5, 1.0, 0.5])
    assert b.training_diagnostics() == a.training_diagnostics()
    with pytest.raises(ValueError, match="candidate_ratio"):
        DPSSelector(50, seed=1, candidate_ratio=2.0).load_state_dict(a.state_dict())


def test_candidate_ratio_checks():
    for bad in (0.5, float("nan"), True, "4"):
        with pytest.raises(ValueError, match="candidate_ratio"):
            DPSSelector(10, candidate_ratio=bad)
    with pytest.raises(ValueError, match="does not rank candidates"):
        make_selector("uniform", 10, candidate_ratio=2)
    assert make_selector("uniform", 10, candidate_ratio=None).name == "uniform"
    # a ratio whose candidate batch covers the pool ranks the whole pool
    whole = DPSSelector(10, candidate_ratio=8.0)
    assert whole.select(2).size == 2 and whole.candidate_sampler.epoch == 0


def test_history_counts_distinct_prompts_repeats_and_visits():
    sel = make_selector("uniform", 100)
    batches = [[0, 1, 2, 3], [4, 5, 0, 1], [6, 7, 8, 9], [10, 11, 12, 13], [14, 15, 16, 17], [18, 19, 20, 21],
               [2, 22, 23, 24]]
    for step, ids in enumerate(batches):
        sel.record_trained(np.array(ids))
        diag = sel.training_diagnostics()
        recent = {i for b in batches[max(0, step - REPEAT_WINDOW):step] for i in b}
        assert diag["prompts/repeat_share"] == np.mean([i in recent for i in ids])
    assert REPEAT_WINDOW == 5 and diag["prompts/repeat_share"] == 0.0  # prompt 2 was last trained 6 steps ago
    assert diag["prompts/distinct_total"] == 25 and diag["prompts/mean_visits"] == pytest.approx(28 / 25)
    sel.record_trained(np.array([30, 30, 2]))  # DS refills may bring a prompt twice: it counts once
    assert sel.training_diagnostics()["prompts/distinct_total"] == 26
    assert sel.training_diagnostics()["prompts/repeat_share"] == 0.5


def test_sample_strategy_draws_in_proportion_to_predicted_partial():
    sel = DPSSelector(3, strategy="sample", seed=0)
    feed(sel, [0, 1], [0.5, 0.0])  # prompt 0 looks partial, prompt 1 unsolved, prompt 2 unseen
    weights = sel.predicted_state_probs()[:, 1]
    draws = np.bincount([int(sel.select(1)[0]) for _ in range(20_000)], minlength=3) / 20_000
    np.testing.assert_allclose(draws, weights / weights.sum(), atol=0.015)
    # a low temperature concentrates on the most likely partial prompt, like top-k
    sharp = DPSSelector(3, strategy="sample", temperature=0.02, seed=0)
    feed(sharp, [0, 1], [0.5, 0.0])
    assert all(sharp.select(1)[0] == 0 for _ in range(50))
    with pytest.raises(ValueError, match="temperature"):
        DPSSelector(3, strategy="sample", temperature=0.0)


@pytest.mark.parametrize("strategy", ["topk", "sample"])
@pytest.mark.parametrize("ratio", [None, 2.0])
def test_max_consecutive_keeps_a_prompt_out_after_a_streak(strategy, ratio):
    sel = DPSSelector(8, max_consecutive=2, strategy=strategy, temperature=0.05, seed=0, candidate_ratio=ratio)
    streak = np.zeros(8, dtype=int)
    for _ in range(12):
        ids = sel.select(2)
        assert not (streak[ids] >= 2).any(), "a prompt chosen 2 steps in a row came back at once"
        feed(sel, ids, [0.5, 0.5])  # always partial: uncapped top-k would keep these forever
        chosen = np.zeros(8, dtype=bool)
        chosen[ids] = True
        streak = np.where(chosen, streak + 1, 0)
    # the cap yields when too few prompts are left to fill the batch
    tight = DPSSelector(2, max_consecutive=1)
    for _ in range(3):
        ids = tight.select(2)
        feed(tight, ids, [0.5, 0.5])
    state = tight.state_dict()
    restored = DPSSelector(2, max_consecutive=1)
    restored.load_state_dict(state)
    assert restored.max_consecutive == 1 and np.array_equal(restored.state_dict()["streak"], state["streak"])


def test_uncapped_topk_keeps_reselecting_a_working_set():
    """The failure the cap addresses: prompts that stay partial are chosen every step."""
    sel = DPSSelector(8, seed=0)
    first = sel.select(2)
    for _ in range(5):
        feed(sel, first, [0.5, 0.5])
        np.testing.assert_array_equal(np.sort(sel.select(2)), np.sort(first))
