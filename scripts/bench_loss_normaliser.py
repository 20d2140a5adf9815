"""Does the loss normaliser make informative batches take larger steps? Gradient and update norms per step.

With the zero-advantage skip, token-mean GRPO still divides by every completion token of the batch, so a
batch with fewer informative groups (uniform) has a smaller gradient than one with more (DPS, DS) at the
same learning rate. This measures, from one warm start on the benchmark's regime-a pool: the gradient
norm, the norm of the parameter update and the informative shares per step for uniform, DPS and DS, and
uniform again with the normaliser counting only the informative groups' tokens (the candidate "fix").

    python scripts/bench_loss_normaliser.py --warm-start /tmp/bench/warm-start --steps 12 --out outputs/norm

The warm start is ``scripts/bench_selection_e2e.py``'s (``<work>/warm-start``). Writes ``normaliser.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_selection_e2e as bench  # noqa: E402  (the benchmark's data, pool and step recorder)

CASES = (("uniform", "uniform", {}, False), ("dps", "dps", {"decay": 0.5}, False),
         ("ds", "ds", {"oversample": 1.0, "max_rounds": 10}, False),
         ("uniform, normaliser = informative tokens", "uniform", {}, True))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-start", required=True, help="model folder (bench_selection_e2e's warm start)")
    parser.add_argument("--steps", type=int, default=12, help="uniform steps' worth of rollouts per case")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="outputs/normaliser")
    args = parser.parse_args(argv)
    import torch

    import mmdps.trainer as trainer_module
    from mmdps.demo import DemoSettings, grpo_config
    from mmdps.trainer import GRPOTrainer, RolloutBudget

    torch.set_num_threads(args.threads)
    data = bench.build_data(bench.parse_args([]))
    pool = bench._renumber(data["pool_a"])
    real_drop = trainer_module._drop_zero_advantage_groups

    def informative_only(*a, **k):
        kept, advantages, weight, _dropped = real_drop(*a, **k)
        return kept, advantages, weight, 0.0  # the dropped groups' tokens leave the normaliser

    out = Path(args.out)
    results = {}
    for index, (label, selector, kwargs, patched) in enumerate(CASES):
        trainer_module._drop_zero_advantage_groups = informative_only if patched else real_drop
        settings = DemoSettings(seed=0, threads=args.threads, progress=False, pool_size=len(pool))
        config = grpo_config(settings, Path(args.warm_start), out / "scratch" / f"case{index}", selector=selector,
                             selector_kwargs=kwargs, max_steps=10**6)
        config = dataclasses.replace(config, bf16=False, log_completions_steps=0)
        torch.manual_seed(0)
        trainer = GRPOTrainer(config, items=pool)
        recorder = bench._Recorder(trainer, [], lambda: {})
        trainer.train(stop=RolloutBudget(args.steps * config.batch_size * config.num_generations), callbacks=[recorder])
        steps = recorder.steps
        results[label] = {key: float(np.mean([s[key] for s in steps])) for key in
                          ("effective_ratio", "informative_token_share", "grad_norm", "update_norm",
                           "completion_tokens")}
        results[label].update(steps=len(steps), max_grad_norm=float(max(s["grad_norm"] for s in steps)),
                              update_norm_per_step=[s["update_norm"] for s in steps])
        row = results[label]
        print(f"{label:42s} steps {len(steps):3d}  informative share {row['effective_ratio']:.2f}  grad norm "
              f"{row['grad_norm']:.3f} (max {row['max_grad_norm']:.3f})  update norm {row['update_norm']:.4f}",
              flush=True)
    trainer_module._drop_zero_advantage_groups = real_drop
    out.mkdir(parents=True, exist_ok=True)
    (out / "normaliser.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
