"""Rollouts per prompt in the simulator: fixed vs predicted vs until_signal at equal rollouts (numpy, CPU).

The population and its dynamics are the simulator's (:class:`mmdps.selection.simulator.Dynamics`), with one
change so that groups of different sizes compare fairly: a trained group's effect scales with its share of
the step's rollouts (the token-mean loss weights every rollout alike), so an informative group of k_i
rollouts raises its prompt's logit by ``direct * k_i / k`` and the shared and skill terms count informative
rollouts, not groups (``--gain per_group`` gives every informative group the full ``direct`` instead). Every
run spends the same rollouts (``steps x B x k``); ``until_signal`` may spend less per step and then takes
more steps. The allocation itself is the trainer's (:func:`~mmdps.selection.allocation.predicted_plan`,
:func:`~mmdps.selection.allocation.until_signal_round`).

    python scripts/bench_allocation.py                       # -> outputs/bench_allocation.{json,md}
    python scripts/bench_allocation.py --seeds 0 1 --steps 40 --out /tmp/alloc.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmdps.selection import make_selector
from mmdps.selection.allocation import AllocationSettings, allocation_settings, predicted_plan, until_signal_round
from mmdps.selection.simulator import Dynamics

MODES = ("fixed", "predicted", "until_signal")
# The simulator's setting validated against the real model (docs/simulator.md: shared skills, novelty power
# 0.5, a held-out set; its ranking of 11 selector variants matched the GPU benchmark's), and the original toy.
SETTINGS = {
    "validated": Dynamics(skills=8, skill_gain=0.5, heldout=1000, novelty_power=0.5),
    "toy": Dynamics(),
}
# label -> (selector, options); decay 0.5 as in the validated comparison, MoPPS over 16 x B candidates
SELECTORS = {
    "uniform": ("uniform", {}),
    "dps": ("dps", {"decay": 0.5}),
    "dps-c4": ("dps", {"decay": 0.5, "candidate_ratio": 4.0}),
    "mopps": ("mopps", {"decay": 0.5, "candidate_ratio": 16.0}),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _plan(sel, mode: str, settings: AllocationSettings, batch_size: int, probs: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """One step's rollouts: (ids, successes per group, sizes) as the trainer would draw them."""
    if mode == "fixed":
        ids = sel.select(batch_size)
        sizes = np.full(ids.size, settings.k)
        return ids, rng.binomial(sizes, probs[ids]), sizes
    if mode == "predicted":
        ids, sizes, _ = predicted_plan(sel, batch_size, settings)
        return ids, rng.binomial(sizes, probs[ids]), sizes
    ids = sel.select(batch_size)
    sizes = np.full(ids.size, settings.round_k)
    wins = rng.binomial(sizes, probs[ids])
    left = settings.budget(batch_size) - int(sizes.sum())
    while True:
        signal = (wins > 0) & (wins < sizes)
        extra = until_signal_round(sizes, signal, round_k=settings.round_k, k_max=settings.k_max, budget_left=left)
        if not extra.any():
            return ids, wins, sizes
        wins = wins + rng.binomial(extra, probs[ids])
        sizes = sizes + extra
        left -= int(extra.sum())


def run_one(selector: str, mode: str, *, seed: int, dyn: Dynamics, num_prompts: int, batch_size: int, k: int,
            steps: int, gain: str, allocation_kwargs: dict[str, Any]) -> dict[str, Any]:
    world = np.random.default_rng(seed)  # the simulator's population draws, in its order
    theta = world.normal(dyn.init_mean, dyn.init_sd, num_prompts)
    sensitivity = world.uniform(0.5, 1.5, num_prompts)
    held_theta = world.normal(dyn.init_mean, dyn.init_sd, dyn.heldout)
    held_sensitivity = world.uniform(0.5, 1.5, dyn.heldout)
    group = world.integers(0, max(dyn.skills, 1), num_prompts)
    held_group = world.integers(0, max(dyn.skills, 1), dyn.heldout)
    visits = np.zeros(num_prompts)
    rng = np.random.default_rng(seed + 1)
    name, options = SELECTORS[selector]
    sel = make_selector(name, num_prompts, options, seed=seed, rollouts_per_prompt=k)
    settings = allocation_settings(mode, allocation_kwargs if mode != "fixed" else {}, k=k)
    budget = steps * batch_size * k
    full = batch_size * k
    spent = informative_rollouts = distinct = step = 0
    ks: list[int] = []
    while spent < budget:
        step += 1
        ids, wins, sizes = _plan(sel, mode, settings, batch_size, _sigmoid(theta), rng)
        rewards = [np.r_[np.ones(w), np.zeros(n - w)] for w, n in zip(wins, sizes, strict=True)]
        sel.update(ids, wins / sizes, rewards=rewards)
        sel.record_trained(ids)
        informative = (wins > 0) & (wins < sizes)
        spent += int(sizes.sum())
        informative_rollouts += int(sizes[informative].sum())
        distinct += ids.size
        ks.extend(sizes.tolist())
        weight = sizes / k if gain == "per_rollout" else np.ones(ids.size)
        learned = ids[informative]
        theta[learned] += dyn.direct * weight[informative]
        shared = dyn.transfer * float(weight[informative].sum()) / batch_size
        theta += shared * sensitivity
        held_theta += shared * held_sensitivity
        if dyn.skills:
            visits[learned] += 1
            novelty = visits[learned] ** -dyn.novelty_power * weight[informative]
            skill = np.bincount(group[learned], weights=novelty, minlength=dyn.skills) * (dyn.skill_gain / batch_size)
            theta += skill[group] * sensitivity
            held_theta += skill[held_group] * held_sensitivity
        sd = dyn.drift * np.sqrt(sizes.sum() / full)
        theta += rng.normal(0.0, sd, num_prompts)
        held_theta += rng.normal(0.0, sd, dyn.heldout)
    out = {"selector": selector, "mode": mode, "seed": seed, "steps": step, "rollouts": spent,
           "final_solve_rate": float(_sigmoid(theta).mean()),
           "informative_rollout_share": informative_rollouts / spent,
           "prompts_per_step": distinct / step, "k_mean": float(np.mean(ks)), "k_max": int(np.max(ks)),
           "distinct_trained": int(sel.training_diagnostics()["prompts/distinct_total"])}
    if dyn.heldout:
        out["heldout_solve_rate"] = float(_sigmoid(held_theta).mean())
    return out


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard error over seeds per (setting, selector, mode)."""
    keys = list(dict.fromkeys((r["setting"], r["selector"], r["mode"]) for r in rows))
    table = []
    for setting, selector, mode in keys:
        runs = [r for r in rows if (r["setting"], r["selector"], r["mode"]) == (setting, selector, mode)]
        entry: dict[str, Any] = {"setting": setting, "selector": selector, "mode": mode, "seeds": len(runs)}
        for metric in ("final_solve_rate", "heldout_solve_rate", "informative_rollout_share", "prompts_per_step",
                       "k_mean", "steps"):
            values = [r[metric] for r in runs if metric in r]
            if values:
                entry[metric] = float(np.mean(values))
                entry[metric + "_se"] = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 \
                    else 0.0
        table.append(entry)
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    lines = ["| setting | selector | allocation | final solve rate | held-out solve rate | informative rollouts | "
             "prompts / step | mean k | steps |", "|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        held = f"{e['heldout_solve_rate']:.3f} ± {e['heldout_solve_rate_se']:.3f}" if "heldout_solve_rate" in e \
            else "-"
        lines.append(f"| {e['setting']} | {e['selector']} | {e['mode']} | {e['final_solve_rate']:.3f} ± "
                     f"{e['final_solve_rate_se']:.3f} | {held} | {e['informative_rollout_share']:.3f} | "
                     f"{e['prompts_per_step']:.1f} | {e['k_mean']:.2f} | {e['steps']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selectors", nargs="+", default=list(SELECTORS), choices=list(SELECTORS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--num-prompts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=63, help="rollout budget = steps x batch x k")
    parser.add_argument("--gain", choices=("per_rollout", "per_group"), default="per_rollout")
    parser.add_argument("--allocation-kwargs", type=json.loads, default={}, help="JSON, e.g. '{\"k_max\": 8}'")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_allocation.json"))
    args = parser.parse_args(argv)
    rows = []
    for setting in args.settings:
        dyn = SETTINGS[setting]
        for selector in args.selectors:
            modes = ["fixed"] if selector == "uniform" else args.modes  # uniform predicts nothing: fixed k
            for mode in modes:
                for seed in args.seeds:
                    row = run_one(selector, mode, seed=seed, dyn=replace(dyn), num_prompts=args.num_prompts,
                                  batch_size=args.batch_size, k=args.k, steps=args.steps, gain=args.gain,
                                  allocation_kwargs=args.allocation_kwargs)
                    rows.append({"setting": setting, **row})
    table = summarise(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {key: value for key, value in vars(args).items() if key != "out"}
    config["dynamics"] = {name: asdict(SETTINGS[name]) for name in args.settings}
    args.out.write_text(json.dumps({"config": config, "summary": table, "runs": rows}, indent=1, default=str))
    text = markdown(table)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
