"""``mmdps simulate``: compare prompt selectors on a simulated prompt population, without an LLM.

Every selector faces the same dynamics (``docs/simulator.md``):

* prompt p has a latent logit theta_p, solve probability sigmoid(theta_p); k rollouts of a selected
  prompt are k Bernoulli draws from it;
* an optimizer step on trained groups T: each informative group (0 < s < 1; GRPO gives degenerate groups
  zero advantage) raises its own prompt's logit by ``direct``, and every prompt's logit rises by
  ``transfer * c_p * (informative groups) / B`` (shared skill; c_p ~ U(0.5, 1.5) per prompt);
* drift: every prompt's logit takes a Gaussian step of sd ``drift * sqrt(|T| / B)`` (the side effects of
  an update scale with its size).

Selectors run ``steps`` optimizer steps (DS takes as many rounds per step as it needs); one-shot DoPR runs
until it has spent the rollouts uniform sampling spent. Reported per selector: rollouts spent, the
effective-sample ratio (share of rolled-out prompts that were partially solved, and of trained groups),
rollouts to reach a target mean solve rate, and for DPS the prediction accuracy and confusion matrix.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmdps.selection import SELECTORS, make_selector
from mmdps.selection.base import STATE_NAMES

DEFAULT_SELECTORS = ("uniform", "ds", "dps", "mopps", "cdas", "dopr", "greso")


@dataclass(frozen=True)
class Dynamics:
    """The simulated population and how training moves it (identical for every selector)."""

    init_mean: float = -1.5  # mean initial logit (mean solve rate about 0.33)
    init_sd: float = 3.0  # spread of initial logits: many prompts start all-wrong or all-right
    direct: float = 0.2  # logit gain of a prompt trained with an informative group
    transfer: float = 0.01  # logit gain of every prompt per fully informative batch
    drift: float = 0.1  # sd of the per-step random walk of every logit (for a full batch)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _selector_kwargs(name: str, k: int, seed: int, ds_oversample: float, ds_max_rounds: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"seed": seed, "rollouts_per_prompt": k}
    if name in ("ds", "dapo"):
        kwargs.update(oversample=ds_oversample, max_rounds=ds_max_rounds)
    return kwargs


def _run_one(name: str, *, num_prompts: int, batch_size: int, k: int, steps: int, target: float, seed: int,
             dyn: Dynamics, ds_oversample: float, ds_max_rounds: int) -> dict[str, Any]:
    world = np.random.default_rng(seed)  # same initial population for every selector
    theta = world.normal(dyn.init_mean, dyn.init_sd, num_prompts)
    sensitivity = world.uniform(0.5, 1.5, num_prompts)
    rng = np.random.default_rng(seed + 1)  # rollout outcomes and drift
    sel = make_selector(name, num_prompts, **_selector_kwargs(name, k, seed, ds_oversample, ds_max_rounds))
    budget = steps * batch_size * k  # uniform's rollouts: one-shot selectors run until they spend this
    max_steps = steps if name not in ("dopr",) else steps * batch_size

    rollouts = rolled = rolled_partial = trained = trained_partial = 0
    curve_rollouts, curve_solve, dps_acc = [0], [float(_sigmoid(theta).mean())], []
    reached = float(_sigmoid(theta).mean()) >= target
    rollouts_to_target: int | None = 0 if reached else None
    step = 0
    while step < max_steps and (name != "dopr" or rollouts < budget):
        step += 1
        batch_ids, batch_rates = [], []
        for _ in range(sel.max_rounds):
            ids = sel.select(batch_size)
            rates = rng.binomial(k, _sigmoid(theta[ids])) / k
            sel.update(ids, rates)
            if name == "dps":
                dps_acc.append(sel.diagnostics()["prediction_accuracy"])
            keep = sel.admit(ids, rates)
            rollouts += ids.size * k
            rolled += ids.size
            rolled_partial += int(np.count_nonzero((rates > 0) & (rates < 1)))
            batch_ids.append(ids[keep])
            batch_rates.append(rates[keep])
            if sum(b.size for b in batch_ids) >= batch_size:
                break
        ids = np.concatenate(batch_ids)[:batch_size]
        rates = np.concatenate(batch_rates)[:batch_size]
        informative = (rates > 0) & (rates < 1)
        trained += ids.size
        trained_partial += int(informative.sum())
        # The optimizer step: direct gain, shared transfer, drift.
        theta[ids[informative]] += dyn.direct
        theta += dyn.transfer * sensitivity * (informative.sum() / batch_size)
        theta += rng.normal(0.0, dyn.drift * np.sqrt(ids.size / batch_size), num_prompts)
        solve = float(_sigmoid(theta).mean())
        curve_rollouts.append(rollouts)
        curve_solve.append(solve)
        if rollouts_to_target is None and solve >= target:
            rollouts_to_target = rollouts

    result: dict[str, Any] = {
        "selector": name,
        "steps": step,
        "rollouts": rollouts,
        "rollouts_vs_uniform_budget": rollouts / budget,
        "effective_ratio_rolled": rolled_partial / rolled if rolled else float("nan"),
        "effective_ratio_trained": trained_partial / trained if trained else float("nan"),
        "final_mean_solve_rate": curve_solve[-1],
        "rollouts_to_target": rollouts_to_target,
        "curve_rollouts": curve_rollouts,
        "curve_mean_solve_rate": curve_solve,
    }
    if name == "dps":
        conf = sel.confusion_matrix(cumulative=True)
        result["dps_prediction_accuracy"] = float(np.trace(conf) / conf.sum())
        result["dps_confusion"] = conf.tolist()  # rows: predicted argmax state, columns: observed state
        result["dps_accuracy_per_step"] = dps_acc
    return result


def simulate(
    selectors: Sequence[str] = DEFAULT_SELECTORS,
    num_prompts: int = 2000,
    batch_size: int = 64,
    k: int = 8,
    steps: int = 150,
    target: float = 0.5,
    seed: int = 0,
    dynamics: Dynamics | None = None,
    ds_oversample: float = 1.0,
    ds_max_rounds: int = 10,
) -> dict[str, Any]:
    """Run every selector on the same simulated population; returns ``{"config": ..., "results": [...]}``."""
    if batch_size > num_prompts:
        raise ValueError(f"batch_size {batch_size} must not exceed num_prompts {num_prompts}")
    if steps < 1 or k < 1:
        raise ValueError(f"steps and k must be >= 1, got steps={steps}, k={k}")
    dyn = dynamics or Dynamics()
    results = [
        _run_one(name, num_prompts=num_prompts, batch_size=batch_size, k=k, steps=steps, target=target, seed=seed,
                 dyn=dyn, ds_oversample=ds_oversample, ds_max_rounds=ds_max_rounds)
        for name in selectors
    ]
    config = {"num_prompts": num_prompts, "batch_size": batch_size, "k": k, "steps": steps, "target": target,
              "seed": seed, "ds_oversample": ds_oversample, "ds_max_rounds": ds_max_rounds, "dynamics": asdict(dyn)}
    return {"config": config, "results": results}


# ---------------------------------------------------------------------- CLI
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
    for field, default in asdict(Dynamics()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=float, default=default, help="dynamics (docs/simulator.md)")
    parser.add_argument("--out", default="outputs/simulate", help="folder for simulate.json and simulate.png")


def run(args: argparse.Namespace) -> int:
    dyn = Dynamics(**{field: getattr(args, field) for field in asdict(Dynamics())})
    try:
        report = simulate(args.selectors, args.num_prompts, args.batch_size, args.k, args.steps, args.target,
                          args.seed, dyn, args.ds_oversample, args.ds_max_rounds)
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
    for col in ("selector", "steps", "rollouts", "x uniform", "eff. rolled", "eff. trained", "final solve",
                f"rollouts to {cfg['target']:.2f}", "DPS acc."):
        table.add_column(col, justify="right")
    for r in report["results"]:
        to_target = "never" if r["rollouts_to_target"] is None else f"{r['rollouts_to_target']:,}"
        acc = f"{r['dps_prediction_accuracy']:.3f}" if "dps_prediction_accuracy" in r else ""
        table.add_row(r["selector"], str(r["steps"]), f"{r['rollouts']:,}", f"{r['rollouts_vs_uniform_budget']:.2f}",
                      f"{r['effective_ratio_rolled']:.3f}", f"{r['effective_ratio_trained']:.3f}",
                      f"{r['final_mean_solve_rate']:.3f}", to_target, acc)
    console = Console(width=max(Console().width, 130))
    console.print(table)
    for r in report["results"]:
        if "dps_confusion" in r:
            conf = Table(title="DPS confusion (rows: predicted argmax state, columns: observed state)")
            conf.add_column("")
            for s in STATE_NAMES:
                conf.add_column(s, justify="right")
            for s, row in zip(STATE_NAMES, r["dps_confusion"]):
                conf.add_row(s, *(str(v) for v in row))
            console.print(conf)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in report["results"]:
        ax1.plot(r["curve_rollouts"], r["curve_mean_solve_rate"], label=r["selector"])
        if "dps_accuracy_per_step" in r:
            acc = np.asarray(r["dps_accuracy_per_step"])
            ax2.plot(r["curve_rollouts"][1:], acc, lw=0.8, alpha=0.5, label="per step")
            window = min(10, acc.size)
            smooth = np.convolve(acc, np.ones(window) / window, mode="valid")
            ax2.plot(r["curve_rollouts"][window:], smooth, lw=2, label=f"{window}-step mean")
    ax1.axhline(report["config"]["target"], color="grey", ls=":", lw=1)
    ax1.set(xlabel="rollouts", ylabel="mean solve rate (simulated accuracy)", title="accuracy vs rollouts")
    ax1.legend()
    ax2.set(xlabel="rollouts", ylabel="accuracy of argmax belief", title="DPS prediction accuracy", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - `python -m mmdps.selection.simulator`
    parser = argparse.ArgumentParser(prog="mmdps simulate", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
