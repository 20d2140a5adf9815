"""Choose DPS's ``novelty`` on a validation simulator configuration, then check it on a held-out one.

The simulator (``docs/simulator.md``) with shared skills and diminishing returns per visit (novelty power
0.5, the setting that reproduces the real model's ranking of selectors) scores each selector by the final
held-out solve rate at equal rollouts. This script:

1. validation: runs uniform and DPS with every ``--novelty`` value on the validation configuration
   (1,000 prompts, B = 32, the configuration of docs/simulator.md) over the validation seeds, prints mean and
   standard error, and picks the value with the best mean held-out solve rate (ties: the smaller value);
2. test: runs uniform, paper DPS (novelty 0) and the chosen value once on a configuration the choice never
   saw (2,000 prompts, B = 64, 16 skill groups, other seeds), and reports the paired differences.

The chosen value is a recommendation only if it beats both uniform and novelty 0 on validation AND on test.
3. sensitivity (reported, never used to choose): the test configuration in worlds where repeat visits teach
   as much as the first (novelty power 0) or much less (power 1), for uniform, paper DPS and the chosen value.

    python scripts/sweep_dps_novelty.py                      # about a minute on one core
    python scripts/sweep_dps_novelty.py --seeds 0 1 2 --out outputs/novelty.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmdps.selection.simulator import Dynamics, simulate

VALIDATION = {"num_prompts": 1000, "batch_size": 32, "k": 8, "steps": 63,
              "dynamics": {"skills": 8, "skill_gain": 0.5, "heldout": 1000, "novelty_power": 0.5}}
TEST = {"num_prompts": 2000, "batch_size": 64, "k": 8, "steps": 63,
        "dynamics": {"skills": 16, "skill_gain": 0.5, "heldout": 2000, "novelty_power": 0.5}}
DECAY = 0.5  # DPS's default, as in docs/simulator.md


def dps_label(novelty: float) -> str:
    return "dps" if novelty == 0 else f"dps, novelty {novelty:g}"


def with_power(config: dict[str, Any], power: float) -> dict[str, Any]:
    return {**config, "dynamics": {**config["dynamics"], "novelty_power": power}}


def run(config: dict[str, Any], novelties: list[float], seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """Per selector label, per metric: one value per seed."""
    entries: list[Any] = ["uniform"] + [(dps_label(v), "dps", {"decay": DECAY, "novelty": v}) for v in novelties]
    out: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        result = simulate(entries, num_prompts=config["num_prompts"], batch_size=config["batch_size"], k=config["k"],
                          steps=config["steps"], seed=seed, equal_rollouts=True,
                          dynamics=Dynamics(**config["dynamics"]))
        for row in result["results"]:
            metrics = out.setdefault(row["selector"], {"heldout": [], "informative": [], "repeat": [], "brier": []})
            metrics["heldout"].append(row["final_heldout_solve_rate"])
            metrics["informative"].append(row["effective_ratio_trained"])
            metrics["repeat"].append(row["repeat_share"])
            metrics["brier"].append(row.get("brier_mean", float("nan")))
    return out


def stats(values: list[float]) -> dict[str, float]:
    """Mean and standard error over seeds."""
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else float("nan")
    return {"mean": float(arr.mean()), "se": se}


def summary(runs: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, Any]]:
    base = np.asarray(runs["uniform"]["heldout"])
    out = {}
    for label, metrics in runs.items():
        heldout = np.asarray(metrics["heldout"])
        row: dict[str, Any] = {key: stats(values) for key, values in metrics.items()}
        row["vs_uniform"] = stats(list(heldout - base))  # paired: same seed, same population
        row["vs_dps"] = stats(list(heldout - np.asarray(runs["dps"]["heldout"])))
        out[label] = row
    return out


def print_table(title: str, table: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'selector':<22} {'held-out':>16} {'- uniform (paired)':>20} {'- dps (paired)':>18} "
          f"{'informative':>12} {'repeat':>7} {'brier':>6}")
    for label, row in table.items():
        cells = [f"{row[key]['mean']:.3f} ± {row[key]['se']:.3f}" for key in ("heldout", "vs_uniform", "vs_dps")]
        print(f"{label:<22} {cells[0]:>16} {cells[1]:>20} {cells[2]:>18} {row['informative']['mean']:>12.2f} "
              f"{row['repeat']['mean']:>7.2f} {row['brier']['mean']:>6.3f}")


def wins(row: dict[str, Any]) -> bool:
    """Ahead of both uniform and paper DPS by more than two paired standard errors."""
    return all(row[key]["mean"] > 2 * row[key]["se"] for key in ("vs_uniform", "vs_dps"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--novelty", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0],
                        help="values of DPS's novelty to compare on validation (0 = paper DPS, always included)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="validation seeds")
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104],
                        help="seeds of the held-out test configuration")
    parser.add_argument("--out", type=Path, default=Path("outputs/sweep_dps_novelty.json"),
                        help="JSON file to write (default outputs/sweep_dps_novelty.json)")
    args = parser.parse_args()
    if len(args.seeds) < 2 or len(args.test_seeds) < 2:
        parser.error("--seeds and --test-seeds need at least 2 seeds each (the spread is reported)")
    if any(not np.isfinite(v) or v < 0 for v in args.novelty):
        parser.error(f"--novelty values must be finite numbers >= 0, got {args.novelty}")
    novelties = sorted(set([0.0, *args.novelty]))
    start = time.perf_counter()

    validation = summary(run(VALIDATION, novelties, args.seeds))
    print_table(f"Validation: {VALIDATION['num_prompts']} prompts, B={VALIDATION['batch_size']}, seeds {args.seeds} "
                "(final held-out solve rate, mean ± standard error)", validation)
    chosen = max(novelties, key=lambda v: (validation[dps_label(v)]["heldout"]["mean"], -v))
    print(f"\nchosen on validation: novelty {chosen:g}")

    test_novelties = sorted({0.0, chosen})
    test = summary(run(TEST, test_novelties, args.test_seeds))
    print_table(f"Test (held out): {TEST['num_prompts']} prompts, B={TEST['batch_size']}, seeds {args.test_seeds}",
                test)
    sensitivity = {}
    for power in (0.0, 1.0):
        sensitivity[f"novelty_power_{power:g}"] = table = summary(run(with_power(TEST, power), test_novelties,
                                                                       args.test_seeds))
        print_table(f"Sensitivity (not used to choose): the test configuration with world novelty power {power:g}",
                    table)
    recommended = chosen != 0 and wins(validation[dps_label(chosen)]) and wins(test[dps_label(chosen)])
    print(f"\nnovelty {chosen:g} {'wins' if recommended else 'does not win'} against uniform and paper DPS on "
          f"validation and test (by > 2 paired standard errors); {time.perf_counter() - start:.0f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"validation_config": VALIDATION, "test_config": TEST, "decay": DECAY,
                                    "seeds": args.seeds, "test_seeds": args.test_seeds, "novelty": novelties,
                                    "validation": validation, "chosen": chosen, "test": test,
                                    "sensitivity": sensitivity, "recommended": recommended}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
