"""What the selector benchmark (``bench_selection_e2e.py``) and its summary (``summarize_selection_e2e.py``)
both need: the run names, the regimes' texts, the benchmark's tasks and reading the per-run JSONs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

# name -> (selector, selector_kwargs, candidate_ratio). "dps" is the paper-faithful setting (top-B over the
# whole pool, Countdown's lambda 0.5); the rest are the variants under test.
RUNS: dict[str, tuple[str, dict, float | None]] = {
    "uniform": ("uniform", {}, None),
    "ds": ("ds", {"oversample": 1.0, "max_rounds": 10}, None),  # the DPS paper's DS runs (Countdown: 10 rounds)
    "mopps": ("mopps", {"decay": 0.5}, 8.0),  # the official Countdown script: ts_ratio 8, lambda 0.5
    "dps": ("dps", {"decay": 0.5}, None),
    "dps-c2": ("dps", {"decay": 0.5}, 2.0),
    "dps-c4": ("dps", {"decay": 0.5}, 4.0),
    "dps-c8": ("dps", {"decay": 0.5}, 8.0),
    "dps-d0.7": ("dps", {"decay": 0.7}, None),
    "dps-d0.9": ("dps", {"decay": 0.9}, None),
    "dps-sample": ("dps", {"decay": 0.5, "strategy": "sample"}, None),
    "dps-sample-t0.25": ("dps", {"decay": 0.5, "strategy": "sample", "temperature": 0.25}, None),
    "dps-cap1": ("dps", {"decay": 0.5, "max_consecutive": 1}, None),
    # P(partial) discounted by visits, the setting the simulator chose on validation (docs/simulator.md)
    "dps-nov0.4": ("dps", {"decay": 0.5, "novelty": 0.4}, None),
}
# Not run by default (the device time buys another seed instead; the default set keeps earlier tables comparable).
OPTIONAL_RUNS = ("dps-sample-t0.25", "dps-nov0.4")
BASELINES = ("uniform", "ds", "mopps")
REGIME_TEXT = {"a": "1,000 prompts, ~2 passes", "b": "|D| = 8 B, ~15 passes",
               "c": "realistic mix: mostly always / never solved"}
MIX_NOT_MET = ("Regime c's designed mix was not met: the warm start solved too few candidates every time (or "
               "never), so its pool was filled up unscreened and is not the realistic mix. Leave c out "
               "(--regimes a b) or start from a stronger warm start (--sft-steps).")
# The benchmark's task -> the demo recipe (mmdps.demos.RECIPES) whose model and GRPO recipe it uses.
TASK_RECIPES = {"countdown": "countdown", "visual": "vl"}


def task_title(task: str) -> str:
    from mmdps.demos import RECIPES

    return RECIPES[TASK_RECIPES[task]].title


def run_data_seed(run: dict) -> int:
    """The warm start a run trained from (runs written before ``--data-seed`` existed: 0, today's default)."""
    return int(run.get("data_seed", 0))


def load_runs(folder: Path) -> list[dict]:
    """The per-run JSONs of a work folder (``runs/*.json``), or of its ``runs.tar.gz`` when it has none."""
    runs = [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]
    if not runs and (folder / "runs.tar.gz").is_file():
        with tarfile.open(folder / "runs.tar.gz") as tar:
            runs = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    return runs
