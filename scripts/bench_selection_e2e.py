"""End-to-end selector benchmark on a real (tiny) model: uniform, DAPO Dynamic Sampling, MoPPS and DPS.

All runs start from the same SFT warm start (trained once, saved under ``--out/warm-start`` and
reused), train on the same prompt pool with the demo's GRPO recipe (``mmdps.demo``) until the same
rollout budget is spent, and are scored on the same 400 held-out Countdown prompts every
``--eval-every`` rollouts. Reports:

* held-out accuracy (greedy, and mean of 8 samples at T=1) against cumulative rollouts and against
  training wall time (evaluation excluded): ``curves.png``;
* rollouts needed to reach ``--target`` greedy accuracy (linear interpolation between evaluations);
* effective-sample ratio per step (trained groups with non-zero advantage), rollouts per step;
* DPS's prediction accuracy (argmax predicted state vs observed state, per step);
* the paper's two claims: DPS reaches DS's final accuracy with what share of DS's rollouts, and
  DPS vs uniform at equal rollouts.

Writes ``results.json``, ``curves.png`` and ``table.md`` under ``--out``. A benchmark, not a test:
minutes to an hour on CPU. Example (the run in docs/benchmarks.md)::

    python scripts/bench_selection_e2e.py --out outputs/bench_e2e --seeds 0 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

SELECTOR_KWARGS = {
    "uniform": {},
    "ds": {"oversample": 1.0, "max_rounds": 10},  # the DPS paper's DS runs (Countdown: 10 rounds)
    "mopps": {},
    "dps": {"decay": 0.5},  # the paper's Countdown lambda
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench_e2e")
    parser.add_argument("--selectors", nargs="+", default=list(SELECTOR_KWARGS), choices=list(SELECTOR_KWARGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="RL seeds (the warm start is shared)")
    parser.add_argument("--rollout-budget", type=int, default=25_600, help="rollouts per run (100 uniform steps)")
    parser.add_argument("--eval-every", type=int, default=6_400, help="evaluate every N rollouts")
    parser.add_argument("--sft-steps", type=int, default=900)
    parser.add_argument("--pool-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--target", type=float, default=None,
                        help="greedy accuracy to reach (default: the lowest final greedy accuracy over selectors)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a busy machine)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def warm_start(args, settings, data) -> Path:
    """The shared SFT checkpoint: trained once, reused by every run (and by later invocations)."""
    from mmdps.demo import evaluate_policy, make_engine
    from mmdps.demo import warm_start as train_warm_start
    from mmdps.models.loading import load_policy

    model_dir = Path(args.out) / "warm-start"
    info_path = model_dir / "warm_start.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("sft_steps") == args.sft_steps and info.get("pool_size") == args.pool_size:
            print(f"reusing the warm start in {model_dir}")
            return model_dir
    info = train_warm_start(settings, data, model_dir)
    model, tokenizer = load_policy(model_dir, dtype="float32")
    info["eval"] = evaluate_policy(make_engine(model, tokenizer), data.heldout)
    info.update(sft_steps=args.sft_steps, pool_size=args.pool_size)
    info_path.write_text(json.dumps(info, indent=2))
    print(f"warm start: {info['steps']} SFT steps in {info['seconds']:.0f} s; held-out greedy "
          f"{info['eval']['greedy']:.3f}, sampled {info['eval']['sampled']:.3f}, mixed {info['eval']['mixed']:.2f}")
    return model_dir


def rollouts_to_reach(curve, target: float, key: str = "greedy") -> float | None:
    """Rollouts at which ``curve[key]`` first reaches ``target`` (linear interpolation), or None."""
    previous = None
    for point in curve:
        if point[key] >= target:
            if previous is None:
                return float(point["rollouts"])
            span = point[key] - previous[key]
            share = (target - previous[key]) / span if span > 0 else 1.0
            return previous["rollouts"] + share * (point["rollouts"] - previous["rollouts"])
        previous = point
    return None


def summarize(runs: dict[str, list[dict]], target: float) -> dict[str, dict]:
    table = {}
    for name, seeds in runs.items():
        finals = [run["curve"][-1] for run in seeds]
        reach = [rollouts_to_reach(run["curve"], target) for run in seeds]
        steps = [step for run in seeds for step in run["steps"]]
        prediction = [s["selector/prediction_accuracy"] for s in steps[1:]
                      if s.get("selector/prediction_accuracy") is not None
                      and math.isfinite(s["selector/prediction_accuracy"])]
        table[name] = {
            "final_greedy": float(np.mean([f["greedy"] for f in finals])),
            "final_greedy_sd": float(np.std([f["greedy"] for f in finals])),
            "final_sampled": float(np.mean([f["sampled"] for f in finals])),
            "rollouts": float(np.mean([f["rollouts"] for f in finals])),
            "train_seconds": float(np.mean([run["train_seconds"] for run in seeds])),
            "steps": float(np.mean([len(run["steps"]) for run in seeds])),
            "rollouts_to_target": [r for r in reach],
            "effective_ratio": float(np.mean([s["effective_ratio"] for s in steps])),
            "signal_share_of_rollouts": float(np.mean([1 - s["zero_variance_share"] for s in steps])),
            "rollouts_per_step": float(np.mean([s["rollouts"] for s in steps])),
            "dps_prediction_accuracy": float(np.mean(prediction)) if prediction else None,
        }
    return table


def claims(runs: dict[str, list[dict]], table: dict[str, dict]) -> dict[str, object]:
    """The paper's two claims, measured on the mean curves."""
    out: dict[str, object] = {}
    if "ds" in runs and "dps" in runs:
        ds_final = table["ds"]["final_greedy"]
        need = [rollouts_to_reach(run["curve"], ds_final) for run in runs["dps"]]
        out["ds_final_greedy"] = ds_final
        out["dps_rollouts_to_ds_final"] = need
        reached = [n for n in need if n is not None]
        out["dps_share_of_ds_rollouts"] = (float(np.mean(reached)) / table["ds"]["rollouts"]) if reached else None
    if "uniform" in runs and "dps" in runs:
        out["dps_minus_uniform_greedy_at_equal_rollouts"] = (table["dps"]["final_greedy"]
                                                             - table["uniform"]["final_greedy"])
        out["dps_minus_uniform_sampled_at_equal_rollouts"] = (table["dps"]["final_sampled"]
                                                             - table["uniform"]["final_sampled"])
    return out


def markdown(table: dict[str, dict], target: float, claim: dict, args) -> str:
    def fmt(value, spec=".3f"):
        return "-" if value is None else format(value, spec)

    lines = [f"Seeds {args.seeds}, budget {args.rollout_budget:,} rollouts per run, target greedy accuracy "
             f"{target:.3f}.", "",
             "| selector | final greedy (sd) | final sampled@8 | rollouts | steps | train s | rollouts to target "
             "(per seed) | effective ratio | groups with signal | rollouts/step | DPS pred. acc |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        reach = ", ".join("not reached" if r is None else f"{r:,.0f}" for r in row["rollouts_to_target"])
        lines.append(f"| {name} | {row['final_greedy']:.3f} ({row['final_greedy_sd']:.3f}) | "
                     f"{row['final_sampled']:.3f} | {row['rollouts']:,.0f} | {row['steps']:.0f} | "
                     f"{row['train_seconds']:.0f} | {reach} | {row['effective_ratio']:.2f} | "
                     f"{row['signal_share_of_rollouts']:.2f} | {row['rollouts_per_step']:.0f} | "
                     f"{fmt(row['dps_prediction_accuracy'], '.2f')} |")
    if claim:
        lines.append("")
        if "ds_final_greedy" in claim:
            need = claim["dps_rollouts_to_ds_final"]
            per_seed = ", ".join("not within the budget" if n is None else f"after {n:,.0f} rollouts" for n in need)
            lines.append(f"- DS's final greedy accuracy {claim['ds_final_greedy']:.3f}: DPS reached it, per seed: "
                         f"{per_seed} (share of DS's rollouts: {fmt(claim['dps_share_of_ds_rollouts'], '.2f')}).")
        if "dps_minus_uniform_greedy_at_equal_rollouts" in claim:
            lines.append(f"- DPS minus uniform at equal rollouts: greedy "
                         f"{claim['dps_minus_uniform_greedy_at_equal_rollouts']:+.3f}, sampled "
                         f"{claim['dps_minus_uniform_sampled_at_equal_rollouts']:+.3f}.")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, seeds) in enumerate(runs.items()):
        for i, run in enumerate(seeds):
            curve = run["curve"]
            style = dict(color=colors[index % len(colors)], alpha=0.85, marker="o", markersize=3)
            axes[0].plot([p["rollouts"] for p in curve], [p["greedy"] for p in curve],
                         label=name if i == 0 else None, **style)
            axes[1].plot([p["train_seconds"] for p in curve], [p["greedy"] for p in curve], **style)
            steps = run["steps"]
            axes[2].plot([s["rollouts_total"] for s in steps], [s["effective_ratio"] for s in steps],
                         color=style["color"], alpha=0.6, linewidth=1)
    axes[0].set_xlabel("cumulative rollouts")
    axes[1].set_xlabel("training wall time, s (evaluation excluded)")
    axes[0].set_ylabel("held-out greedy accuracy (400 prompts)")
    axes[1].set_ylabel("held-out greedy accuracy (400 prompts)")
    axes[2].set_xlabel("cumulative rollouts")
    axes[2].set_ylabel("effective-sample ratio of the step")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Countdown, 1.1M-parameter Qwen2 from one SFT warm start (one line per seed and selector)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import torch

    from mmdps.demo import DemoSettings, grpo_config, make_data, run_grpo

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = DemoSettings(seed=0, threads=args.threads, sft_steps=args.sft_steps, pool_size=args.pool_size,
                        batch_size=args.batch_size, progress=not args.no_progress)
    base.validate()
    data = make_data(base)  # seed 0: every run sees the same pool and held-out set
    model_dir = warm_start(args, base, data)
    results_path = out / "results.json"
    runs: dict[str, list[dict]] = {}
    if results_path.is_file():  # resume an interrupted benchmark run by run
        runs = json.loads(results_path.read_text()).get("runs", {})
    started = time.perf_counter()
    for name in args.selectors:
        for seed in args.seeds:
            done = [r for r in runs.get(name, []) if r["seed"] == seed]
            if done and done[0]["budget"] == args.rollout_budget:
                continue
            print(f"== {name}, seed {seed}")
            settings = DemoSettings(**{**base.__dict__, "seed": seed, "selector": name,
                                       "selector_kwargs": SELECTOR_KWARGS[name]})
            config = grpo_config(settings, model_dir, out / f"{name}-seed{seed}", max_steps=10**6)
            torch.manual_seed(seed)
            result = run_grpo(config, data, settings, rollout_budget=args.rollout_budget,
                              eval_every_rollouts=args.eval_every)
            result.update(seed=seed, budget=args.rollout_budget)
            runs.setdefault(name, [])
            runs[name] = [r for r in runs[name] if r["seed"] != seed] + [result]
            results_path.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2, default=float))
    runs = {name: runs[name] for name in args.selectors if name in runs}
    target = args.target if args.target is not None else min(
        float(np.mean([r["curve"][-1]["greedy"] for r in seeds])) for seeds in runs.values())
    table = summarize(runs, target)
    claim = claims(runs, table)
    results_path.write_text(json.dumps({"args": vars(args), "target": target, "table": table, "claims": claim,
                                        "runs": runs}, indent=2, default=float))
    plot(runs, out / "curves.png")
    text = markdown(table, target, claim, args)
    (out / "table.md").write_text(text)
    print(text)
    print(f"wrote {results_path}, {out / 'curves.png'}, {out / 'table.md'} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
