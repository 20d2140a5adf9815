"""``mmdps demo``: the CPU demos (docs/demo.md). The recipes and their pieces live in :mod:`mmdps.demos`
(``countdown``: a text model; ``vl`` with ``--vl``: the visual pack, a vision-language model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmdps.demos import RECIPES, DemoSettings, VLDemoSettings, run_demo

# Options whose default differs between the two demos: None on the command line = the chosen demo's own.
PER_DEMO = ("sft_steps", "rl_steps", "selector", "eval_every")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d, v = RECIPES["countdown"].settings(), VLDemoSettings()
    parser.add_argument("--vl", action="store_true",
                        help="the vision-language demo: a tiny Qwen2-VL learns to read digits from images "
                             "(default: the Countdown demo with a text model)")
    parser.add_argument("--levels", nargs="+", default=None,
                        help=f"--vl: visual pack levels, names or indices (default: {' '.join(v.levels)}; the "
                             "geometry levels angle, complement and third take longer and are barely learned)")
    parser.add_argument("--out", default=None,
                        help="folder for everything the demo writes (default outputs/demo, outputs/demo-vl with --vl)")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="seeds the model, the SFT and RL prompt sets and sampling; the held-out set is the same "
                             "for every seed (default %(default)s)")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default %(default)s)")
    parser.add_argument("--sft-steps", type=int, default=None,
                        help=f"SFT optimizer steps, batch {d.sft_batch_size} (default {d.sft_steps}; "
                             f"{v.sft_steps} with --vl)")
    parser.add_argument("--sft-seconds", type=float, default=None,
                        help="also stop SFT after this many seconds (results then depend on the machine's speed; "
                             "default: no time limit)")
    parser.add_argument("--rl-steps", type=int, default=None,
                        help=f"GRPO steps (default {d.rl_steps}; {v.rl_steps} with --vl)")
    parser.add_argument("--selector", default=None,
                        help=f"prompt selector: uniform, ds, mopps or dps (default {d.selector}; "
                             f"{v.selector} with --vl)")
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
    parser.add_argument("--eval-every", type=int, default=None,
                        help=f"evaluate every N GRPO steps, 0: only before and after (default {d.eval_every}; "
                             f"{v.eval_every} with --vl)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    settings_class = RECIPES["vl" if args.vl else "countdown"].settings
    if args.levels is not None and not args.vl:
        raise ValueError("--levels is an option of the vision-language demo: add --vl")
    defaults = settings_class()
    chosen = {name: getattr(defaults, name) if getattr(args, name) is None else getattr(args, name)
              for name in PER_DEMO}
    extra: dict[str, Any] = {"levels": tuple(int(x) if x.isdigit() else x for x in args.levels)} if args.levels else {}
    return settings_class(seed=args.seed, threads=args.threads, sft_seconds=args.sft_seconds,
                          candidate_ratio=args.candidate_ratio, batch_size=args.batch_size,
                          num_generations=args.num_generations, rl_lr=args.rl_lr, pool_size=args.pool_size,
                          progress=not args.no_progress,
                          selector_kwargs={"decay": 0.5} if chosen["selector"] == "dps" else {}, **chosen, **extra)


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
    recipe = RECIPES["vl" if args.vl else "countdown"]
    run_demo(recipe, settings, Path(args.out or ("outputs/demo-vl" if args.vl else "outputs/demo")))
    return 0
