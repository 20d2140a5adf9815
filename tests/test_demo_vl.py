"""The vision-language CPU demo at toy sizes: data, image SFT, GRPO through the trainer, blank control, CLI."""

from __future__ import annotations

import argparse
import json

import pytest

from mmdps.commands import demo as demo_command
from mmdps.demos import RECIPES, run_demo, vl


def tiny_settings(**overrides) -> vl.VLDemoSettings:
    values = dict(threads=1, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vision_width=16,
                  vision_depth=1, vision_heads=1, levels=("digit", "sum", "third"), sft_per_level=4, pool_size=8,
                  heldout_per_level=2, sft_steps=3, sft_batch_size=8, rl_steps=2, batch_size=4, num_generations=2,
                  eval_every=1, eval_samples=2, progress=False)
    values.update(overrides)
    return vl.VLDemoSettings(**values)


def test_data_blank_twin_and_encoded_sft_examples():
    settings = tiny_settings()
    data = vl.make_data(settings)
    assert len(data.heldout) == len(data.blank) == 6 and len(data.pool) == 8 and len(data.sft) == 12
    assert [(i.text, i.ground_truth) for i in data.blank] == [(i.text, i.ground_truth) for i in data.heldout]
    assert {i.metadata["problem_type"] for i in data.sft} == {"digit", "sum", "third"}
    assert settings.level_names == ("L0: digit", "L2: sum", "L6: third")
    # the held-out set does not depend on the seed; the pool does
    other = vl.make_data(tiny_settings(seed=1))
    assert [i.metadata for i in other.heldout] == [i.metadata for i in data.heldout]
    assert [i.metadata for i in other.pool] != [i.metadata for i in data.pool]
    processor = vl.build_processor()
    prompts, targets = vl.sft_examples(data.sft, processor)
    tokenizer = processor.tokenizer
    first = tokenizer.decode(prompts[0].input_ids + targets[0])
    assert first.startswith("<|vision_start|><|image_pad|>")
    assert first.endswith(f"digit={data.sft[0].ground_truth}<|im_end|>")
    assert sum(prompts[0].mm_token_type_ids) == 8 and sum(prompts[2].mm_token_type_ids) == 16  # 112x56 / 112x112
    assert max(len(p) for p in prompts) <= vl.MAX_PROMPT_LENGTH


@pytest.mark.slow
def test_vl_demo_end_to_end_is_reproducible(tmp_path):
    settings = tiny_settings()
    first = run_demo(RECIPES["vl"], settings, tmp_path / "a", log=lambda _: None)
    summary = json.loads((tmp_path / "a" / "demo.json").read_text())
    assert (tmp_path / "a" / "demo.png").stat().st_size > 0
    assert (tmp_path / "a" / "grpo" / "metrics.jsonl").is_file()
    assert summary["rollouts"] == 2 * 4 * 2
    assert [p["step"] for p in summary["curve"]] == [0, 1, 2]
    for point in summary["curve"]:
        assert set(point["by_level"]) == {"L0", "L2", "L6"} and point["prompts"] == 6
        assert set(point["blank"]["by_level"]) == {"L0", "L2", "L6"} and 0 <= point["blank"]["greedy"] <= 1
        assert len(point["per_prompt"]["greedy"]) == len(point["per_prompt"]["sampled"]) == 6
        assert sum(point["per_prompt"]["greedy"]) / 6 == pytest.approx(point["greedy"])
    assert summary["sft"]["steps"] == 3 and summary["sft"]["parameters"] > 0
    assert summary["step_seconds"]["step"] > 0
    second = run_demo(RECIPES["vl"], settings, tmp_path / "b", log=lambda _: None)

    def numbers(point):
        return {key: point[key] for key in ("greedy", "sampled", "mixed", "by_level", "rollouts")} | {
            "blank": {key: point["blank"][key] for key in ("greedy", "sampled", "by_level")}}

    assert [numbers(p) for p in second["curve"]] == [numbers(p) for p in first["curve"]]
    assert [s["reward_mean"] for s in second["steps"]] == [s["reward_mean"] for s in first["steps"]]


def _parse(argv):
    parser = argparse.ArgumentParser()
    demo_command.configure_parser(parser)
    return parser.parse_args(argv)


def test_cli_picks_the_demo_and_its_defaults(capsys):
    chosen = demo_command.settings_from_args(_parse(["--vl", "--levels", "digit", "6", "--rl-steps", "7"]))
    assert isinstance(chosen, vl.VLDemoSettings)
    assert chosen.levels == ("digit", 6) and chosen.rl_steps == 7 and chosen.sft_steps == vl.VLDemoSettings().sft_steps
    assert chosen.selector == "uniform"
    assert demo_command.settings_from_args(_parse(["--vl"])).levels == ("digit", "number", "sum", "max")
    text = demo_command.settings_from_args(_parse([]))
    assert not isinstance(text, vl.VLDemoSettings) and text.selector == "dps"
    assert demo_command.run(_parse(["--levels", "digit"])) == 2
    assert "add --vl" in capsys.readouterr().err
    assert demo_command.run(_parse(["--vl", "--levels", "angles"])) == 2
    assert "unknown visual level 'angles'" in capsys.readouterr().err


def test_summary_states_the_measured_change_against_the_noise():
    """The demo's verdict line follows its own numbers: no claimed gain when the change is within the noise."""
    from mmdps.demos.vl import measured_change

    # without per-prompt results: the binomial standard error of one greedy evaluation (1.5 points at 700)
    before = {"greedy": 0.20, "sampled": 0.15, "prompts": 700}
    assert "In all: a gain beyond the noise in both" in measured_change(before, {"greedy": 0.30, "sampled": 0.25})
    assert "no change beyond about two standard errors" in measured_change(before, {"greedy": 0.199, "sampled": 0.17})
    assert "a loss beyond the noise" in measured_change(before, {"greedy": 0.10, "sampled": 0.05})
    assert "+10.0 points" in measured_change(before, {"greedy": 0.30, "sampled": 0.25})


def test_verdict_compares_the_same_prompts_pairwise():
    """Per-prompt results: each accuracy is judged by the standard error of its own paired change."""
    from mmdps.demos.vl import measured_change

    def point(greedy, sampled):
        return {"greedy": sum(greedy) / len(greedy), "sampled": sum(sampled) / len(sampled), "prompts": len(greedy),
                "per_prompt": {"greedy": greedy, "sampled": sampled}}

    n = 400
    greedy = [float(i % 3 == 0) for i in range(n)]
    sampled = [(i % 7) / 10 for i in range(n)]
    # sampled +0.05 on every prompt (no spread: far beyond the noise); greedy: 16 prompts turn right and 8 wrong
    # (+2 points, 1.6 standard errors)
    flipped = [1.0 - g if i < 24 and not g or 24 <= i < 48 and g else g for i, g in enumerate(greedy)]
    after = point(flipped, [s + 0.05 for s in sampled])
    text = measured_change(point(greedy, sampled), after)
    assert "greedy +2.0 points" in text and "sampled (the T=1 accuracy GRPO maximises) +5.0 points" in text
    assert "In all: a gain beyond the noise in sampled accuracy only" in text
    # the same mean changes spread over prompts both ways are within the noise (greedy: 40 right, 32 wrong)
    noisy = point([1.0 - g if i < 60 and not g or 60 <= i < 156 and g else g for i, g in enumerate(greedy)],
                  [s + (0.55 if i % 2 else -0.45) for i, s in enumerate(sampled)])
    assert "no change beyond about two standard errors" in measured_change(point(greedy, sampled), noisy)


def test_summary_prints_only_what_the_run_measured(tmp_path):
    """No fixed conclusion: the lines after the table are the run's own figures and its paired verdict."""
    level = {"greedy": 0.5, "sampled": 0.4}
    point = {"greedy": 0.5, "sampled": 0.4, "prompts": 100, "by_level": {"L0": level},
             "blank": {"greedy": 0.1, "sampled": 0.1, "by_level": {"L0": level}}}
    summary = {"before": point, "after": dict(point, greedy=0.6), "curve": [point], "rollouts": 64,
               "rl_seconds": 3.0, "total_seconds": 9.0, "cpu_seconds": 8.0, "settings": {"eval_samples": 8},
               "step_seconds": {"step": 1.0, "rollout": 0.4, "train": 0.6}, "sft": {"seconds": 2.0}}
    lines: list[str] = []
    vl.print_summary(summary, tmp_path, lines.append)
    text = "\n".join(lines)
    assert "What RL changed here (100 held-out prompts" in text and "greedy +10.0 points" in text
    assert "What it shows" not in text and "does not show" not in text and "docs/" not in text
