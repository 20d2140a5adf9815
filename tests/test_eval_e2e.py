"""`mmdps eval` end to end with the real task packs: the tiny VL model on the Geometry3K sample (CPU),
and, with an oracle engine standing in for the model, the procedural and generic-file geometry sets.
The tiny model's numbers are meaningless: the pipeline and the report fields are what is tested."""

import json

import pytest
from PIL import Image

import mmdps.commands.eval as eval_module
from mmdps.cli import main as cli_main
from mmdps.rollout.base import Completion, RolloutEngine

REPORT_FIELDS = {"mean_at_n", "pass_at_k", "n", "num_problems", "format_error_rate", "mean_score",
                 "tokens_generated", "mean_completion_tokens", "truncation_rate", "by_type", "by_difficulty", "timing",
                 "sampling", "config"}


def test_tiny_vl_model_on_the_geometry3k_sample(shared_data, tmp_path):
    from tiny_models import build

    model = build("qwen2-vl")
    out = tmp_path / "geo"
    argv = ["eval", "--model", str(model), "--task", "geometry3k", "--data", str(shared_data / "geometry3k_sample"),
            "--limit", "3", "--n", "2", "--max-new-tokens", "8", "--batch-size", "2", "--seed", "0",
            "--output", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert REPORT_FIELDS <= set(report)
    assert report["num_problems"] == 3 and report["n"] == 2 and set(report["pass_at_k"]) == {"1", "2"}
    assert 0.0 <= report["mean_at_n"] <= 1.0
    assert 0 < report["tokens_generated"] <= 3 * 2 * 8
    # Geometry3K's shape and goal types, each problem counted in each of its types
    assert report["by_type"] and all(name.startswith(("graph:", "goal:")) for name in report["by_type"])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == report["num_problems"] * report["n"]
    assert {s["sample"] for s in samples} == {0, 1} and all(s["tokens"] <= 8 for s in samples)
    assert "mean@2" in (out / "summary.md").read_text()


class OracleEngine(RolloutEngine):
    """Sample 0 of every item answers its ground truth in the expected format; the others answer nonsense."""

    def generate(self, items, k, sampling):
        right = "<think>easy</think> \\boxed{{{}}}"
        return [[Completion(text=right.format(item.ground_truth) if j == 0 else "no idea", token_ids=[1, 2, 3])
                 for j in range(k)] for item in items]


@pytest.fixture()
def oracle(monkeypatch):
    monkeypatch.setattr(eval_module, "build_engine", lambda *args, **kwargs: OracleEngine())


def test_procedural_geometry_set(oracle, tmp_path):
    out = tmp_path / "proc"
    argv = ["eval", "--model", "m", "--task", "geometry", "--data", "procedural", "--num", "6", "--n", "4",
            "--output", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_problems"] == 6
    assert report["mean_at_n"] == pytest.approx(1 / 4)
    assert report["pass_at_k"]["4"] == pytest.approx(1.0)
    assert report["format_error_rate"] == pytest.approx(3 / 4)
    assert report["config"]["data"] == "procedural"


def test_generic_image_question_answer_file_with_a_column_mapping(oracle, tmp_path):
    rows = []
    for i in range(3):
        Image.new("RGB", (40, 40), (10 * i, 80, 160)).save(tmp_path / f"fig{i}.png")
        rows.append({"query": f"What is the length of side {i}?", "label": str(3 + i), "img": f"fig{i}.png",
                     "kind": "length"})
    data = tmp_path / "vqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "vqa"
    argv = ["eval", "--model", "m", "--task", "geometry", "--data", str(data),
            "--columns", "question=query,answer=label,image=img,problem_type=kind", "--n", "2",
            "--output", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_problems"] == 3 and report["mean_at_n"] == pytest.approx(0.5)
    assert report["by_type"]["length"]["num_problems"] == 3


def test_own_reward_function_scores_the_evaluation(oracle, tmp_path, capsys):
    """`--reward-function` replaces the task's verifier, as `reward_function` does in training."""
    (tmp_path / "reward.py").write_text("def unsure(completion, ground_truth, **metadata):\n"
                                        "    return float(completion == 'no idea')\n")
    out = tmp_path / "own"
    argv = ["eval", "--model", "m", "--task", "geometry", "--data", "procedural", "--num", "4", "--n", "4",
            "--reward-function", f"{tmp_path / 'reward.py'}:unsure", "--output", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mean_at_n"] == pytest.approx(3 / 4)  # the oracle's 3 nonsense answers of 4 count, its right one not
    assert report["config"]["reward_function"] == [f"{tmp_path / 'reward.py'}:unsure"]
    argv[argv.index("--reward-function") + 1] = f"{tmp_path / 'missing.py'}:unsure"
    assert cli_main(argv) == 2 and "missing.py" in capsys.readouterr().err
