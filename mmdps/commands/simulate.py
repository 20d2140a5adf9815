"""``mmdps simulate``: compare prompt selectors on a simulated prompt population (docs/simulator.md).

The engine is :func:`mmdps.selection.simulator.simulate` (numpy only); this module adds the command
line, the table and the plot.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmdps.selection import SELECTORS
from mmdps.selection.base import STATE_NAMES
from mmdps.selection.simulator import DEFAULT_SELECTORS, Dynamics, simulate


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter  # --help shows every default
    parser.add_argument("--selectors", nargs="+", default=list(DEFAULT_SELECTORS), choices=sorted(SELECTORS),
                        metavar="NAME", help=f"selectors to compare, from {', '.join(sorted(SELECTORS))}")
    parser.add_argument("--num-prompts", type=int, default=2000, help="simulated prompts in the pool")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per optimizer step (B)")
    parser.add_argument("--k", type=int, default=8, help="rollouts per prompt")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per selector")
    parser.add_argument("--target", type=float, default=0.5, help="target mean solve rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the population, rollouts and selectors")
    parser.add_argument("--ds-oversample", type=float, default=1.0, help="DS generation batch / training batch")
    parser.add_argument("--ds-max-rounds", type=int, default=10, help="DS refill rounds per step")
    parser.add_argument("--equal-rollouts", action="store_true",
                        help="every selector spends uniform's rollouts (default: every selector takes --steps steps)")
    for field, default in asdict(Dynamics()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=float, default=default,
                            help="dynamics (docs/simulator.md)")
    parser.add_argument("--out", default="outputs/simulate", help="folder for simulate.json and simulate.png")


def run(args: argparse.Namespace) -> int:
    dyn = Dynamics(**{field: getattr(args, field) for field in asdict(Dynamics())})
    try:
        report = simulate(args.selectors, args.num_prompts, args.batch_size, args.k, args.steps, args.target,
                          args.seed, dyn, args.ds_oversample, args.ds_max_rounds, args.equal_rollouts)
    except ValueError as exc:  # e.g. a batch larger than the pool
        from mmdps.cli import fail

        return fail("simulate", exc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulate.json").write_text(json.dumps(report, indent=1))
    plot(report, out / "simulate.png")
    print_table(report)
    print(f"wrote {out / 'simulate.json'} and {out / 'simulate.png'}")
    return 0


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = report["config"]
    table = Table(title=f"selectors on {cfg['num_prompts']} simulated prompts, B={cfg['batch_size']}, k={cfg['k']}")
    held = any("final_heldout_solve_rate" in r for r in report["results"])
    for col in ("selector", "steps", "rollouts", "x uniform", "eff. rolled", "eff. trained", "final solve",
                *(("held-out solve",) if held else ()), "repeat share", f"rollouts to {cfg['target']:.2f}",
                "DPS acc."):
        table.add_column(col, justify="right")
    for r in report["results"]:
        to_target = "never" if r["rollouts_to_target"] is None else f"{r['rollouts_to_target']:,}"
        acc = f"{r['dps_prediction_accuracy']:.3f}" if "dps_prediction_accuracy" in r else ""
        table.add_row(r["selector"], str(r["steps"]), f"{r['rollouts']:,}", f"{r['rollouts_vs_uniform_budget']:.2f}",
                      f"{r['effective_ratio_rolled']:.3f}", f"{r['effective_ratio_trained']:.3f}",
                      f"{r['final_mean_solve_rate']:.3f}",
                      *((f"{r['final_heldout_solve_rate']:.3f}",) if held else ()), f"{r['repeat_share']:.2f}",
                      to_target, acc)
    console = Console(width=max(Console().width, 130))
    console.print(table)
    for r in report["results"]:
        if "dps_confusion" in r:
            conf = Table(title="DPS confusion (rows: predicted argmax state, columns: observed state)")
            conf.add_column("")
            for s in STATE_NAMES:
                conf.add_column(s, justify="right")
            for s, row in zip(STATE_NAMES, r["dps_confusion"], strict=True):
                conf.add_row(s, *(str(v) for v in row))
            console.print(conf)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in report["results"]:
        line, = ax1.plot(r["curve_rollouts"], r["curve_mean_solve_rate"], label=r["selector"])
        if "curve_heldout_solve_rate" in r:  # dashed, same colour: the held-out set
            ax1.plot(r["curve_rollouts"], r["curve_heldout_solve_rate"], ls="--", color=line.get_color())
        if "dps_accuracy_per_step" in r:
            acc = np.asarray(r["dps_accuracy_per_step"])
            ax2.plot(r["curve_rollouts"][1:], acc, lw=0.8, alpha=0.5, label="per step")
            window = min(10, acc.size)
            smooth = np.convolve(acc, np.ones(window) / window, mode="valid")
            ax2.plot(r["curve_rollouts"][window:], smooth, lw=2, label=f"{window}-step mean")
    ax1.axhline(report["config"]["target"], color="grey", ls=":", lw=1)
    ax1.set(xlabel="rollouts", ylabel="mean solve rate (simulated accuracy)",
            title="accuracy vs rollouts (dashed: held-out)")
    ax1.legend()
    ax2.set(xlabel="rollouts", ylabel="accuracy of argmax belief", title="DPS prediction accuracy", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
