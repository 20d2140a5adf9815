"""The selector benchmark's summary (``bench_selection_e2e.py`` writes the runs): ``summary.json``, ``table.md``,
``curves.png`` (test accuracy vs rollouts) and ``diagnostics.png`` (informative share, repeat share, distinct
prompts, pool-minus-test gap, update size) from one or more work folders' per-run JSONs (``DIR/runs/*.json``
or ``DIR/runs.tar.gz``).

Each work folder holds the runs of one SFT warm start (``--data-seed``); give several to report over warm
starts. Runs are grouped by (data seed, RL seed): per regime only the pairs that every run name finished are
kept. With one warm start a figure is the mean ± standard error over its RL seeds (which leaves out the
variance between warm starts); with several, each warm start's mean over its RL seeds (for a comparison: of
the paired differences), then the mean ± standard error over those warm-start means, with their degrees of
freedom (warm starts - 1).

    python scripts/summarize_selection_e2e.py outputs/bench                       # one warm start
    python scripts/summarize_selection_e2e.py /tmp/bench-d0 /tmp/bench-d1 /tmp/bench-d2 --out outputs/bench-3ws
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import tarfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_e2e_runs import (  # noqa: E402  (the benchmark's run names and run files)
    BASELINES,
    MIX_NOT_MET,
    REGIME_TEXT,
    RUNS,
    load_runs,
    run_data_seed,
    task_title,
)

RunKey = tuple[int, int]  # (data seed: the warm start, RL seed)


@dataclass(frozen=True)
class Estimate:
    """A mean ± standard error over ``n`` values with ``df`` degrees of freedom; ``over`` says what the values
    are: ``"RL seeds"`` (one warm start) or ``"warm starts"`` (each the mean over its RL seeds)."""

    mean: float
    se: float
    n: int
    df: int
    over: str

    def describe(self) -> str:
        return f"over {self.n} {self.over}, {self.df} degree{'s' if self.df != 1 else ''} of freedom"


def run_key(run: dict) -> RunKey:
    return run_data_seed(run), int(run["seed"])


def estimate(values: Mapping[RunKey, float | None]) -> Estimate:
    """Mean ± standard error of per-run values keyed by (data seed, RL seed); None and non-finite values are
    left out. One warm start: over its RL seeds. Several: each warm start's mean over its RL seeds, then the
    mean ± standard error over those means (the RL-seed noise is inside each warm-start mean)."""
    by_start: dict[int, list[float]] = defaultdict(list)
    for (data_seed, _), value in sorted(values.items()):
        if value is not None and np.isfinite(value):
            by_start[data_seed].append(float(value))
    if len(by_start) > 1:
        points, over = [float(np.mean(v)) for v in by_start.values()], "warm starts"
    else:
        points, over = next(iter(by_start.values()), []), "RL seeds"
    if not points:
        return Estimate(float("nan"), float("nan"), 0, 0, over)
    arr = np.asarray(points)
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else float("nan")
    return Estimate(float(arr.mean()), se, int(arr.size), int(arr.size) - 1, over)


def area(curve: list[dict], key: str, budget: float) -> float:
    """Mean accuracy over [0, budget] rollouts (trapezoid area / budget); the last point extends to the budget."""
    x = [p["rollouts"] for p in curve]
    y = [p[key] for p in curve]
    if x[-1] < budget:
        x, y = x + [budget], y + [y[-1]]
    return float(np.trapezoid(y, x) / budget) if hasattr(np, "trapezoid") else float(np.trapz(y, x) / budget)


def rollouts_to_reach(curve: list[dict], target: float, key: str) -> float | None:
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


def _early(steps: list[dict], key: str, n: int = 5) -> float:
    vals = [s[key] for s in steps[:n] if key in s and s[key] is not None]
    return float(np.mean(vals)) if vals else float("nan")


def balanced(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """Per regime, only the (data seed, RL seed) pairs that every run name of that regime finished (so that
    means compare like with like); returns the kept runs and the tags of those left out."""
    kept, dropped = [], []
    for regime in sorted({r["regime"] for r in runs}):
        mine = [r for r in runs if r["regime"] == regime]
        names = {r["run"] for r in mine}
        keys = {k for k in {run_key(r) for r in mine} if {r["run"] for r in mine if run_key(r) == k} == names}
        kept += [r for r in mine if run_key(r) in keys]
        dropped += [_tag(r) for r in mine if run_key(r) not in keys]
    return kept, dropped


def _tag(run: dict) -> str:
    return f"{run['regime']}-{run['run']}-s{run['seed']}" + (f"-d{run_data_seed(run)}" if run_data_seed(run) else "")


def _per_run(group: list[dict], value: Callable[[dict], float | None]) -> Estimate:
    return estimate({run_key(r): value(r) for r in group})


def summarize(runs: list[dict]) -> dict[str, Any]:
    """Per regime and run name: every figure's :func:`estimate`; the DPS setting chosen on validation; its
    test comparison with uniform and DS, paired by (data seed, RL seed)."""
    out: dict[str, Any] = {}
    for regime in sorted({r["regime"] for r in runs}):
        rows: dict[str, Any] = {}
        by_name: dict[str, list[dict]] = {}
        for run in runs:
            if run["regime"] == regime:
                by_name.setdefault(run["run"], []).append(run)
        for name in [n for n in RUNS if n in by_name]:
            group = sorted(by_name[name], key=run_key)
            budget = group[0]["budget"]
            fig: dict[str, Any] = {"seeds": [list(run_key(r)) for r in group],
                                   "warm_starts": sorted({run_data_seed(r) for r in group}), "budget": budget}
            for split in ("test", "val"):
                for kind in ("sampled", "greedy"):
                    key = f"{split}_{kind}"
                    fig[f"final_{key}"] = _per_run(group, lambda r, key=key: r["curve"][-1][key])
                    fig[f"auc_{key}"] = _per_run(group, lambda r, key=key, budget=budget: area(r["curve"], key, budget))
            fig["final_pool_greedy"] = _per_run(group, lambda r: r["curve"][-1]["pool_greedy"])
            fig["final_gap_pool_minus_test"] = _per_run(
                group, lambda r: r["curve"][-1]["pool_greedy"] - r["curve"][-1]["test_greedy"])
            steps = [s for r in group for s in r["steps"]]

            def avg(key, source=steps):
                vals = [s[key] for s in source if s.get(key) is not None and np.isfinite(s[key])]
                return float(np.mean(vals)) if vals else float("nan")

            fig["informative_share"] = avg("effective_ratio")
            fig["informative_share_first5"] = float(np.mean([_early(r["steps"], "effective_ratio") for r in group]))
            fig["informative_token_share"] = avg("informative_token_share")
            fig["repeat_share"] = avg("prompts/repeat_share")
            fig["distinct_total"] = _per_run(group, lambda r: r["steps"][-1]["prompts/distinct_total"])
            fig["mean_visits"] = _per_run(group, lambda r: r["steps"][-1]["prompts/mean_visits"])
            fig["update_norm"] = avg("update_norm")
            fig["grad_norm"] = avg("grad_norm")
            fig["steps"] = float(np.mean([len(r["steps"]) for r in group]))
            fig["rollouts"] = float(np.mean([r["steps"][-1]["rollouts_total"] for r in group]))
            fig["train_seconds"] = float(np.mean([r["train_seconds"] for r in group]))
            fig["prediction_accuracy"] = avg("selector/prediction_accuracy")
            rows[name] = fig
        out[regime] = {"rows": rows, "choice": _choose_and_compare(by_name, rows)}
    return out


def paired(by_name: dict, a: str, b: str, key: Callable[[dict], float]) -> Estimate:
    """:func:`estimate` of key(run_a) - key(run_b) over the (data seed, RL seed) pairs both runs have."""
    sa = {run_key(r): r for r in by_name.get(a, [])}
    sb = {run_key(r): r for r in by_name.get(b, [])}
    return estimate({k: key(sa[k]) - key(sb[k]) for k in sorted(set(sa) & set(sb))})


def _choose_and_compare(by_name: dict, rows: dict) -> dict[str, Any]:
    dps = [n for n in rows if n.startswith("dps")]
    if not dps:
        return {}
    # Chosen on VALIDATION: the largest area under the validation sampled-accuracy curve.
    chosen = max(dps, key=lambda n: rows[n]["auc_val_sampled"].mean)
    out: dict[str, Any] = {"chosen_on_validation": chosen, "criterion": "auc_val_sampled"}
    budget = rows[chosen]["budget"]
    for base in ("uniform", "ds"):
        if base in rows:
            for name in (chosen, "dps"):
                if name in rows:
                    out[f"{name}_minus_{base}_final_test_sampled"] = paired(
                        by_name, name, base, lambda r: r["curve"][-1]["test_sampled"])
                    out[f"{name}_minus_{base}_auc_test_sampled"] = paired(
                        by_name, name, base, lambda r: area(r["curve"], "test_sampled", budget))
    if "ds" in by_name:
        ds_runs = {run_key(r): r for r in by_name["ds"]}
        for name in (chosen, "uniform"):
            share = []
            for run in sorted(by_name.get(name, []), key=run_key):
                ds = ds_runs.get(run_key(run))
                if ds:
                    need = rollouts_to_reach(run["curve"], ds["curve"][-1]["test_sampled"], "test_sampled")
                    share.append(None if need is None else need / ds["steps"][-1]["rollouts_total"])
            out[f"{name}_share_of_ds_rollouts_to_ds_final"] = share
    return out


def _fmt(value: Estimate, digits: int = 3) -> str:
    if not np.isfinite(value.mean):
        return "-"
    return f"{value.mean:.{digits}f} ± {value.se:.{digits}f}" if np.isfinite(value.se) else f"{value.mean:.{digits}f}"


def _aggregation_text(warm_starts: Sequence[int]) -> str:
    if len(warm_starts) == 1:
        return (f"from one SFT warm start (data seed {warm_starts[0]}): mean ± standard error over RL seeds, which "
                "leaves out the variance between warm starts (measure it with --data-seed)")
    return (f"from {len(warm_starts)} SFT warm starts (data seeds {', '.join(map(str, warm_starts))}): per warm "
            "start the mean over its RL seeds (of the paired differences, for a comparison), then mean ± standard "
            f"error over the {len(warm_starts)} warm-start means ({len(warm_starts) - 1} degree"
            f"{'s' if len(warm_starts) != 2 else ''} of freedom)")


def markdown(summary: dict, meta: dict) -> str:
    title = " / ".join(task_title(task) for task in meta.get("task", ["countdown"]))
    lines = [f"{title} {_aggregation_text(meta.get('warm_starts', [0]))}; device {meta.get('device')}. "
             "`seeds` = runs ((data seed, RL seed) pairs). `sampled` = mean accuracy of the eval samples at T=1, "
             "`greedy` = greedy accuracy; AUC = mean accuracy over the rollout budget. TEST and VALIDATION are "
             "disjoint held-out splits; settings are chosen on validation.", ""]
    if meta.get("left_out_unbalanced_seeds"):
        lines += [f"Left out (a seed not every run of its regime finished): "
                  f"{', '.join(meta['left_out_unbalanced_seeds'])}.", ""]
    unmet = [seed for seed, prep in sorted(meta.get("warm_start_preparation", {}).items())
             if (prep.get("pool_c_composition") or {}).get("mix_met") is False]
    for regime, block in summary.items():
        rows = block["rows"]
        if not rows:
            continue
        first = next(iter(rows.values()))
        lines += [f"### Regime {regime}: {REGIME_TEXT.get(regime, '')} (budget {first['budget']:,} rollouts)", ""]
        if regime == "c" and unmet:
            found = {seed: meta["warm_start_preparation"][seed]["pool_c_composition"].get("found") for seed in unmet}
            lines += [f"**{MIX_NOT_MET}** Data seed(s) {', '.join(unmet)}; found (always / never / mixed): "
                      f"{found}.", ""]
        lines += ["| run | seeds | test sampled, final | test sampled, AUC | test greedy, final | val sampled, AUC "
                  "| pool greedy − test greedy | informative share (first 5 steps) | repeat share | distinct "
                  "prompts | mean visits | update norm | steps |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, f in rows.items():
            lines.append(
                f"| {name} | {len(f['seeds'])} | {_fmt(f['final_test_sampled'])} | {_fmt(f['auc_test_sampled'])} | "
                f"{_fmt(f['final_test_greedy'])} | {_fmt(f['auc_val_sampled'])} | "
                f"{_fmt(f['final_gap_pool_minus_test'])} | {f['informative_share']:.2f} "
                f"({f['informative_share_first5']:.2f}) | {f['repeat_share']:.2f} | "
                f"{_fmt(f['distinct_total'], 0)} | {_fmt(f['mean_visits'], 1)} | {f['update_norm']:.3f} | "
                f"{f['steps']:.0f} |")
        choice = block["choice"]
        if choice:
            lines += ["", "DPS setting chosen on validation (largest validation AUC): "
                          f"**{choice['chosen_on_validation']}**."]
            for key, value in choice.items():
                if key.endswith(("_final_test_sampled", "_auc_test_sampled")):
                    lines.append(f"- {key.replace('_', ' ')} (paired by seed, test): {_fmt(value)} "
                                 f"({value.describe()})")
                elif key.endswith("to_ds_final"):
                    shares = ", ".join("not reached" if s is None else f"{s:.2f}" for s in value)
                    lines.append(f"- {key.replace('_', ' ')} (test sampled, per seed): {shares or '-'}")
        lines.append("")
    return "\n".join(lines)


def plot(runs: list[dict], summary: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes_ = sorted({r["regime"] for r in runs})
    names = [n for n in RUNS if any(r["run"] == n for r in runs)]
    colors = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(names)}
    style = {n: ("-" if n in BASELINES or n == "dps" else "--") for n in names}
    paths = []

    def mean_curve(group, key):
        xs = np.array([[p["rollouts"] for p in r["curve"]] for r in group if len(r["curve"]) == len(group[0]["curve"])])
        ys = np.array([[p[key] for p in r["curve"]] for r in group if len(r["curve"]) == len(group[0]["curve"])])
        return xs.mean(0), ys.mean(0), (ys.std(0, ddof=1) / math.sqrt(len(ys)) if len(ys) > 1 else 0 * ys[0])

    fig, axes = plt.subplots(2, len(regimes_), figsize=(6 * len(regimes_), 8), squeeze=False)
    for col, regime in enumerate(regimes_):
        for row, key in enumerate(("test_sampled", "test_greedy")):
            ax = axes[row][col]
            for name in names:
                group = [r for r in runs if r["regime"] == regime and r["run"] == name]
                if group:
                    x, y, se = mean_curve(group, key)
                    ax.plot(x, y, style[name], color=colors[name], marker="o", markersize=3, label=name)
                    ax.fill_between(x, y - se, y + se, color=colors[name], alpha=0.12)
            ax.set_title(f"regime {regime}: {REGIME_TEXT.get(regime, '')}")
            ax.set_xlabel("cumulative rollouts")
            ax.set_ylabel(f"{key.replace('_', ' ')} accuracy (mean ± SE over runs)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out / "curves.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    panels = (("effective_ratio", "informative share of trained groups"),
              ("prompts/repeat_share", "repeat share (trained in previous 5 steps)"),
              ("prompts/distinct_total", "distinct prompts trained so far"),
              ("update_norm", "parameter update norm per step"))
    fig, axes = plt.subplots(len(regimes_), len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.6 * len(regimes_)),
                             squeeze=False)
    for row, regime in enumerate(regimes_):
        for name in names:
            group = [r for r in runs if r["regime"] == regime and r["run"] == name]
            if not group:
                continue
            for col, (key, label) in enumerate(panels):
                length = min(len(r["steps"]) for r in group)
                x = np.mean([[s["rollouts_total"] for s in r["steps"][:length]] for r in group], axis=0)
                y = np.mean([[s.get(key, np.nan) for s in r["steps"][:length]] for r in group], axis=0)
                if key in ("effective_ratio", "prompts/repeat_share", "update_norm") and length >= 5:
                    y = np.convolve(y, np.ones(5) / 5, mode="valid")  # 5-step means, no padded edges
                    x = x[2:-2]
                axes[row][col].plot(x, y, style[name], color=colors[name], linewidth=1, label=name)
                axes[row][col].set_title(f"{regime}: {label}", fontsize=9)
            x, _, _ = mean_curve(group, "test_greedy")
            gap = np.mean([[p["pool_greedy"] - p["test_greedy"] for p in r["curve"]] for r in group
                           if len(r["curve"]) == len(group[0]["curve"])], axis=0)
            axes[row][-1].plot(x, gap, style[name], color=colors[name], marker="o", markersize=3)
            axes[row][-1].set_title(f"{regime}: training-pool minus test greedy accuracy", fontsize=9)
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            ax.set_xlabel("cumulative rollouts", fontsize=8)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths.append(out / "diagnostics.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def collect_runs(folders: Sequence[Path]) -> list[dict]:
    """Every run of ``folders``; refuses two runs of one (task, data seed, regime, run, seed) and a mix of tasks."""
    runs, origin = [], {}
    for folder in folders:
        for run in load_runs(folder):
            ident = (run.get("task", "countdown"), run_data_seed(run), run["regime"], run["run"], run["seed"])
            if ident in origin:
                raise SystemExit(f"run {_tag(run)} (data seed {ident[1]}) is in both {origin[ident]} and {folder}: "
                                 "give each warm start's work folder once")
            origin[ident] = folder
            runs.append(run)
    tasks = {run.get("task", "countdown") for run in runs}
    if len(tasks) > 1:
        raise SystemExit(f"the folders hold runs of several tasks ({', '.join(sorted(tasks))}): summarize each alone")
    return runs


def _json_default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return float(value)


def write_summary(folders: Sequence[Path], out: Path, archive: bool = False) -> dict:
    """The summary of the runs in ``folders`` (one per warm start) written under ``out``; with ``archive`` the
    per-run JSONs of the work folder (only one) also go to ``out/runs.tar.gz``."""
    every = collect_runs(folders)
    if not every:
        raise SystemExit(f"no run JSONs under {', '.join(str(f / 'runs') for f in folders)}")
    out.mkdir(parents=True, exist_ok=True)
    runs, dropped = balanced(every)
    summary = summarize(runs)
    meta: dict[str, Any] = {"task": sorted({r.get("task", "countdown") for r in runs}),
                            "device": sorted({r.get("device") for r in runs}), "runs": len(runs),
                            "warm_starts": sorted({run_data_seed(r) for r in runs}),
                            "left_out_unbalanced_seeds": dropped, "warm_start_preparation": {}}
    for folder in folders:
        prep_path = folder / "prep.pkl"
        if prep_path.is_file():
            prep = pickle.loads(prep_path.read_bytes())
            meta["warm_start_preparation"][str(prep["key"].get("data_seed", 0))] = {
                "start": prep["start"], "pool_c_composition": prep["pool_c_composition"],
                "sft_steps": prep["sft_steps"], "test_size": len(prep["test"]), "val_size": len(prep["validation"]),
                "pool_sizes": {k: len(v) for k, v in prep["pools"].items()}}
    (out / "summary.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=1, default=_json_default))
    (out / "table.md").write_text(markdown(summary, meta))
    if archive:
        if len(folders) != 1:
            raise ValueError("write_summary: archive the runs of one work folder at a time")
        with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:  # every run, balanced or not
            for path in sorted((folders[0] / "runs").glob("*.json")):
                tar.add(path, arcname=f"runs/{path.name}")
    try:
        plot(runs, summary, out)
    except Exception as error:  # e.g. no matplotlib on the machine: the JSONs and the table still stand
        print(f"plots skipped: {error!r}", flush=True)
    print(markdown(summary, meta))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path,
                        help="work folders of bench_selection_e2e.py (one per warm start), each with runs/*.json "
                             "or runs.tar.gz")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the one folder given)")
    args = parser.parse_args(argv)
    if args.out is None and len(args.folders) > 1:
        parser.error("give --out when summarizing several folders")
    write_summary(args.folders, args.out or args.folders[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
