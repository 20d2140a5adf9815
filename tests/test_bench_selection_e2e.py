"""The selector benchmark end to end at smoke-test sizes: prepare, parallel runs, time limit, summary."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_selection_e2e.py"


def bench(*args: str, ok: bool = True) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", *args], capture_output=True, text=True,
                            timeout=900)
    assert (result.returncode == 0) == ok, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def load_script():
    spec = importlib.util.spec_from_file_location("bench_selection_e2e", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_runs_summarizes_and_stops_launching_at_the_time_limit(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    log = bench("--workers", "2", "--regimes", "a", "c", "--runs", "uniform", "dps-c2", "--seeds", "0",
                "--work", str(work), "--out", str(out), "--archive")
    runs = sorted(p.name for p in (work / "runs").glob("*.json"))
    assert runs == ["a-dps-c2-s0.json", "a-uniform-s0.json", "c-dps-c2-s0.json", "c-uniform-s0.json"], log
    for name in ("summary.json", "table.md", "curves.png", "diagnostics.png", "runs.tar.gz"):
        assert (out / name).stat().st_size > 0, name
    run = json.loads((work / "runs" / "a-dps-c2-s0.json").read_text())
    assert run["candidate_ratio"] == 2.0 and run["steps"][-1]["rollouts_total"] >= run["budget"]
    assert [p["rollouts"] for p in run["curve"]][0] == 0 and len(run["curve"]) == 2
    assert {"test_sampled", "val_sampled", "pool_greedy"} <= run["curve"][-1].keys()
    assert {"prompts/repeat_share", "informative_token_share", "update_norm"} <= run["steps"][0].keys()
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert set(summary) == {"a", "c"} and set(summary["a"]["rows"]) == {"uniform", "dps-c2"}
    assert summary["a"]["choice"]["chosen_on_validation"] == "dps-c2"
    # The tiny warm start solves nothing, so regime c's mix cannot be met: the log and the table say so.
    assert "WARNING: Regime c's designed mix was not met" in log
    assert "Regime c's designed mix was not met" in (out / "table.md").read_text()

    # Past the time limit nothing new is launched; the summary covers what finished.
    log = bench("--workers", "1", "--regimes", "a", "--runs", "uniform", "--seeds", "5", "--time-limit", "0",
                "--work", str(work), "--out", str(out))
    assert "1 runs not launched" in log and not (work / "runs" / "a-uniform-s5.json").exists()

    # --summarize-only rebuilds the tables from the archive alone.
    again = tmp_path / "again"
    again.mkdir()
    with tarfile.open(out / "runs.tar.gz") as tar:
        assert len(tar.getnames()) == 4
    (again / "runs.tar.gz").write_bytes((out / "runs.tar.gz").read_bytes())
    bench("--summarize-only", str(again))
    assert "Regime c" in (again / "table.md").read_text()


def test_visual_data_gives_regime_c_fine_angles_and_unlearned_levels_and_fresh_sets():
    script = load_script()
    args = script.parse_args(["--task", "visual", "--tiny"])
    assert args.sft_steps == 10 and script.parse_args(["--task", "visual"]).sft_steps == 2400
    assert script.parse_args([]).sft_steps == 900
    data = script.RECIPES["visual"].build_data(args)
    sizes = {name: len(items) for name, items in data.items()}
    assert sizes == {"sft": 56, "test": 24, "validation": 16, "pool_a": 24, "pool_b": 16, "c_hard": 23, "c_mid": 14}
    hard = data["c_hard"]
    assert {item.metadata["problem_type"] for item in hard} == {"angle", "complement", "third", "number", "sum"}
    fine = [item for item in hard[:11] if item.metadata["problem_type"] == "angle"]
    assert fine and any(int(item.ground_truth) % 10 for item in hard[:11])  # 1-degree steps, not multiples of 10
    assert all(int(item.ground_truth) % 10 == 0 for item in data["test"] if item.metadata["problem_type"] == "angle")
    pixels = {name: [item.images[0].tobytes() for item in items] for name, items in data.items()}
    assert not set(pixels["test"]) & (set(pixels["validation"]) | set(pixels["pool_a"]) | set(pixels["sft"]))


@pytest.mark.slow
def test_visual_task_runs_end_to_end_and_keeps_its_own_work_folder(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    bench("--task", "visual", "--workers", "1", "--regimes", "c", "--runs", "uniform", "dps", "--seeds", "0",
          "--work", str(work), "--out", str(out))
    run = json.loads((work / "runs" / "c-dps-s0.json").read_text())
    assert run["task"] == "visual" and run["steps"][-1]["rollouts_total"] >= run["budget"] == 96
    assert {"test_sampled", "val_sampled", "pool_greedy"} <= run["curve"][-1].keys()
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert meta["task"] == ["visual"] and meta["pool_c_composition"]["candidates"] == [16, 23, 14]
    assert "tiny Qwen2-VL" in (out / "table.md").read_text()
    assert (work / "warm-start" / "processor_config.json").is_file()  # the processor, not only a tokenizer
    # A Countdown run in the same folder would mix two tasks' runs in one summary: refused.
    log = bench("--work", str(work), "--out", str(out), ok=False)
    assert "holds runs of task visual" in log
