"""Reward functions from a file (``path/to/file.py:fn``) as a verifier: dict and float returns, shaped
floats and success_threshold, weights, the time bound and process isolation, and the config keys."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mmdps import verifiers
from mmdps.data.item import Item
from mmdps.verifiers import base, isolation
from mmdps.verifiers.base import VerifierSetupError
from mmdps.verifiers.custom import RewardFunctionError, check_reward_settings, register_reward_functions

REWARDS = '''
import time

def as_dict(completion, ground_truth, **metadata):
    right = completion.strip() == str(ground_truth)
    return {"score": 1.0 if right else 0.0, "acc": float(right), "format": float(metadata.get("fmt", 1))}

def as_float(completion, ground_truth, **metadata):
    return float(completion.strip() == str(ground_truth))

def shaped(completion, ground_truth, **metadata):
    return 1.0 - min(1.0, abs(float(completion) - float(ground_truth)) / 10)

def length_bonus(completion, ground_truth, **metadata):
    return {"score": len(completion) / 100, "format": 0.0}

def sleepy(completion, ground_truth, **metadata):
    time.sleep(120)

def says_text(completion, ground_truth, **metadata):
    return "yes"

def no_score(completion, ground_truth, **metadata):
    return {"acc": 1.0}

def _make():
    def inner(completion, ground_truth, **metadata):
        return 1.0
    return inner

closure = _make()
'''


@pytest.fixture
def rewards(tmp_path, monkeypatch):
    monkeypatch.setattr(verifiers, "_REGISTRY", dict(verifiers._REGISTRY))
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return lambda fn: f"{path}:{fn}"


def _item(verifier, ground_truth="7", **metadata):
    item = Item(id=3, messages=[{"role": "user", "content": "q"}], ground_truth=ground_truth, verifier="x",
                task="t", metadata=metadata)
    return dataclasses.replace(item, verifier=verifier)


def _score(name, completion, ground_truth="7", **metadata):
    verdict = verifiers.score_completion(_item(name, ground_truth, **metadata), completion)
    return verdict.score, verdict.acc, verdict.format


def test_a_dict_return_is_the_verdict(rewards):
    name = register_reward_functions(rewards("as_dict"))
    assert _score(name, "7") == (1.0, 1.0, 1.0)
    assert _score(name, "8", fmt=0) == (0.0, 0.0, 0.0)


def test_a_float_of_0_or_1_is_score_and_accuracy(rewards):
    name = register_reward_functions([rewards("as_float")])
    assert _score(name, "7") == (1.0, 1.0, 1.0) and _score(name, "8") == (0.0, 0.0, 1.0)


def test_a_shaped_float_needs_a_success_threshold(rewards):
    name = register_reward_functions(rewards("shaped"))
    assert _score(name, "7") == (1.0, 1.0, 1.0)  # exactly 1 is fine
    errors = base.error_count()
    with pytest.raises(RewardFunctionError, match=r"reward function .*my_rewards.py:shaped returned the score 0.9, "
                                                  r"which is neither 0 nor 1.*set success_threshold.*'acc'"):
        _score(name, "8")
    assert base.error_count() == errors  # refused, not swallowed as a verifier error
    name = register_reward_functions(rewards("shaped"), success_threshold=0.85)
    assert _score(name, "8") == (pytest.approx(0.9), 1.0, 1.0)
    assert _score(name, "5") == (pytest.approx(0.8), 0.0, 1.0)


def test_weights_sum_the_scores_acc_from_the_first_format_from_the_first_that_gives_one(rewards):
    name = register_reward_functions([rewards("as_float"), rewards("length_bonus")], weights=[1.0, 0.5])
    assert _score(name, "7") == (pytest.approx(1.0 + 0.5 * 0.01), 1.0, 0.0)
    assert _score(name, " 8") == (pytest.approx(0.5 * 0.02), 0.0, 0.0)
    # The accuracy reward is the first one: a shaped function later in the list needs no threshold.
    name = register_reward_functions([rewards("as_dict"), rewards("shaped")], weights=[2, -1])
    assert _score(name, "8", fmt=0) == (pytest.approx(-0.9), 0.0, 0.0)


def test_bad_return_values_name_the_function(rewards):
    with pytest.raises(RewardFunctionError, match=r"says_text returned str 'yes': it must return a float or a dict"):
        _score(register_reward_functions(rewards("says_text")), "7")
    with pytest.raises(RewardFunctionError, match=r"no_score returned \{'acc': 1.0\}, a dict without 'score'"):
        _score(register_reward_functions(rewards("no_score")), "7")


@pytest.fixture
def isolated(monkeypatch):
    monkeypatch.setenv("MMDPS_VERIFIER_ISOLATION", "1")
    pool = isolation.WorkerPool(size=1)
    monkeypatch.setattr(isolation, "_POOL", pool)
    yield pool
    pool.close()


def test_a_reward_function_runs_in_a_worker_and_is_bounded_in_time(rewards, isolated):
    name = register_reward_functions([rewards("as_dict")])
    assert _score(name, "7") == (1.0, 1.0, 1.0)  # the worker imported my_rewards.py by its path
    assert isolated._alive == 1
    sleepy = register_reward_functions([rewards("as_dict"), rewards("sleepy")], time_limit=0.5)
    timeouts = base.timeout_count()
    start = time.perf_counter()
    assert _score(sleepy, "7") == (0.0, 0.0, 0.0)
    assert time.perf_counter() - start < 0.5 + isolation.KILL_GRACE_S + 1.0
    assert base.timeout_count() == timeouts + 1


def test_a_closure_is_refused_unless_isolation_is_off(rewards, isolated):
    with pytest.raises(VerifierSetupError, match=r"my_rewards.py:closure.*closure or local function.*isolate=False"):
        register_reward_functions(rewards("closure"))
    name = register_reward_functions(rewards("closure"), isolate=False)
    assert _score(name, "anything") == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"reward_function": "rewards.py"}, "does not name a function"),
    ({"reward_function": "missing.py:fn"}, r"missing.py not found"),
    ({"reward_function": "notes.txt:fn"}, "is not a .py file"),
    ({"reward_function": ["@R:as_dict", "@R:shaped"], "reward_weights": [1.0]},
     r"reward_weights has 1 weight\(s\) for 2 reward function\(s\)"),
    ({"reward_function": "@R:as_dict", "reward_weights": [float("nan")]}, "finite"),
    ({"reward_weights": [1.0]}, "reward_weights applies to reward_function, which is not set"),
    ({"success_threshold": 0.5}, "success_threshold applies to reward_function"),
    ({"reward_function": []}, "empty list"),
])
def test_the_config_keys_are_checked(rewards, kwargs, message):
    from mmdps.config import GRPOConfig

    spec = rewards("x").rpartition(":")[0]
    kwargs = {k: ([s.replace("@R", spec) for s in v] if isinstance(v, list) and v and isinstance(v[0], str)
                  else v.replace("@R", spec) if isinstance(v, str) else v) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=message):
        GRPOConfig(model_name_or_path="tiny:qwen2", **kwargs)
    with pytest.raises(ValueError, match=message):
        check_reward_settings(kwargs.get("reward_function"), kwargs.get("reward_weights"),
                              kwargs.get("success_threshold"))


def test_a_valid_config_keeps_the_keys(rewards):
    from mmdps.config import GRPOConfig, load_config

    config = GRPOConfig(model_name_or_path="tiny:qwen2", reward_function=[rewards("as_dict"), rewards("shaped")],
                        reward_weights=[1.0, 0.1], success_threshold=0.5)
    assert config.reward_function == [rewards("as_dict"), rewards("shaped")]
    loaded = load_config(None, ["model_name_or_path=tiny:qwen2", f"reward_function={rewards('as_float')}",
                                "success_threshold=0.5"])
    assert loaded.reward_function == rewards("as_float") and loaded.success_threshold == 0.5
