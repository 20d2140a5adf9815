"""The selector benchmark end to end at smoke-test sizes: prepare, parallel runs, time limit, summary."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_selection_e2e.py"


def bench(*args: str) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", *args], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


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
