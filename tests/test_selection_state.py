"""Loading a selector state: changed settings are refused (not silently swapped), damaged entries are named,
and states written by older versions still load."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from mmdps.selection import SELECTORS, make_selector


def trained(name: str, steps: int = 4, **kwargs):
    sel = make_selector(name, 30, seed=2, rollouts_per_prompt=4, **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        ids = sel.select(6)
        rates = rng.choice([0.0, 0.25, 0.5, 1.0], size=ids.size)
        sel.update(ids, rates)
        sel.admit(ids, rates)
        sel.record_trained(ids)
    return sel


@pytest.mark.parametrize("cls", sorted(set(SELECTORS.values()), key=lambda c: c.name), ids=lambda c: c.name)
def test_every_constructor_option_but_the_seed_is_a_checked_setting(cls):
    """A new hyper-parameter must be added to ``_settings``, or resuming could silently swap it."""
    options = set(inspect.signature(cls.__init__).parameters) - {"self", "num_prompts", "seed"}
    settings = {cls._setting_options.get(key, key) for key in cls._collected("_settings")}
    assert options <= settings, f"{cls.name}: settings missing {sorted(options - settings)}"
    state = make_selector(cls.name, 5).state_dict()
    assert all(key in state for key in cls._collected("_settings"))


@pytest.mark.parametrize("name, saved, now, shown", [
    ("dps", {"decay": 0.5}, {"decay": 0.9}, "decay: 0.5 saved, 0.9 now"),
    ("dps", {}, {"prior_alpha": "stability"}, "prior_alpha (state key 'alpha0'): [[1.0, 1.0, 1.0]"),
    ("dps", {}, {"strategy": "sample"}, "strategy: 'topk' saved, 'sample' now"),
    ("dps", {"candidate_ratio": 2}, {"candidate_ratio": None}, "candidate_ratio: 2.0 saved, None now"),
    ("mopps", {"target": 0.5}, {"target": 0.4}, "target: 0.5 saved, 0.4 now"),
    ("mopps", {}, {"rollouts_per_prompt": 8}, "rollouts_per_prompt: 4 saved, 8 now"),
    ("greso", {}, {"p_easy": 0.3}, "p_easy (state key 'p_easy_init'): 0.5 saved, 0.3 now"),
    ("greso", {}, {"oversample": 2.0}, "oversample: 1.5 saved, 2.0 now"),
    ("ds", {"max_rounds": 3}, {"max_rounds": 4}, "max_rounds: 3 saved, 4 now"),
    ("cdas", {}, {"count_initial": True}, "count_initial: False saved, True now"),
    ("dopr", {}, {"exploration": 1.0}, "exploration: 0.5 saved, 1.0 now"),
])
def test_resume_refuses_a_changed_setting(name, saved, now, shown):
    state = trained(name, **saved).state_dict()
    options = {**saved, **now}
    caller = {key: value for key, value in {"seed": 2, "rollouts_per_prompt": 4}.items() if key not in options}
    fresh = make_selector(name, 30, options, **caller)
    before = fresh.state_dict()
    with pytest.raises(ValueError) as err:
        fresh.load_state_dict(state)
    message = str(err.value)
    assert message.startswith(f"selector {name!r}: the saved state was made with other settings (")
    assert shown in message and "set them back (" in message and "start a new output directory" in message
    after = fresh.state_dict()  # refused before anything was loaded
    for key, value in before.items():
        np.testing.assert_equal(after[key], value, err_msg=key)


def test_resume_with_the_same_settings_loads_and_names_every_change_at_once():
    state = trained("dps", decay=0.7, candidate_ratio=2).state_dict()
    same = make_selector("dps", 30, decay=0.7, candidate_ratio=2, rollouts_per_prompt=4)
    same.load_state_dict(state)
    assert same.steps == 4
    with pytest.raises(ValueError, match=r"\(candidate_ratio: 2.0 saved, None now; decay: 0.7 saved, 0.5 now\).*"
                                         r"set them back \(candidate_ratio=2.0, decay=0.7\)"):
        make_selector("dps", 30, rollouts_per_prompt=4).load_state_dict(state)


def test_states_written_the_old_way_still_load():
    # before: candidate_ratio None was stored as -1.0, and MoPPS stored none of its settings
    old = trained("dps").state_dict()
    old["candidate_ratio"] = -1.0
    fresh = make_selector("dps", 30, rollouts_per_prompt=4)
    fresh.load_state_dict(old)
    assert fresh.candidate_ratio is None and fresh.steps == 4
    with pytest.raises(ValueError, match="candidate_ratio: None saved, 4.0 now"):
        make_selector("dps", 30, candidate_ratio=4, rollouts_per_prompt=4).load_state_dict(old)
    mopps = trained("mopps", candidate_ratio=16).state_dict()
    for key in ("decay", "rollouts_per_prompt", "target", "strategy", "prior_alpha", "prior_beta", "lower", "upper"):
        del mopps[key]
    restored = make_selector("mopps", 30, rollouts_per_prompt=4, candidate_ratio=16, decay=0.5)
    restored.load_state_dict(mopps)
    assert restored.decay == 0.5 and restored.steps == 4  # nothing saved to compare: this run's value stays
    # MoPPS's old implicit ratio of 16 was saved: resuming it without the ratio is refused, not swapped
    with pytest.raises(ValueError, match=r"candidate_ratio: 16.0 saved, None now.*candidate_ratio=16.0"):
        make_selector("mopps", 30, rollouts_per_prompt=4).load_state_dict(mopps)


def _set(state, key, index, value):
    arr = np.array(state[key], dtype=np.float64 if isinstance(value, float) else None, copy=True)
    arr[index] = value
    state[key] = arr


@pytest.mark.parametrize("name, key, index, value, expected", [
    ("dps", "prior", (1, 0), 0.9, r"state_dict\['prior'\] must hold probability vectors .*column 0 sums to"),
    ("dps", "lastpost", (0, 0), -0.5, r"state_dict\['lastpost'\] must hold probability vectors .*got -0.5"),
    ("dps", "alpha", (0, 0, 0), np.nan, r"state_dict\['alpha'\] must hold Dirichlet counts .*got nan"),
    ("dps", "shared_prior", 2, 2.0, r"state_dict\['shared_prior'\] must hold probability vectors"),
    ("dps", "count", 0, -1, r"state_dict\['count'\] must hold whole numbers >= 0; got -1"),
    ("dps", "total_confusion", (0, 0), 1.5, r"state_dict\['total_confusion'\] must hold whole numbers"),
    ("mopps", "beta", 3, 0.0, r"state_dict\['beta'\] must hold finite numbers > 0; got 0 at index \(3,\)"),
    ("mopps", "alpha", 0, np.inf, r"state_dict\['alpha'\] must hold finite numbers > 0"),
    ("greso", "p_easy", (), 1.5, r"state_dict\['p_easy'\] must hold numbers in \[0, 1\]; got 1.5"),
    ("greso", "hard_streak", 1, -2, r"state_dict\['hard_streak'\] must hold whole numbers >= 0"),
    ("ds", "rollouts_spent", (), -8, r"state_dict\['rollouts_spent'\] must hold whole numbers >= 0"),
    ("cdas", "difficulty", 2, np.nan, r"state_dict\['difficulty'\] must hold finite numbers"),
    ("dopr", "reward_count", 0, -1.0, r"state_dict\['reward_count'\] must hold finite numbers >= 0"),
    ("uniform", "steps", (), -1, r"state_dict\['steps'\] must hold whole numbers >= 0"),
    ("uniform", "history_visits", 0, -3, r"state_dict\['history_visits'\] must hold whole numbers >= 0"),
    ("uniform", "history_last_step", 0, -7, r"state_dict\['history_last_step'\] must hold whole numbers >= -1"),
    ("uniform", "epoch_position", (), 99, r"state_dict\['epoch_position'\] .* is past the end"),
    ("dps", "candidate_epoch_order", 1, 0, r"state_dict\['candidate_epoch_order'\] must be empty or a permutation"),
])
def test_damaged_state_is_refused_naming_the_key(name, key, index, value, expected):
    ratio = {"candidate_ratio": 2} if name == "dps" else {}
    state = trained(name, **ratio).state_dict()
    if key == "candidate_epoch_order":
        value = int(state[key][0])  # a repeated id
    if np.ndim(state[key]) == 0:
        state[key] = value
    else:
        _set(state, key, index, value)
    fresh = make_selector(name, 30, seed=2, rollouts_per_prompt=4, **ratio)
    with pytest.raises(ValueError, match=expected) as err:
        fresh.load_state_dict(state)
    assert "damaged" in str(err.value) and fresh.steps == 0


def test_loaded_probabilities_may_carry_rounding_error():
    state = trained("dps").state_dict()
    state["prior"] = state["prior"] * (1 + 1e-9)
    make_selector("dps", 30, rollouts_per_prompt=4).load_state_dict(state)
