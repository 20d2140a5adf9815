"""scripts/gpu_check.py --dry-run: the GPU check's code, end to end on the CPU with tiny sizes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_writes_every_figure(tmp_path):
    gpu_check = load_script()
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    settings = data["settings"]
    assert data["gpu_tests"]["rc"] == 0 and "skipped" in data["gpu_tests"]["summary"]  # no CUDA here
    assert (tmp_path / "gpu_tests.log").is_file()
    for kind in ("text", "vl"):
        ours = data[f"mmdps_{kind}"]
        assert ours["parameters"] > 0 and ours["step_s"] > 0 and ours["rollout_tokens_per_s"] > 0
        for step in ours["steps"]:  # every completion has exactly max_new_tokens tokens
            assert step["tokens"] == settings["batch"] * settings["k"] * settings["max_new_tokens"]
        theirs = data[f"trl_{kind}"]
        if data["environment"]["trl"][0].isdigit():
            assert theirs["ratio_mmdps_over_trl"] == pytest.approx(ours["step_s"] / theirs["step_s"])
        else:
            assert "TRL is not importable" in theirs["skipped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_tests.log"]  # figures only


def test_a_short_budget_skips_phases_and_says_so(tmp_path):
    gpu_check = load_script()
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--budget-s", "1"]) == 0
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    for phase in ("gpu_tests", "mmdps_text", "mmdps_vl"):
        assert data[phase]["skipped"].startswith("time budget")
