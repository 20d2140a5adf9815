"""The demos package's shared pieces without a model: the evaluation, the evaluation callback, the recipes,
the deprecated aliases and the import structure."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from mmdps.data.item import Item
from mmdps.demos import RECIPES, EvalCallback, common
from mmdps.rollout.base import Completion


class ScriptedEngine:
    """Answers each item's question by rule: greedy right for even ids; sample j of item i is right for
    j < i % (k + 1). Records each call's sampling seed."""

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def generate(self, items, k, sampling):
        self.seeds.append(sampling.seed)
        rows = []
        for item in items:
            if sampling.temperature == 0:
                right = [item.id % 2 == 0]
            else:
                right = [j < item.id % (k + 1) for j in range(k)]
            rows.append([Completion(text=str(item.ground_truth if ok else -1), token_ids=[1]) for ok in right])
        return rows


def _items(n: int) -> list[Item]:
    return [Item(id=i, messages=[{"role": "user", "content": f"q{i}"}], ground_truth=i, verifier="integer",
                 metadata={"difficulty": i % 2}) for i in range(n)]


def test_evaluate_policy_scores_every_prompt_and_level_and_seeds_each_sampling_batch():
    engine, items = ScriptedEngine(), _items(150)
    point = common.evaluate_policy(engine, items, samples=4, seed=7, levels=("L0: even", "L1: odd", "L2: none"))
    rates = [min(i % 5, 4) / 4 for i in range(150)]
    assert point["per_prompt"]["greedy"] == [float(i % 2 == 0) for i in range(150)]
    assert point["per_prompt"]["sampled"] == rates
    assert point["greedy"] == 0.5 and point["sampled"] == pytest.approx(sum(rates) / 150)
    assert point["mixed"] == pytest.approx(sum(0 < r < 1 for r in rates) / 150)
    assert point["all_right"] == pytest.approx(sum(r == 1 for r in rates) / 150)
    assert point["by_level"]["L0"]["greedy"] == 1.0 and point["by_level"]["L1"]["greedy"] == 0.0
    assert point["by_level"]["L1"]["sampled"] == pytest.approx(sum(rates[1::2]) / 75)
    assert point["by_level"]["L2"] == {"greedy": None, "sampled": None}  # a level without items
    # one greedy call, then sampling batches of 100 prompts, each seeded by its first prompt's index
    assert engine.seeds == [None, 7, 107]
    with pytest.raises(ValueError, match="no items"):
        common.evaluate_policy(engine, [])


def test_evaluate_policy_scores_through_the_items_own_verifier_and_metadata(monkeypatch):
    """The one rollout-and-score path, not a verifier called here: what it scores is what the point says."""
    from mmdps.rollout import scoring

    calls = []
    original = scoring.rollout_and_score

    def spy(engine, items, sizes, sampling, **kwargs):
        calls.append((len(items), sizes))
        return original(engine, items, sizes, sampling, **kwargs)

    monkeypatch.setattr(scoring, "rollout_and_score", spy)
    common.evaluate_policy(ScriptedEngine(), _items(3), samples=2)
    assert calls == [(3, 1), (3, 2)]


class FakeTrainer:
    def __init__(self) -> None:
        self.step, self.rollouts_total = 0, 0

    def advance(self, rollouts: int, callback) -> None:
        self.step += 1
        self.rollouts_total += rollouts
        callback.on_step_end(self, {"time/step": 0.5, "rollouts": rollouts, "acc_mean": 0.25, "grad_norm": 1.0})


def test_eval_callback_every_evaluates_once_per_step_and_at_once_per_point():
    trainer = FakeTrainer()
    every = EvalCallback(lambda t: {"n": t.step}, every=10)
    for rollouts in (5, 5, 25, 3):  # the third step passes 20 and 30: one evaluation
        trainer.advance(rollouts, every)
    assert [(p["step"], p["rollouts"], p["train_seconds"]) for p in every.curve] == [(2, 10, 1.0), (3, 35, 1.5)]
    assert every.steps[0] == {"rollouts": 5, "acc_mean": 0.25, "time/step": 0.5, "train_seconds": 0.5}

    trainer = FakeTrainer()
    at = EvalCallback(lambda t: {}, at=[10.0, 20.0, 30.0],
                      record=lambda metrics, seconds: common.step_record(metrics, ("grad_norm",), extra=1))
    for rollouts in (5, 30):  # the second step passes all three points: one evaluation each
        trainer.advance(rollouts, at)
    assert [p["rollouts"] for p in at.curve] == [35, 35, 35]
    assert at.steps == [{"grad_norm": 1.0, "extra": 1}] * 2
    with pytest.raises(ValueError, match="not both"):
        EvalCallback(lambda t: {}, every=1, at=[1.0])


def test_recipes_hold_each_tasks_settings_and_engine_length():
    assert set(RECIPES) == {"countdown", "vl"}
    assert RECIPES["countdown"].settings().selector == "dps" and RECIPES["vl"].settings().selector == "uniform"
    assert issubclass(RECIPES["vl"].settings, RECIPES["countdown"].settings)
    assert RECIPES["countdown"].max_prompt_length == 64 and RECIPES["vl"].max_prompt_length == 48
    settings = RECIPES["vl"].settings(levels=("sum", "digit"))
    assert RECIPES["vl"].level_names(settings) == ("L0: digit", "L2: sum")
    config = RECIPES["vl"].grpo_config(settings, "model", "out", selector="dps", max_steps=3)
    assert (config.task, config.max_prompt_length, config.selector, config.max_steps) == ("visual", 48, "dps", 3)
    assert RECIPES["countdown"].grpo_config(RECIPES["countdown"].settings(), "m", "o").task_template == "compact"


@pytest.mark.parametrize("old, new, name", [("mmdps.demo", "mmdps.demos.countdown", "make_data"),
                                            ("mmdps.demo_vl", "mmdps.demos.vl", "VLDemoSettings")])
def test_old_module_paths_still_import_with_a_deprecation_warning(old, new, name):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    assert callable(module.run_demo) and callable(module.warm_start) and callable(module.make_engine)


def test_the_package_and_the_command_never_import_the_deprecated_modules():
    code = ("import sys, mmdps.demos, mmdps.commands.demo; "
            "assert not {'mmdps.demo', 'mmdps.demo_vl'} & set(sys.modules), sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
