"""The allocation comparison script (scripts/bench_allocation.py) on a tiny population."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_allocation.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_allocation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_mode_spends_the_same_rollouts(tmp_path):
    out = tmp_path / "alloc.json"
    assert _module().main(["--seeds", "0", "1", "--num-prompts", "120", "--batch-size", "8", "--steps", "6",
                           "--selectors", "uniform", "dps", "mopps", "--settings", "validated", "--out",
                           str(out)]) == 0
    result = json.loads(out.read_text())
    budget = 6 * 8 * 8
    for run in result["runs"]:
        # every run stops at the first step that reaches the budget; a step spends at most B x k
        assert budget <= run["rollouts"] < budget + 8 * 8
        assert run["k_max"] <= 16 and 0 <= run["informative_rollout_share"] <= 1
        if run["mode"] == "predicted":
            assert run["rollouts"] == budget and run["steps"] == 6  # every step spends exactly B x k
    modes = {(e["selector"], e["mode"]) for e in result["summary"]}
    assert modes == {("uniform", "fixed")} | {(s, m) for s in ("dps", "mopps")
                                              for m in ("fixed", "predicted", "until_signal")}
    assert "| validated | dps | predicted |" in out.with_suffix(".md").read_text()
    assert [e["seeds"] for e in result["summary"]] == [2] * len(result["summary"])
    with pytest.raises(SystemExit):
        _module().main(["--modes", "adaptive"])
