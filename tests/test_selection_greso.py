"""GRESO: skip-probability arithmetic, p adaptation, the walk, DS filter, state round trip, bad input."""

import numpy as np
import pytest

from mmdps.selection import GRESOSelector, make_selector
from mmdps.selection.greso import keep_probabilities


def test_keep_probability_arithmetic_by_hand():
    sel = GRESOSelector(6, p_easy=0.5, p_hard=0.25)
    # prompt 0: all correct 3 times; 1: all wrong twice; 2: easy then informative; 3: hard then easy.
    sel.update(np.array([0, 1, 2, 3]), np.array([1.0, 0.0, 1.0, 0.0]))
    sel.update(np.array([0, 1, 2, 3]), np.array([1.0, 0.0, 0.5, 1.0]))
    sel.update(np.array([0]), np.array([1.0]))
    np.testing.assert_array_equal(sel.easy_streak, [3, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(sel.hard_streak, [0, 2, 0, 0, 0, 0])
    # keep = p_e^3 = 0.125, p_h^2 = 0.0625, informative last visit and unseen: 1, easy streak 1: 0.5
    np.testing.assert_allclose(sel.keep_probability(), [0.125, 0.0625, 1.0, 0.5, 1.0, 1.0])
    # the 1% exploration floor: 0.5^10 < 0.01
    assert keep_probabilities(np.array([10]), np.array([0]), 0.5, 0.5, 0.01)[0] == pytest.approx(0.01)
    # thresholds of the reference code: 0.99 counts as all-correct, 0.1 as all-wrong, 0.125 does not
    sel.update(np.array([4, 5]), np.array([0.99, 0.125]))
    assert sel.easy_streak[4] == 1 and sel.hard_streak[5] == 0


def test_p_adapts_only_from_second_epoch():
    sel = GRESOSelector(20, oversample=1.0, p_step=0.01)
    ids = sel.select(10)  # epoch 0
    sel.update(ids, np.ones(10))  # easy share 1 >= target/3, but still the first epoch
    assert sel.p_easy == 0.5 and sel.p_hard == 0.5
    sel.select(10)
    ids = sel.select(5)  # the walk enters epoch 1
    assert sel.epoch == 1
    rates = np.array([1.0, 0.5, 0.5, 0.5, 0.5])  # easy 1/5 >= 0.25/3: explore less; hard 0 < 0.5/3: more
    sel.update(ids, rates)
    assert sel.p_easy == pytest.approx(0.49) and sel.p_hard == pytest.approx(0.51)
    for _ in range(200):  # clipped to [p_min, p_max]
        sel.update(ids, np.zeros(5))
    assert sel.p_hard == pytest.approx(0.05) and sel.p_easy == pytest.approx(0.95)


def test_walk_skips_zero_variance_prompts_and_never_repeats():
    n = 400
    sel = GRESOSelector(n, oversample=1.5, p_easy=0.05, p_hard=0.05, p_min=0.05, seed=3)
    sel.update(np.arange(200), np.ones(200))  # 200 solved prompts: kept with probability 0.05
    sel.update(np.arange(200), np.ones(200))  # streak 2: 0.0025 -> floor 0.01
    ids = sel.select(64)
    assert ids.size == 96 and np.unique(ids).size == 96
    assert np.mean(ids < 200) < 0.1  # unseen prompts dominate
    assert sel.diagnostics()["skipped_easy"] > 0
    # successive rounds of one epoch never repeat a prompt (about 202 prompts survive the skip rule)
    more = sel.select(64)
    assert np.unique(np.concatenate([ids, more])).size == ids.size + more.size


def test_everything_skippable_still_fills_the_round():
    sel = GRESOSelector(30, oversample=1.0, min_keep=0.01, seed=0)
    sel.update(np.arange(30), np.zeros(30))
    for _ in range(5):
        sel.update(np.arange(30), np.zeros(30))
    ids = sel.select(10)
    assert ids.size == 10 and np.unique(ids).size == 10
    assert sel.diagnostics()["topped_up"] > 0
    cand = np.array([1, 4, 7, 9, 12])
    got = sel.select(3, candidates=cand)
    assert got.size == 3 and set(got) <= set(cand)


def test_ds_filter_accounting_and_registry():
    sel = make_selector("greso", 50, rollouts_per_prompt=4, max_rounds=3)
    assert isinstance(sel, GRESOSelector) and sel.max_rounds == 3
    ids = sel.select(10)
    assert ids.size == 15
    rates = np.linspace(0, 1, 15)
    sel.update(ids, rates)
    keep = sel.admit(ids, rates)
    np.testing.assert_array_equal(keep, (rates > 0) & (rates < 1))
    d = sel.diagnostics()
    assert d["rollouts_spent"] == 60 and d["admitted"] == 13 and d["rounds"] == 1


def test_determinism_and_state_round_trip():
    def run(sel, steps):
        out = []
        for _ in range(steps):
            ids = sel.select(8)
            rates = (ids % 3) / 2.0  # 0, 0.5, 1: a fixed difficulty per prompt
            sel.update(ids, rates)
            sel.admit(ids, rates)
            out.append(ids)
        return out

    a, b = GRESOSelector(40, seed=7), GRESOSelector(40, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(run(a, 12), run(b, 12), strict=True))
    state = a.state_dict()
    c = GRESOSelector(40, seed=0)
    c.load_state_dict(state)
    assert all(np.array_equal(x, y) for x, y in zip(run(a, 6), run(c, 6), strict=True))
    assert a.diagnostics() == pytest.approx(c.diagnostics(), nan_ok=True)
    with pytest.raises(ValueError, match="for selector 'greso'"):
        make_selector("dps", 40).load_state_dict(state)


@pytest.mark.parametrize("kwargs, match", [
    ({"oversample": 0.5}, "oversample"),
    ({"target_zero_variance": 1.0}, "target_zero_variance"),
    ({"p_easy": 0.99}, "p_easy"),
    ({"min_keep": 0.0}, "min_keep"),
    ({"easy_threshold": 0.1, "hard_threshold": 0.2}, "hard_threshold"),
    ({"max_rounds": 0}, "max_rounds"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRESOSelector(10, **kwargs)


def test_bad_update_input():
    sel = GRESOSelector(10)
    with pytest.raises(ValueError, match="outside the pool"):
        sel.update(np.array([10]), np.array([0.5]))
    with pytest.raises(ValueError, match="duplicate"):
        sel.update(np.array([1, 1]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sel.update(np.array([1]), np.array([1.5]))
    with pytest.raises(ValueError, match="larger than the pool"):
        sel.select(11)
