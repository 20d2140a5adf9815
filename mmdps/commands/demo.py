"""``mmdps demo``: the CPU demo (docs/demo.md). The recipe and its pieces live in :mod:`mmdps.demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmdps.demo import DemoSettings, run_demo


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = DemoSettings()
    parser.add_argument("--out", default="outputs/demo",
                        help="folder for everything the demo writes (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="seeds the model, the SFT and RL prompt sets and sampling; the held-out set is the same "
                             "for every seed (default %(default)s)")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default %(default)s)")
    parser.add_argument("--sft-steps", type=int, default=d.sft_steps,
                        help=f"SFT optimizer steps, batch {d.sft_batch_size} (default %(default)s)")
    parser.add_argument("--sft-seconds", type=float, default=None,
                        help="also stop SFT after this many seconds (results then depend on the machine's speed; "
                             "default: no time limit)")
    parser.add_argument("--rl-steps", type=int, default=d.rl_steps, help="GRPO steps (default %(default)s)")
    parser.add_argument("--selector", default=d.selector,
                        help="prompt selector: uniform, ds, mopps or dps (default %(default)s)")
    parser.add_argument("--candidate-ratio", type=float, default=d.candidate_ratio,
                        help="dps/mopps: rank only ratio x batch-size candidates from a shuffled pass over the pool "
                             "(default: the whole pool)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="prompts per GRPO step (default %(default)s)")
    parser.add_argument("--num-generations", type=int, default=d.num_generations,
                        help="rollouts per prompt (default %(default)s)")
    parser.add_argument("--rl-lr", type=float, default=d.rl_lr,
                        help="learning rate of the GRPO phase (default %(default)s)")
    parser.add_argument("--pool-size", type=int, default=d.pool_size,
                        help="RL training prompts (default %(default)s)")
    parser.add_argument("--eval-every", type=int, default=d.eval_every,
                        help="evaluate every N GRPO steps, 0: only before and after (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    return DemoSettings(seed=args.seed, threads=args.threads, sft_steps=args.sft_steps, sft_seconds=args.sft_seconds,
                        rl_steps=args.rl_steps, selector=args.selector, candidate_ratio=args.candidate_ratio,
                        batch_size=args.batch_size,
                        num_generations=args.num_generations, rl_lr=args.rl_lr, pool_size=args.pool_size,
                        eval_every=args.eval_every, progress=not args.no_progress,
                        selector_kwargs={"decay": 0.5} if args.selector == "dps" else {})


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        settings = settings_from_args(args)
        settings.validate()
    except ValueError as error:
        from mmdps.cli import fail

        return fail("demo", error)
    run_demo(settings, Path(args.out))
    return 0
