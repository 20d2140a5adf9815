"""``mmdps eval --benchmark``: a tiny random VL model on a published-layout fixture (the pipeline and the
report fields are what is tested), an oracle engine for exact breakdown numbers, and --compare across
benchmarks."""

import json

import pytest

import mmdps.commands.eval as eval_module
from benchmark_fixtures import (
    write_geoqa_release,
    write_mathverse_hub_snapshot,
    write_mathvista_hub_snapshot,
)
from mmdps.cli import main as cli_main
from mmdps.eval import load_report
from mmdps.rollout.base import Completion, RolloutEngine


@pytest.mark.slow
def test_tiny_vl_model_on_a_benchmark_preset(tmp_path):
    from tiny_models import build

    data, _ = write_geoqa_release(tmp_path / "GeoQA")
    out = tmp_path / "geoqa"
    argv = ["eval", "--model", str(build("qwen2-vl")), "--benchmark", "geoqa", "--data", str(data), "--n", "2",
            "--max-new-tokens", "8", "--batch-size", "3", "--output", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_problems"] == 3 and report["n"] == 2 and set(report["pass_at_k"]) == {"1", "2"}
    assert 0.0 <= report["mean_at_n"] <= 1.0 and report["task"] == "geoqa"
    assert report["config"]["benchmark"] == "geoqa" and report["config"]["split"] == "test"
    assert set(report["breakdowns"]) == {"type"}
    assert {name: g["num_problems"] for name, g in report["breakdowns"]["type"].items()} == {
        "angle": 1, "length": 1, "other": 1}
    assert "By type (official breakdown)" in (out / "summary.md").read_text()


class AnswerFirstHalf(RolloutEngine):
    """Answers every item correctly in sample 0 (the published answer or its letter), wrongly in the others."""

    def generate(self, items, k, sampling):
        def right(item):
            letter = item.metadata.get("answer_letter")
            return letter or item.ground_truth

        return [[Completion(text=f"<think>ok</think> \\boxed{{{right(item) if j == 0 else 'zzz'}}}",
                            token_ids=[1, 2]) for j in range(k)] for item in items]


@pytest.fixture()
def oracle(monkeypatch):
    monkeypatch.setattr(eval_module, "build_engine", lambda *args, **kwargs: AnswerFirstHalf())


def test_reports_carry_the_official_breakdowns(oracle, tmp_path):
    mathvista, _ = write_mathvista_hub_snapshot(tmp_path / "mathvista-data")
    mathverse, _ = write_mathverse_hub_snapshot(tmp_path / "mathverse-data")
    for name, data in (("mathvista", mathvista), ("mathverse", mathverse)):
        argv = ["eval", "--model", "m", "--benchmark", name, "--data", str(data), "--n", "4",
                "--output", str(tmp_path / name), "--no-progress"]
        assert cli_main(argv) == 0
    report = load_report(tmp_path / "mathvista")
    assert report["num_problems"] == 4 and report["mean_at_n"] == pytest.approx(0.25)
    assert report["pass_at_k"][4] == pytest.approx(1.0) and report["config"]["split"] == "testmini"
    breakdowns = report["breakdowns"]
    assert list(breakdowns) == ["question_type", "answer_type", "language", "source", "category", "task",
                                "context", "grade", "skills"]
    assert breakdowns["task"]["geometry problem solving"]["num_problems"] == 1
    assert breakdowns["task"]["figure question answering"]["num_problems"] == 2
    assert breakdowns["skills"]["algebraic reasoning"]["num_problems"] == 2  # a problem counts in each skill
    assert breakdowns["skills"]["geometry reasoning"]["pass_at_k"][4] == pytest.approx(1.0)
    verse = load_report(tmp_path / "mathverse")
    assert set(verse["breakdowns"]["problem_version"]) == {"Text Dominant", "Text Lite", "Vision Intensive",
                                                            "Vision Dominant", "Vision Only"}
    assert verse["breakdowns"]["problem_version"]["Text Dominant"]["num_problems"] == 2
    assert verse["breakdowns"]["subfield"]["Plane Geometry-Angle"]["mean_at_n"] == pytest.approx(0.25)

    comparison = tmp_path / "compare"
    assert cli_main(["eval", "--compare", str(tmp_path / "mathvista"), str(tmp_path / "mathverse"),
                     "--output", str(comparison)]) == 0
    table = (comparison / "comparison.md").read_text()
    assert "The reports differ in `task`" in table
    assert "## mathvista: mean@n % by task" in table and "## mathverse: mean@n % by problem_version" in table
    assert "| geometry problem solving | 25.00 |" in table


def test_benchmark_command_line_errors(oracle, tmp_path, capsys):
    assert cli_main(["eval", "--model", "m", "--benchmark", "mathvista", "--task", "geometry",
                     "--output", str(tmp_path)]) == 2
    assert "give --task or --benchmark, not both" in capsys.readouterr().err
    assert cli_main(["eval", "--model", "m", "--benchmark", "mathvision", "--output", str(tmp_path)]) == 2
    assert "unknown benchmark 'mathvision'" in capsys.readouterr().err
    assert cli_main(["eval", "--model", "m", "--benchmark", "geoqa", "--data", str(tmp_path / "none.pk"),
                     "--output", str(tmp_path)]) == 2
    assert "neither a local file or folder nor a hub dataset id" in capsys.readouterr().err
