"""Baseline selectors: MoPPS arithmetic, DS accounting, CDAS, DoPR, uniform, and bad input."""

import numpy as np
import pytest

from mmdps.selection import (
    SELECTORS,
    CDASSelector,
    DoPRSelector,
    DynamicSamplingSelector,
    MoPPSSelector,
    UniformSelector,
    make_selector,
)


def test_mopps_update_arithmetic():
    sel = MoPPSSelector(10, decay=0.5, rollouts_per_prompt=8)
    sel.update(np.array([3, 4]), np.array([0.25, 1.0]))
    a, b = sel.posterior()
    # alpha = 0.5*1 + 0.5*1 + s*8 ; beta = 0.5*1 + 0.5*1 + (1-s)*8
    assert a[3] == pytest.approx(1 + 2) and b[3] == pytest.approx(1 + 6)
    assert a[4] == pytest.approx(1 + 8) and b[4] == pytest.approx(1 + 0)
    sel.update(np.array([3]), np.array([0.5]))
    a, b = sel.posterior()
    assert a[3] == pytest.approx(0.5 * 3 + 0.5 + 4) and b[3] == pytest.approx(0.5 * 7 + 0.5 + 4)
    assert a[0] == 1.0 and b[0] == 1.0  # unselected prompts are untouched
    sel.update(np.array([0]), np.array([0.5]), rewards=np.array([[1, 0, 1, 0]]))  # k from rewards
    assert sel.posterior()[0][0] == pytest.approx(1 + 2)


def test_mopps_prefers_prompts_near_target():
    topk = MoPPSSelector(300, rollouts_per_prompt=8, candidate_ratio=None, seed=0)
    thr = MoPPSSelector(300, strategy="threshold", candidate_ratio=None, seed=0)
    for sel in (topk, thr):
        for _ in range(20):
            sel.update(np.arange(100), np.zeros(100))
            sel.update(np.arange(100, 200), np.ones(100))
            sel.update(np.arange(200, 300), np.full(100, 0.5))
    assert np.all(topk.select(50) >= 200)
    assert np.all(thr.select(50) >= 200)


def test_ds_accounting_and_admit():
    sel = DynamicSamplingSelector(1000, oversample=2.0, max_rounds=3, rollouts_per_prompt=8)
    ids = sel.select(64)
    assert ids.size == 128 and np.unique(ids).size == 128
    rates = np.tile([0.0, 0.5, 1.0, 0.25], 32)
    sel.update(ids, rates)
    keep = sel.admit(ids, rates)
    assert keep.sum() == 64 and np.all((rates[keep] > 0) & (rates[keep] < 1))
    ids2 = sel.select(64)
    assert not np.intersect1d(ids, ids2).size  # same epoch: no repeats across rounds
    sel.update(ids2[:10], np.full(10, 0.5), rewards=np.ones((10, 4)))  # k = 4 from the rewards
    d = sel.diagnostics()
    assert d["rollouts_spent"] == 128 * 8 + 10 * 4
    assert d["prompts_rolled_out"] == 138 and d["rounds"] == 2 and d["admitted"] == 64
    assert sel.max_rounds == 3
    assert DynamicSamplingSelector(100, oversample=3.0).select(64).size == 100  # capped by the pool
    assert make_selector("dapo", 10).name == "ds"


def test_other_selectors_admit_everything_and_have_one_round():
    for name in ("uniform", "dps", "mopps", "cdas", "dopr"):
        sel = make_selector(name, 20)
        assert sel.max_rounds == 1
        assert sel.admit(np.array([1, 2]), np.array([0.0, 1.0])).all()


def test_uniform_epochs_cover_pool():
    sel = UniformSelector(100, seed=0)
    ids = np.concatenate([sel.select(25) for _ in range(4)])
    assert np.array_equal(np.sort(ids), np.arange(100))
    cand = np.array([5, 9, 11, 40])
    assert set(sel.select(2, candidates=cand)) <= set(cand)


def test_cdas_update_and_symmetric_selection():
    sel = CDASSelector(4, warmup_epochs=0)
    sel.update(np.array([0, 1]), np.array([1.0, 0.0]))
    # C=0, D=0 -> P_hat = 0.5; d = 0.5 - s; first visit weight 1 -> D = d
    np.testing.assert_allclose(sel.difficulty, [-0.5, 0.5, 0, 0])
    assert sel.competence == pytest.approx(0.0)
    sel.update(np.array([0]), np.array([1.0]))
    p_hat = 1 / (1 + np.exp(-(0.0 + 0.5)))
    assert sel.difficulty[0] == pytest.approx(-0.5 + ((p_hat - 1.0) - -0.5) / 2)
    assert sel.competence == pytest.approx(-sel.difficulty.sum() / 4)
    ref = CDASSelector(4, warmup_epochs=0, count_initial=True)
    ref.update(np.array([0]), np.array([1.0]))
    assert ref.difficulty[0] == pytest.approx(-0.25)  # first observation weighted 1/2

    big = CDASSelector(100, warmup_epochs=0, seed=0)
    big.difficulty = np.linspace(-2, 2, 100)
    big.competence = 0.0
    ids = big.select(10)
    assert np.sum(big.difficulty[ids] <= 0) == 5 and np.sum(big.difficulty[ids] > 0) == 5
    assert np.abs(big.difficulty[ids]).max() < 0.25


def test_cdas_warmup_is_one_uniform_epoch():
    sel = CDASSelector(40, warmup_epochs=1, seed=0)
    seen = np.concatenate([sel.select(10) for _ in range(4)])
    assert np.array_equal(np.sort(seen), np.arange(40))
    assert not sel.in_warmup(10)


def test_dopr_one_shot_scores():
    sel = DoPRSelector(50, shots=1, exploration=0.0, seed=0)
    sel.update(np.array([0, 1]), np.array([0.5, 1.0]))
    s = sel.scores(np.array([0, 1, 2]))
    np.testing.assert_allclose(s, [0.5, 0.0, 0.5])  # std of 4/8 ones = 0.5; all-correct = 0; unseen = 0.5
    assert sel.select(16).size == 1
    assert 1 not in sel.select(50, candidates=np.arange(50))
    sel.update(np.array([3]), np.array([0.0]), rewards=np.array([[0.0, 1.0]]))
    assert sel.scores(np.array([3]))[0] == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_bad_input_raises_value_error(name):
    sel = make_selector(name, 10)
    with pytest.raises(ValueError, match="outside the pool"):
        sel.update(np.array([10]), np.array([0.5]))
    with pytest.raises(ValueError, match="outside the pool"):
        sel.update(np.array([-1]), np.array([0.5]))
    with pytest.raises(ValueError, match="duplicate"):
        sel.update(np.array([1, 1]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sel.update(np.array([1]), np.array([1.5]))
    with pytest.raises(ValueError, match="NaN"):
        sel.update(np.array([1]), np.array([np.nan]))
    with pytest.raises(ValueError, match="length"):
        sel.update(np.array([1, 2]), np.array([0.5]))
    with pytest.raises(ValueError, match="larger than"):
        sel.select(11)
    with pytest.raises(ValueError, match="larger than"):
        sel.select(3, candidates=np.array([1, 2]))
    with pytest.raises(ValueError, match="positive integer"):
        sel.select(0)
    with pytest.raises(ValueError, match="rewards"):
        sel.update(np.array([1]), np.array([0.5]), rewards=np.ones((2, 4)))
    with pytest.raises(ValueError, match="not 'nope'|is for selector"):
        sel.load_state_dict({**sel.state_dict(), "selector": "nope"})


def test_make_selector_errors():
    with pytest.raises(ValueError, match="unknown selector"):
        make_selector("greedy", 10)
    with pytest.raises(ValueError, match="bad arguments"):
        make_selector("dps", 10, bogus_option=1.0)
    with pytest.raises(ValueError, match="decay"):
        make_selector("dps", 10, decay=0.0)
    with pytest.raises(ValueError, match="prior_alpha"):
        make_selector("dps", 10, prior_alpha="bogus")
    with pytest.raises(ValueError, match="num_prompts"):
        make_selector("uniform", 0)
