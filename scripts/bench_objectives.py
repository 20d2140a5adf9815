"""A short CPU run per RL objective on the tiny Countdown model: does each one train?

Every run starts from the same SFT warm start (the Countdown demo's recipe, ``mmdps.demos.countdown``;
trained once and saved under ``--out/warm-start``), trains ``--steps`` GRPO steps with uniform prompt
sampling and two optimizer updates per step (``mini_batch_size`` = half the batch, so the second update is
off-policy and the ratio-based objectives differ from plain REINFORCE), and changes one thing: the objective.

Reports, per objective: mean training reward over the first and the last ``--window`` steps, held-out
greedy and sampled accuracy before and after, the rollout/training log-prob mismatch the trainer
logged, clip fractions and the run's training seconds. Writes ``results.json`` and ``table.md`` under
``--out``. A benchmark, not a test. The run in docs/rl_math.md::

    python scripts/bench_objectives.py --out outputs/bench_objectives --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

OBJECTIVES: dict[str, dict] = {
    "grpo": {},
    "grpo, batch std": {"scale_rewards": "batch"},
    "rloo": {"advantage_estimator": "rloo"},
    "reinforce_pp": {"advantage_estimator": "reinforce_pp"},
    "gspo": {"ratio_level": "sequence", "loss_agg_mode": "seq-mean-token-mean", "clip_low": 3e-4, "clip_high": 4e-4},
    "gspo-token": {"ratio_level": "sequence_token", "loss_agg_mode": "seq-mean-token-mean", "clip_low": 3e-4,
                   "clip_high": 4e-4},
    "cispo": {"loss_type": "cispo", "clip_high": 0.28},
    "grpo + tis": {"rollout_correction": "tis"},
    "grpo + mis (sequence)": {"rollout_correction": "mis", "rollout_correction_level": "sequence"},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench_objectives")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30, help="GRPO steps per objective")
    parser.add_argument("--window", type=int, default=5, help="steps averaged at the start and the end")
    parser.add_argument("--sft-steps", type=int, default=900)
    parser.add_argument("--heldout-per-level", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a busy machine)")
    return parser.parse_args(argv)


def warm_start(args, settings, data) -> Path:
    """The shared SFT checkpoint, trained once and reused."""
    from mmdps.demos.common import warm_start as train_warm_start
    from mmdps.demos.countdown import RECIPE

    model_dir = Path(args.out) / "warm-start"
    info_path = model_dir / "warm_start.json"
    if info_path.is_file() and json.loads(info_path.read_text()).get("sft_steps") == args.sft_steps:
        print(f"reusing the warm start in {model_dir}")
        return model_dir
    info = train_warm_start(RECIPE, settings, data.sft, model_dir)
    info_path.write_text(json.dumps({**info, "sft_steps": args.sft_steps}, indent=2))
    print(f"warm start: {info['steps']} SFT steps in {info['seconds']:.0f} s")
    return model_dir


def run_objective(name: str, args, settings, data, model_dir: Path) -> dict:
    from mmdps.demos.common import run_grpo
    from mmdps.demos.countdown import RECIPE, grpo_config

    base = grpo_config(settings, model_dir, Path(args.out) / "runs" / name.replace(" ", "_"), selector="uniform",
                       selector_kwargs={}, max_steps=args.steps)
    config = dataclasses.replace(base, mini_batch_size=settings.batch_size // 2, **OBJECTIVES[name])
    t0 = time.perf_counter()
    result = run_grpo(RECIPE, config, data, settings, log=lambda line: None)
    rewards = [step["reward_mean"] for step in result["steps"]]
    metrics = [json.loads(line) for line in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()]

    def mean(key: str) -> float | None:
        values = [m[key] for m in metrics if key in m]
        return float(np.mean(values)) if values else None

    before, after = result["curve"][0], result["curve"][-1]
    return {
        "objective": OBJECTIVES[name],
        "reward_first": float(np.mean(rewards[:args.window])),
        "reward_last": float(np.mean(rewards[-args.window:])),
        "greedy_before": before["greedy"], "greedy_after": after["greedy"],
        "sampled_before": before["sampled"], "sampled_after": after["sampled"],
        "logprob_diff_mean": mean("rollout/logprob_diff_mean"),
        "kl_sampler_trainer": mean("rollout/kl_sampler_trainer"),
        "clip_frac": mean("clip_frac"),
        "train_seconds": result["train_seconds"],
        "wall_seconds": time.perf_counter() - t0,
        "rewards": rewards,
    }


def table(results: dict[str, dict], args) -> str:
    lines = [f"| objective | train reward, first {args.window} steps | last {args.window} steps | held-out greedy "
             "before -> after | sampled before -> after | logprob diff | clip frac | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['reward_first']:.3f} | {r['reward_last']:.3f} | {r['greedy_before']:.3f} -> "
                     f"{r['greedy_after']:.3f} | {r['sampled_before']:.3f} -> {r['sampled_after']:.3f} | "
                     f"{r['logprob_diff_mean']:.1e} | {r['clip_frac']:.3f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mmdps.demos.countdown import DemoSettings, make_data

    torch.set_num_threads(args.threads)
    settings = DemoSettings(seed=args.seed, threads=args.threads, sft_steps=args.sft_steps,
                            heldout_per_level=args.heldout_per_level, rl_steps=args.steps, eval_every=0,
                            progress=False)
    data = make_data(settings)
    model_dir = warm_start(args, settings, data)
    out = Path(args.out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.objectives:
        results[name] = run_objective(name, args, settings, data, model_dir)
        r = results[name]
        print(f"{name:24s} reward {r['reward_first']:.3f} -> {r['reward_last']:.3f}   greedy {r['greedy_before']:.3f}"
              f" -> {r['greedy_after']:.3f}   sampled {r['sampled_before']:.3f} -> {r['sampled_after']:.3f}   "
              f"{r['train_seconds']:.0f} s", flush=True)
        results_path.write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table({k: results[k] for k in OBJECTIVES if k in results}, args))
    print(f"wrote {results_path} and {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
