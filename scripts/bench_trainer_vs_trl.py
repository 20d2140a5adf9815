"""Step time of mmdps's GRPOTrainer against TRL's GRPOTrainer on the same tiny model, task and settings.

Both trainers start from the same weights (the demo's tiny Qwen2, SFT-warmed for ``--sft-steps``
steps, or a model folder given with ``--model``), train on the same Countdown prompts with the same
reward (mmdps's ``countdown`` verifier), and take one optimizer step per batch of ``B`` prompts x
``k`` completions sampled at T=1 with ``max_new_tokens`` 16, no KL, no reference model, uniform
prompt order. A step is timed from rollout to optimizer update (TRL: ``on_step_begin`` ->
``on_step_end``). To share the machine's load fairly the blocks alternate: mmdps, TRL, mmdps; the
median step time of each trainer is reported, and the ratio ``mmdps / TRL`` (below 1 = faster).

TRL is not a dependency of mmdps: ``pip install trl`` into the benchmark's environment.

    python scripts/bench_trainer_vs_trl.py --steps 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench_trl")
    parser.add_argument("--model", default=None, help="a model folder from `mmdps demo` / the e2e benchmark "
                        "(default: build the demo model and warm it up for --sft-steps)")
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each block")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per step")
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-skip-zero-advantage", action="store_true",
                        help="train mmdps on every group, as TRL does (skip_zero_advantage_groups=False)")
    return parser.parse_args(argv)


def require_trl():
    try:
        import trl
    except ImportError:
        print("TRL is not installed. This benchmark compares against TRL's GRPOTrainer, which is not a "
              "dependency of mmdps; install it into this environment with `pip install trl` and run again.")
        return None
    return trl


def prepare_model(args, out: Path):
    from mmdps.demos.common import warm_start
    from mmdps.demos.countdown import RECIPE, DemoSettings, make_data

    settings = DemoSettings(sft_steps=args.sft_steps, threads=args.threads, pool_size=512, progress=False)
    data = make_data(settings)
    if args.model:
        return Path(args.model), data
    model_dir = out / "model"
    if not (model_dir / "config.json").is_file():
        warm_start(RECIPE, settings, data.sft, model_dir)
    return model_dir, data


def mmdps_block_timer(args, model_dir: Path, data, out: Path):
    """A function that runs one timed block of mmdps steps (warm-up steps untimed) and returns its times."""
    from mmdps.demos.countdown import DemoSettings, grpo_config
    from mmdps.trainer import GRPOTrainer

    settings = DemoSettings(batch_size=args.batch_size, num_generations=args.num_generations,
                            max_new_tokens=args.max_new_tokens, selector="uniform", selector_kwargs={},
                            progress=False)
    config = grpo_config(settings, model_dir, out / "mmdps", max_steps=10**6)
    config.log_completions_steps = 0
    config.skip_zero_advantage_groups = not args.no_skip_zero_advantage
    trainer = GRPOTrainer(config, items=data.pool)

    def block() -> list[float]:
        """``--warmup`` untimed then ``--steps`` timed steps; a step's time is the trainer's ``time/step``."""
        first_timed = trainer.step + args.warmup + 1
        end = trainer.step + args.warmup + args.steps
        times: list[float] = []

        class StepTimes:
            def on_step_end(self, trainer: GRPOTrainer, metrics: dict) -> None:
                if trainer.step >= first_timed:
                    times.append(metrics["time/step"])

        trainer.train(stop=lambda t: t.step >= end, callbacks=[StepTimes()])
        return times

    return block


def time_trl(args, model_dir: Path, data, out: Path) -> list[float]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from mmdps import verifiers

    verify = verifiers.get("countdown")
    dataset = Dataset.from_list([{"prompt": item.text, "target": item.ground_truth["target"],
                                  "numbers": item.ground_truth["numbers"]} for item in data.pool])

    def countdown_reward(completions, target, numbers, **_):
        return [verify(text, {"target": t, "numbers": n})["score"]
                for text, t, n in zip(completions, target, numbers, strict=True)]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, *_, **__):
            self._start = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.times.append(time.perf_counter() - self._start)

    completions_per_step = args.batch_size * args.num_generations
    config = GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=completions_per_step,
        num_generations=args.num_generations, gradient_accumulation_steps=1, max_completion_length=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, learning_rate=1e-4, weight_decay=0.0, adam_beta2=0.99,
        max_grad_norm=1.0, epsilon=0.2, loss_type="dapo", max_steps=args.warmup + args.steps, logging_steps=10**6,
        save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(), bf16=False, seed=0,
        disable_dropout=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=countdown_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    return timer.times[args.warmup:]


def main(argv=None) -> int:
    args = parse_args(argv)
    if require_trl() is None:
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir, data = prepare_model(args, out)
    # Each trainer loads its own copy of the weights; blocks alternate mmdps, TRL, mmdps.
    mmdps_block = mmdps_block_timer(args, model_dir, data, out)
    ours_times = mmdps_block()
    trl_times = time_trl(args, model_dir, data, out)
    ours_times += mmdps_block()
    ours, theirs = statistics.median(ours_times), statistics.median(trl_times)
    result = {"mmdps_median_step_s": ours, "trl_median_step_s": theirs, "ratio_mmdps_over_trl": ours / theirs,
              "mmdps_step_times": ours_times, "trl_step_times": trl_times, "args": vars(args),
              "torch": torch.__version__, "trl": require_trl().__version__}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"B={args.batch_size} prompts x k={args.num_generations}, max_new_tokens {args.max_new_tokens}, "
          f"{args.threads} thread(s)")
    print(f"mmdps GRPOTrainer: median {ours:.3f} s/step over {len(ours_times)} steps")
    print(f"TRL   GRPOTrainer: median {theirs:.3f} s/step over {len(trl_times)} steps")
    print(f"ratio mmdps / TRL: {ours / theirs:.2f} ({'faster' if ours < theirs else 'slower'}); wrote "
          f"{out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
