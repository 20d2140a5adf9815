"""Does the loss normaliser make informative batches take larger steps? Gradient and update norms per step.

With the zero-advantage skip, token-mean GRPO still divides by every completion token of the batch, so a
batch with fewer informative groups (uniform) has a smaller gradient than one with more (DPS, DS) at the
same learning rate. This measures, from one warm start on the benchmark's regime-a pool: the gradient
norm, the norm of the parameter update and the informative shares per step for uniform, DPS and DS, and
uniform again with the normaliser counting only the informative groups' tokens (the candidate "fix").

    python scripts/bench_loss_normaliser.py --warm-start /tmp/bench/warm-start --steps 12 --out outputs/norm

The warm start is ``scripts/bench_selection_e2e.py``'s Countdown one (``<work>/warm-start``); the pool is
that benchmark's regime-a pool of ``--data-seed`` (``--tiny``: its smoke-test sizes, B=4 x k=4, 24
prompts). Writes ``normaliser.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from mmdps.demos import EvalCallback, renumber, step_record

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_selection_e2e as bench  # noqa: E402  (the benchmark's data, step keys and update norm)

# label, selector, selector_kwargs, normaliser counts only the informative groups' tokens
CASES: tuple[tuple[str, str, dict, bool], ...] = (
    ("uniform", "uniform", {}, False), ("dps", "dps", {"decay": 0.5}, False),
    ("ds", "ds", {"oversample": 1.0, "max_rounds": 10}, False),
    ("uniform, normaliser = informative tokens", "uniform", {}, True))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-start", required=True, help="model folder (bench_selection_e2e's warm start)")
    parser.add_argument("--steps", type=int, default=12, help="uniform steps' worth of rollouts per case")
    parser.add_argument("--data-seed", type=int, default=0, help="the benchmark's data seed (its --data-seed)")
    parser.add_argument("--tiny", action="store_true", help="the benchmark's smoke-test sizes (its --tiny)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="outputs/normaliser")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if not (Path(args.warm_start) / "config.json").is_file():
        parser.error(f"--warm-start {args.warm_start} holds no model (config.json): run "
                     "scripts/bench_selection_e2e.py first and pass its <work>/warm-start")
    return args


def informative_only(real_drop):
    """``drop_zero_advantage_groups`` with the dropped groups' tokens left out of the normaliser."""

    def drop(*args, **kwargs):
        kept, advantages, weight, _dropped = real_drop(*args, **kwargs)
        return kept, advantages, weight, 0.0

    return drop


def run_case(selector: str, kwargs: dict, informative_normaliser: bool, pool: list, bench_args, args,
             scratch: Path) -> list[dict]:
    """One case's per-step records (the benchmark's step keys and the update norm)."""
    import torch

    from mmdps.trainer import GRPOTrainer, RolloutBudget
    from mmdps.training import update

    recipe = bench.TASKS["countdown"].recipe
    settings = recipe.settings(seed=0, threads=args.threads, batch_size=bench_args.batch_size,
                               num_generations=bench_args.num_generations, pool_size=len(pool), progress=False)
    config = recipe.grpo_config(settings, Path(args.warm_start), scratch, selector=selector, selector_kwargs=kwargs,
                                max_steps=10**6)
    config = dataclasses.replace(config, bf16=False, log_completions_steps=0)
    torch.manual_seed(0)
    trainer = GRPOTrainer(config, items=pool)
    update_norm = bench.UpdateNorm(trainer.unwrapped_model)
    # No evaluation: the callback only keeps the per-step records.
    recorder = EvalCallback(lambda trainer: {},
                            record=lambda metrics, seconds: step_record(metrics, bench.STEP_KEYS,
                                                                        update_norm=update_norm()))
    # PolicyUpdate looks the function up in mmdps.training.update at each step: patch it there.
    drop = update.drop_zero_advantage_groups
    with mock.patch.object(update, "drop_zero_advantage_groups",
                           informative_only(drop) if informative_normaliser else drop):
        trainer.train(stop=RolloutBudget(args.steps * config.batch_size * config.num_generations),
                      callbacks=[recorder])
    return recorder.steps


def summarise(steps: list[dict]) -> dict:
    """Means over the steps; a step without an update (DS found no informative group within its rounds)
    has no gradient or token figures and is left out of their means (None when no step has them)."""

    def mean(key: str) -> float | None:
        values = [s[key] for s in steps if key in s]
        return float(np.mean(values)) if values else None

    grad_norms = [s["grad_norm"] for s in steps if "grad_norm" in s]
    keys = ("effective_ratio", "informative_token_share", "grad_norm", "update_norm", "completion_tokens")
    row: dict[str, Any] = {key: mean(key) for key in keys}
    row.update(steps=len(steps), skipped_updates=len(steps) - len(grad_norms),
               max_grad_norm=float(max(grad_norms)) if grad_norms else None,
               update_norm_per_step=[s["update_norm"] for s in steps])
    return row


def _figure(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    bench_args = bench.parse_args(["--data-seed", str(args.data_seed)] + (["--tiny"] if args.tiny else []))
    data = bench.TASKS["countdown"].build_data(bench_args)
    pool = renumber(data["pool_a"])
    out = Path(args.out)
    results = {}
    for index, (label, selector, kwargs, patched) in enumerate(CASES):
        steps = run_case(selector, kwargs, patched, pool, bench_args, args, out / "scratch" / f"case{index}")
        results[label] = summarise(steps)
        row = results[label]
        print(f"{label:42s} steps {len(steps):3d} ({row['skipped_updates']} without an update)  informative share "
              f"{_figure(row['effective_ratio'], 2)}  grad norm {_figure(row['grad_norm'], 3)} (max "
              f"{_figure(row['max_grad_norm'], 3)})  update norm {_figure(row['update_norm'], 4)}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "normaliser.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'normaliser.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
