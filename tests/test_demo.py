"""The CPU demo pipeline at toy sizes: data, tokenizer, SFT, GRPO through the trainer, outputs."""

from __future__ import annotations

import argparse
import json

import pytest

from mmdps.commands import demo as demo_command
from mmdps.demos import RECIPES, countdown, run_demo


def tiny_settings(**overrides) -> countdown.DemoSettings:
    values = dict(threads=1, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, pool_size=16,
                  heldout_per_level=3, sft_steps=3, sft_batch_size=8, rl_steps=2, batch_size=4, num_generations=2,
                  max_new_tokens=4, eval_every=1, eval_samples=2, progress=False)
    values.update(overrides)
    return countdown.DemoSettings(**values)


@pytest.fixture(scope="module")
def data():
    return countdown.make_data(tiny_settings())


def test_data_sets_are_disjoint_and_cover_every_level(data):
    keys = [{(i.ground_truth["target"], tuple(sorted(i.ground_truth["numbers"]))) for i in items}
            for items in (data.heldout, data.pool, data.sft)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert sorted(i.metadata["difficulty"] for i in data.heldout) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert {i.metadata["difficulty"] for i in data.sft} == {0, 1, 2, 3}
    assert len(data.pool) == 16
    assert len({i.id for i in data.sft}) == len(data.sft)


def test_same_seed_same_data_other_seed_other_pool(data):
    again = countdown.make_data(tiny_settings())
    assert [i.ground_truth for i in again.pool] == [i.ground_truth for i in data.pool]
    other = countdown.make_data(tiny_settings(seed=1))
    assert [i.ground_truth for i in other.heldout] == [i.ground_truth for i in data.heldout]  # fixed held-out set
    assert [i.ground_truth for i in other.pool] != [i.ground_truth for i in data.pool]


def test_sft_examples_match_the_engine_encoding_and_reference_solutions(data):
    tokenizer = countdown.build_tokenizer()
    prompts, targets = countdown.sft_examples(data.sft, tokenizer)
    assert len(prompts) == len(targets) and len(prompts) % 4 == 0  # levels balanced by repetition
    text = tokenizer.decode(prompts[0] + targets[0])
    assert text.startswith("Numbers: ") and "<answer>" in text and text.endswith("</answer><|im_end|>")
    assert max(len(p) for p in prompts) <= 20  # Numbers: / Target: are single tokens
    for marker in countdown.ADDED_TOKENS:
        assert len(tokenizer(marker, add_special_tokens=False)["input_ids"]) == 1
    answer = tokenizer.decode(targets[0], skip_special_tokens=True)
    from mmdps import verifiers

    item = data.sft[0]
    assert verifiers.get("countdown")(answer, item.ground_truth)["acc"] == 1.0


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="num-generations"):
        tiny_settings(num_generations=1).validate()
    with pytest.raises(ValueError, match="pool-size"):
        tiny_settings(batch_size=64).validate()


@pytest.mark.slow
def test_demo_end_to_end_is_reproducible(tmp_path):
    settings = tiny_settings()
    first = run_demo(RECIPES["countdown"], settings, tmp_path / "a", log=lambda _: None)
    summary = json.loads((tmp_path / "a" / "demo.json").read_text())
    assert (tmp_path / "a" / "demo.png").stat().st_size > 0
    assert (tmp_path / "a" / "grpo" / "metrics.jsonl").is_file()
    assert summary["rollouts"] == 2 * 4 * 2  # steps x prompts x k, DPS takes one round per step
    assert [p["step"] for p in summary["curve"]] == [0, 1, 2]
    assert [p["rollouts"] for p in summary["curve"]] == [0, 8, 16]
    for point in summary["curve"]:
        assert 0.0 <= point["greedy"] <= 1.0 and 0.0 <= point["sampled"] <= 1.0
        assert set(point["by_level"]) == {"L0", "L1", "L2", "L3"}
    assert summary["sft"]["steps"] == 3
    second = run_demo(RECIPES["countdown"], settings, tmp_path / "b", log=lambda _: None)
    assert second["curve"] == [dict(p, seconds=q["seconds"], train_seconds=q["train_seconds"])
                               for p, q in zip(first["curve"], second["curve"], strict=True)]
    assert [s["reward_mean"] for s in second["steps"]] == [s["reward_mean"] for s in first["steps"]]


def test_cli_parses_and_reports_bad_input(capsys):
    parser = argparse.ArgumentParser()
    demo_command.configure_parser(parser)
    args = parser.parse_args(["--rl-steps", "5", "--selector", "uniform", "--num-generations", "1"])
    assert demo_command.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps demo: error:") and "num-generations" in err


def test_every_demo_option_has_a_help_text_with_its_default():
    parser = argparse.ArgumentParser(prog="mmdps demo")
    demo_command.configure_parser(parser)
    options = [action for action in parser._actions if action.option_strings and action.dest != "help"]
    assert {action.dest for action in options} >= {"seed", "rl_lr", "out", "no_progress"}
    for action in options:
        assert action.help, f"{action.option_strings[0]} has no help text"
        assert "default" in action.help, f"{action.option_strings[0]}: help does not give the default"
    text = parser.format_help()
    assert "(default 0.0001)" in text and "(default 0)" in text  # --rl-lr and --seed, formatted
