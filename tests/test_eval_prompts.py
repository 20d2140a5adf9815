"""`mmdps eval` measures every prompt before generating: an over-long prompt or one the model cannot take
stops the run up front naming the row (no report half written), or is left out and counted under
--skip-invalid; before, the run died after the earlier batches and ignored --skip-invalid."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmdps.cli import main as cli_main


@pytest.fixture(scope="module")
def text_model():
    from tiny_models import build

    return build("qwen2")


def eval_argv(model, data, out, *extra):
    return ["eval", "--model", str(model), "--task", "math", "--data", str(data), "--n", "1", "--max-new-tokens",
            "2", "--max-prompt-length", "512", "--output", str(out), "--no-progress", *extra]


def test_an_over_long_prompt_stops_the_run_before_generation_or_is_skipped(text_model, tmp_path, capsys):
    data = tmp_path / "probs.jsonl"
    rows = [{"problem": "What is 1+1?", "answer": "2"}, {"problem": "word " * 400, "answer": "3"},
            {"problem": "What is 2+2?", "answer": "4"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert cli_main(eval_argv(text_model, data, out)) == 2
    error = capsys.readouterr().err
    assert "1 of 3 prompts cannot be evaluated: item 1 (probs row 1):" in error
    assert "> max_prompt_length=512" in error and "--skip-invalid" in error
    assert not (out / "report.json").exists()

    with pytest.warns(UserWarning, match="left out"):
        assert cli_main(eval_argv(text_model, data, out, "--skip-invalid")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_problems"] == 2 and report["config"]["skipped_prompts"] == 1


def test_an_image_for_a_text_model_is_named_before_generation(text_model, tmp_path, capsys):
    Image.new("RGB", (40, 30), "white").save(tmp_path / "d.png")
    data = tmp_path / "geo.jsonl"
    data.write_text(json.dumps({"problem": "<image>Find x.", "answer": "3", "images": ["d.png"]}) + "\n")
    argv = eval_argv(text_model, data, tmp_path / "run")
    argv[argv.index("math")] = "geometry"
    assert cli_main(argv) == 2
    assert "item 0 (geo row 0): cannot be encoded (ValueError: item 0: has an image but the model is text-only" \
        in capsys.readouterr().err
