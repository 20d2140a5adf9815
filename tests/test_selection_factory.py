"""make_selector / check_selector: one place for the candidate_ratio rule, option names, types and values."""

from __future__ import annotations

import numpy as np
import pytest

from mmdps.selection import SELECTORS, MoPPSSelector, check_selector, make_selector


def test_candidate_ratio_comes_as_the_keyword_or_in_selector_kwargs_never_both():
    assert make_selector("dps", 40, candidate_ratio=2).candidate_ratio == 2.0
    assert make_selector("dps", 40, {"candidate_ratio": 3}).candidate_ratio == 3.0
    assert make_selector("dps", 40, {"candidate_ratio": None}, candidate_ratio=None).candidate_ratio is None
    with pytest.raises(ValueError, match=r"candidate_ratio is set twice for selector 'dps': 2 at the top level and 4 "
                                         r"in selector_kwargs; keep one"):
        make_selector("dps", 40, {"candidate_ratio": 4}, candidate_ratio=2)
    with pytest.raises(ValueError, match="must be None .* or a number >= 1"):
        check_selector("mopps", {"candidate_ratio": 0.5})


@pytest.mark.parametrize("name", sorted(set(SELECTORS) - {"dps", "mopps"}))
def test_candidate_ratio_is_refused_where_nothing_is_ranked(name):
    with pytest.raises(ValueError, match=f"selector '{name}' does not rank candidates"):
        check_selector(name, candidate_ratio=4)
    with pytest.raises(ValueError, match="does not rank candidates"):
        make_selector(name, 40, {"candidate_ratio": 4})
    check_selector(name, candidate_ratio=None)


def test_none_ranks_the_whole_pool_for_every_ranking_selector():
    for name in ("dps", "mopps"):
        assert make_selector(name, 40).candidate_ratio is None
    mopps = MoPPSSelector(40, seed=0)
    for _ in range(3):
        mopps.select(4)
    assert mopps.candidate_sampler.epoch == 0  # no candidate batches were drawn
    # with a ratio, candidates come from the shuffled pass
    ranked = MoPPSSelector(40, seed=0, candidate_ratio=2)
    ranked.select(4)
    assert ranked.candidate_sampler.epoch == 1 and ranked.candidate_sampler.position == 8


def test_check_selector_names_the_option_and_what_it_takes():
    with pytest.raises(ValueError, match="unknown selector 'dpss'"):
        check_selector("dpss")
    with pytest.raises(ValueError, match=r"unexpected keyword argument 'decayy' \(did you mean 'decay'\?\); "
                                         r"its options: decay, prior_alpha"):
        check_selector("dps", {"decayy": 0.3})
    with pytest.raises(ValueError, match="selector 'dps': option decay must be a number, got 'high'"):
        check_selector("dps", {"decay": "high"})
    with pytest.raises(ValueError, match="option max_rounds must be an integer, got 2.5"):
        check_selector("ds", {"max_rounds": 2.5})
    with pytest.raises(ValueError, match="option count_initial must be true or false"):
        check_selector("cdas", {"count_initial": "yes"})
    with pytest.raises(ValueError, match=r"decay \(lambda\) must be in \(0, 1\]"):  # the constructor's own check
        check_selector("dps", {"decay": 2.0})
    check_selector("dps", {"decay": 0.7, "prior_alpha": [[1, 1, 1]] * 3, "max_consecutive": None})


def test_trainer_supplied_and_user_options():
    # rollouts_per_prompt from the caller is dropped where unused; in the user's options it is an error
    # (dps takes it since groups may differ in size: its reference k for weak observations)
    assert make_selector("cdas", 10, seed=1, rollouts_per_prompt=8).seed == 1
    with pytest.raises(ValueError, match="unexpected keyword argument 'rollouts_per_prompt'"):
        make_selector("cdas", 10, {"rollouts_per_prompt": 8})
    assert make_selector("dps", 10, rollouts_per_prompt=8).rollouts_per_prompt == 8
    assert make_selector("mopps", 10, {"rollouts_per_prompt": 4}).rollouts_per_prompt == 4
    with pytest.raises(ValueError, match=r"option\(s\) seed given twice, in selector_kwargs \(seed=3\) and by the "
                                         r"caller \(seed=0\); keep one"):
        make_selector("dps", 10, {"seed": 3}, seed=0)


def test_check_selector_builds_no_large_state():
    check_selector("dps")  # a pool of one prompt: nothing proportional to a real pool
    sel = make_selector("dps", 1)
    assert sel.memory_bytes() < 1024
    assert np.array_equal(sel.select(1), [0])
