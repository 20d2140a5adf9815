"""The selector benchmark end to end at smoke-test sizes: prepare, parallel runs, time limit, summary."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SCRIPT = SCRIPTS / "bench_selection_e2e.py"


def bench(*args: str, ok: bool = True) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", *args], capture_output=True, text=True,
                            timeout=900)
    assert (result.returncode == 0) == ok, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def load_script(name: str = "bench_selection_e2e"):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
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
    assert run["data_seed"] == 0 and run["candidate_ratio"] == 2.0
    assert run["steps"][-1]["rollouts_total"] >= run["budget"]
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

    # The summary script rebuilds the tables from the archive alone.
    again = tmp_path / "again"
    again.mkdir()
    with tarfile.open(out / "runs.tar.gz") as tar:
        assert len(tar.getnames()) == 4
    (again / "runs.tar.gz").write_bytes((out / "runs.tar.gz").read_bytes())
    result = subprocess.run([sys.executable, str(SCRIPTS / "summarize_selection_e2e.py"), str(again)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Regime c" in (again / "table.md").read_text() and "from one SFT warm start" in result.stdout

    # Another warm start needs its own work folder.
    log = bench("--data-seed", "1", "--regimes", "a", "--runs", "uniform", "--seeds", "0", "--work", str(work),
                "--out", str(out), ok=False)
    assert "holds runs of data seed 0" in log


def test_visual_data_gives_regime_c_fine_angles_and_unlearned_levels_and_fresh_sets():
    script = load_script()
    args = script.parse_args(["--task", "visual", "--tiny"])
    assert args.sft_steps == 10 and script.parse_args(["--task", "visual"]).sft_steps == 2400
    assert script.parse_args([]).sft_steps == 900
    data = script.TASKS["visual"].build_data(args)
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
    assert meta["task"] == ["visual"] and meta["warm_starts"] == [0]
    assert meta["warm_start_preparation"]["0"]["pool_c_composition"]["candidates"] == [16, 23, 14]
    assert "tiny Qwen2-VL" in (out / "table.md").read_text()
    assert (work / "warm-start" / "processor_config.json").is_file()  # the processor, not only a tokenizer
    # A Countdown run in the same folder would mix two tasks' runs in one summary: refused.
    log = bench("--work", str(work), "--out", str(out), ok=False)
    assert "holds runs of task visual" in log


def test_data_seed_zero_draws_what_the_benchmark_always_drew_and_another_seed_draws_fresh_sets():
    script = load_script()
    from mmdps.demos.countdown import problem_key

    def keys(data, name):
        return [problem_key(item.ground_truth) for item in data[name][:3]]

    default = script.TASKS["countdown"].build_data(script.parse_args(["--tiny"]))
    # the first problems of each set as the benchmark drew them before --data-seed existed
    assert keys(default, "sft") == [(224, (14, 16)), (19, (3, 16)), (26, (2, 13))]
    assert keys(default, "test") == [(16, (1, 2, 9)), (104, (8, 13)), (56, (7, 8))]
    assert keys(default, "c_hard") == [(1, (2, 3, 19, 23)), (24, (1, 2, 5, 12)), (26, (2, 8, 9, 11))]
    assert default["test"][0].metadata == {"solution": "(9 - 1) * 2", "difficulty": 1, "problem_type": "L1",
                                           "source": "test"}
    other = script.TASKS["countdown"].build_data(script.parse_args(["--tiny", "--data-seed", "1"]))
    for name in ("sft", "test", "validation", "pool_a", "c_hard"):
        assert not {problem_key(i.ground_truth) for i in other[name]} <= {problem_key(i.ground_truth)
                                                                          for i in default[name]}, name
    visual = script.TASKS["visual"].build_data(script.parse_args(["--tiny", "--task", "visual"]))
    assert [(item.text[-7:], item.ground_truth) for item in visual["test"][:2]] == [("digit=", 2), ("number=", 63)]


def test_screening_scores_through_rollout_and_score_with_the_items_metadata():
    """A verifier that needs the item's metadata: scoring without it (the verifier called directly) fails."""
    from mmdps import verifiers
    from mmdps.data.item import Item
    from mmdps.rollout.base import Completion

    @verifiers.register("test_bench_metadata")
    def needs_metadata(completion, ground_truth, *, expected=None, **_):
        return {"score": float(completion == expected), "acc": float(completion == expected), "format": 1.0}

    class Engine:
        def generate(self, items, k, sampling):
            return [[Completion(text="a" if j < item.id else "b", token_ids=[1]) for j in range(k)] for item in items]

    script = load_script()
    args = script.parse_args(["--tiny", "--eval-batch", "8"])
    items = [Item(id=i, messages=[{"role": "user", "content": "q"}], ground_truth=0, verifier="test_bench_metadata",
                  metadata={"expected": "a"}) for i in range(5)]
    rates = script.sample_success(Engine(), items, 4, args, seed=0)
    assert rates.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def _run(regime: str, name: str, data_seed: int, seed: int, final: float) -> dict:
    """A hand-made run record: test accuracy rising linearly from 0.1 to ``final``."""
    curve = [{"rollouts": r, "test_sampled": 0.1 + (final - 0.1) * r / 100, "test_greedy": final, "val_sampled": final,
              "val_greedy": final, "pool_greedy": final} for r in (0, 50, 100)]
    step = {"rollouts_total": 100, "prompts/distinct_total": 10, "prompts/mean_visits": 1.0, "effective_ratio": 0.5}
    return {"regime": regime, "run": name, "seed": seed, "data_seed": data_seed, "budget": 100, "curve": curve,
            "steps": [step], "train_seconds": 1.0, "task": "countdown", "device": "cpu"}


def test_summary_averages_rl_seeds_within_each_warm_start_then_over_warm_starts():
    summary_script = load_script("summarize_selection_e2e")
    # warm start 0: dps-d0.9 beats uniform by 0.02, 0.03, 0.04; warm start 1 loses by 0.01 on every seed
    runs = []
    for seed, diff in enumerate((0.02, 0.03, 0.04)):
        runs += [_run("c", "uniform", 0, seed, 0.2), _run("c", "dps-d0.9", 0, seed, 0.2 + diff)]
    for seed in (5, 6, 7):
        runs += [_run("c", "uniform", 1, seed, 0.3), _run("c", "dps-d0.9", 1, seed, 0.29)]
    runs.append(_run("c", "uniform", 1, 8, 0.9))  # no dps-d0.9 run of this pair: left out

    kept, dropped = summary_script.balanced(runs)
    assert dropped == ["c-uniform-s8-d1"] and len(kept) == 12
    choice = summary_script.summarize(kept)["c"]["choice"]
    both = choice["dps-d0.9_minus_uniform_final_test_sampled"]
    # the mean of the warm-start means (0.03, -0.01), its standard error over those two means, 1 degree of freedom
    assert both.mean == pytest.approx(0.01) and both.se == pytest.approx(0.02)
    assert (both.n, both.df, both.over) == (2, 1, "warm starts")
    table = summary_script.markdown(summary_script.summarize(kept), {"warm_starts": [0, 1]})
    assert "from 2 SFT warm starts (data seeds 0, 1)" in table and "(1 degree of freedom)" in table
    assert "0.010 ± 0.020 (over 2 warm starts, 1 degree of freedom)" in table

    one = summary_script.summarize([r for r in kept if r["data_seed"] == 0])["c"]["choice"]
    alone = one["dps-d0.9_minus_uniform_final_test_sampled"]
    assert alone.mean == pytest.approx(0.03) and alone.se == pytest.approx(0.01 / 3 ** 0.5)
    assert (alone.n, alone.df, alone.over) == (3, 2, "RL seeds")
    assert "from one SFT warm start (data seed 0)" in summary_script.markdown(
        summary_script.summarize([r for r in kept if r["data_seed"] == 0]), {"warm_starts": [0]})


def test_summary_refuses_a_run_given_twice_and_a_mix_of_tasks(tmp_path):
    summary_script = load_script("summarize_selection_e2e")
    for folder, run in (("d0", _run("a", "uniform", 0, 0, 0.2)), ("copy", _run("a", "uniform", 0, 0, 0.2)),
                        ("vis", dict(_run("a", "uniform", 1, 0, 0.2), task="visual"))):
        (tmp_path / folder / "runs").mkdir(parents=True)
        (tmp_path / folder / "runs" / "a-uniform-s0.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="is in both"):
        summary_script.collect_runs([tmp_path / "d0", tmp_path / "copy"])
    with pytest.raises(SystemExit, match="several tasks"):
        summary_script.collect_runs([tmp_path / "d0", tmp_path / "vis"])
