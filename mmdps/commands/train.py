"""``mmdps train --config FILE [key=value ...]``: GRPO training from a YAML config.

Examples::

    mmdps train --config configs/tiny/countdown_dps.yaml
    mmdps train --config configs/countdown_dps.yaml max_steps=10 output_dir=outputs/try selector_kwargs.decay=0.7
    accelerate launch --config_file configs/accelerate/ddp.yaml -m mmdps train --config configs/math_dps.yaml
"""

from __future__ import annotations

import argparse
import json


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from mmdps.config import config_help

    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the config keys' layout
    parser.epilog = ("config keys (YAML file or key=value overrides; dotted keys reach into dict fields, e.g. "
                     "selector_kwargs.decay=0.5):\n\n" + config_help())
    parser.add_argument("--config", required=True, help="YAML config file (see configs/ and docs/training.md)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. max_steps=10 output_dir=outputs/x selector_kwargs.decay=0.5")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def _fail(exc: Exception, code: int = 2) -> int:
    from mmdps.cli import fail

    return fail("train", exc, code)


_OPTIONS_HINT = ("; set load options in task_options (training data) and eval_options (held-out data): a task pack "
                 "takes different options for its generator (train_source unset) and for files (docs/tasks.md)")


def run(args: argparse.Namespace) -> int:
    from mmdps import tasks
    from mmdps.config import load_config

    try:
        config = load_config(args.config, args.overrides)  # checks the selector and engine options too
        tasks.get_class(config.task)  # a wrong task name fails here, before any model loads
    except (ValueError, KeyError, FileNotFoundError) as exc:
        return _fail(exc)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from transformers.utils import logging as hf_logging

    from mmdps.checkpoint import CheckpointSaveError
    from mmdps.tasks import UnknownOptionError
    from mmdps.trainer import GRPOTrainer, TrainingDivergedError

    hf_logging.disable_progress_bar()  # weight loading / shard writing bars would interleave with ours

    try:
        trainer = GRPOTrainer(config)
    except UnknownOptionError as exc:  # e.g. the generator option `num` left in task_options with a file source
        return _fail(ValueError(f"{exc}{_OPTIONS_HINT}"))
    except (ValueError, KeyError, FileNotFoundError) as exc:  # bad data, model path or resume folder
        return _fail(exc)
    except TypeError as exc:
        if "keyword argument" not in str(exc):
            raise
        # a third-party pack without TaskPack.call_loader
        return _fail(ValueError(f"{exc}{_OPTIONS_HINT}; engine options go in engine_kwargs"))
    try:
        if trainer.resume_from is not None:
            print(f"resuming from {trainer.resume_from} (step {trainer.step} of {config.max_steps})")
        metrics = trainer.train()
    except (TrainingDivergedError, CheckpointSaveError) as exc:  # a full disk: one line, not a traceback
        return _fail(exc, code=1)
    if trainer.stopped_by_signal:  # preemption is an orderly stop: exit 0, and the next launch resumes
        print(f"stopped by {trainer.stopped_by_signal} at step {trainer.step} of {config.max_steps}; checkpoint in "
              f"{config.output_dir}/checkpoints; run the same command again (resume=auto) to continue", flush=True)
        return 0
    if metrics:
        print(f"done: step {config.max_steps}, reward {metrics.get('reward_mean', float('nan')):.3f}, "
              f"acc {metrics.get('acc_mean', float('nan')):.3f}, rollouts {metrics.get('rollouts_total', 0)}; "
              f"metrics in {config.output_dir}/metrics.jsonl")
    return 0
