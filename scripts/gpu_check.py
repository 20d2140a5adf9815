"""One GPU check: the `gpu` tests, then rollout throughput, GRPO step time and peak memory of mmdps's
trainer on a ~0.5B-parameter Qwen2 and a Qwen2.5-VL of similar size, and the same step with TRL's
GRPOTrainer as a ratio when TRL is importable.

The models are built from config with random weights (nothing is downloaded): Qwen2-0.5B's shape
(24 layers, hidden 896, 14 heads, 2 KV heads, MLP 4864, vocabulary 151,936) and, for the VL model,
the same language model under a 4-block Qwen2.5-VL vision tower of width 1280. The tokenizer is the
offline byte-level BPE of the tiny test models (4,014 tokens; the model's larger vocabulary is still
sampled and scored in full). Random weights would stop at random lengths, so every completion is
forced to exactly ``--max-new-tokens`` tokens (``min_new_tokens = max_new_tokens``, in both trainers).

A step is B prompts x k completions: rollout with the HF engine, rewards, one optimizer update over
micro-batches of ``--micro-batch`` sequences (bf16 weights, no KL, no reference model, every group
trained). Phases run in priority order (tests, mmdps text, mmdps VL, TRL text, TRL VL); a phase that
would not fit in what is left of ``--budget-s`` is skipped and says so. The JSON at ``--out`` is
rewritten after every phase, so a run cut short still leaves its figures.

    scripts/gpu_check.sh --out outputs/gpu_check             # on a GPU machine (sets up the environment)
    python scripts/gpu_check.py --dry-run --out /tmp/check   # the same code on CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Qwen2-0.5B's language model; the VL model puts a 4-block Qwen2.5-VL vision tower (width 1280, as in
# the released Qwen2.5-VL) in front of it.
FULL = dict(hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=151936,
            vision_depth=4, vision_width=1280, vision_heads=16, vision_intermediate=3420, image_side=336,
            batch=32, k=8, max_new_tokens=512, micro_batch=8, steps=1)
DRY = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=None,
           vision_depth=2, vision_width=32, vision_heads=2, vision_intermediate=64, image_side=56,
           batch=2, k=2, max_new_tokens=8, micro_batch=2, steps=1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and the tests' log")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the wiring, not speed")
    parser.add_argument("--budget-s", type=float, default=250.0,
                        help="wall-clock seconds for everything; phases that would not fit are skipped")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per trainer after one full-size warm-up step (default 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="prompts per step, B (default 32)")
    parser.add_argument("--num-generations", type=int, default=None, help="completions per prompt, k (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="completion length, forced (default 512)")
    parser.add_argument("--micro-batch", type=int, default=None, help="sequences per forward/backward (default 8)")
    parser.add_argument("--skip", default="", help="comma-separated phases to leave out: tests, text, vl, trl")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(DRY if args.dry_run else FULL)
    for key, value in (("steps", args.steps), ("batch", args.batch_size), ("k", args.num_generations),
                       ("max_new_tokens", args.max_new_tokens), ("micro_batch", args.micro_batch)):
        if value is not None:
            sizes[key] = value
    if (sizes["batch"] * sizes["k"]) % sizes["micro_batch"]:
        raise SystemExit(f"B x k = {sizes['batch'] * sizes['k']} must be a multiple of --micro-batch "
                         f"({sizes['micro_batch']}) so that TRL accumulates the same micro-batches")
    return sizes


class Report:
    """The JSON of every figure, rewritten after each phase."""

    def __init__(self, out: Path, budget_s: float):
        self.out = out
        self.path = out / "gpu_check.json"
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.data: dict[str, Any] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        self.path.write_text(json.dumps(self.data, indent=2, default=str))

    def skip(self, key: str, reason: str) -> None:
        print(f"[{key}] skipped: {reason}")
        self.put(key, {"skipped": reason})


# ---------------------------------------------------------------------- environment and tests
def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "device": "cpu"}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, device_memory_gib=round(props.total_memory / 2**30, 1))
    info["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    for name in ("transformers", "accelerate", "peft", "trl", "datasets", "math_verify"):
        try:
            __import__(name)
            info[name] = importlib.metadata.version(name.replace("_", "-"))
        except Exception as exc:  # noqa: BLE001 - a broken optional package is a finding, not a crash
            info[name] = f"unavailable ({type(exc).__name__}: {exc})"[:200]
    return info


def run_tests(report: Report, timeout_s: float) -> dict[str, Any]:
    """The `gpu` tests in a child process (they skip without CUDA); the log goes next to the JSON."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-rs",
               "tests/test_gpu.py"]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
        output, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, rc = f"{exc.stdout or ''}{exc.stderr or ''}\nTIMEOUT after {timeout_s:.0f} s", -1
    (report.out / "gpu_tests.log").write_text(output if isinstance(output, str) else output.decode())
    lines = [line for line in str(output).splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if re.search(r"passed|failed|skipped|error", line)), "")
    print(output[-4000:] if isinstance(output, str) else output)
    return {"rc": rc, "summary": summary.strip("= "), "seconds": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------- models and prompts
def build_model(kind: str, sizes: dict[str, Any], out: Path) -> tuple[Path, int]:
    """A random-weight Qwen2 (``kind`` "text") or Qwen2.5-VL ("vl") saved to ``out`` in bfloat16 on
    a GPU run; returns the folder and the parameter count."""
    import torch

    from mmdps.models.tiny import SPECIAL_TOKENS, build_tokenizer

    tokenizer = build_tokenizer("bpe")
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS}
    text = dict(vocab_size=sizes["vocab"] or (len(tokenizer) + 63) // 64 * 64, hidden_size=sizes["hidden"],
                intermediate_size=sizes["intermediate"], num_hidden_layers=sizes["layers"],
                num_attention_heads=sizes["heads"], num_key_value_heads=sizes["kv_heads"],
                max_position_embeddings=32768, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with device:  # initialising 0.5B parameters is much faster on the GPU
        model, processor = _model_of(kind, sizes, tokenizer, ids, text)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    if device.type == "cuda":
        model.to(torch.bfloat16)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    del model
    free_memory()
    return out, params


def _model_of(kind: str, sizes: dict[str, Any], tokenizer, ids: dict[str, int], text: dict[str, Any]):
    import transformers as tf

    from mmdps.models.tiny import build_processor

    head_dim = sizes["hidden"] // sizes["heads"]
    if kind == "text":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**text))
        processor = tokenizer
    else:
        half = head_dim // 2  # M-RoPE sections (time, height, width) add up to head_dim / 2, as in Qwen2.5-VL
        text["rope_parameters"]["mrope_section"] = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
        depth = sizes["vision_depth"]
        vision = dict(depth=depth, hidden_size=sizes["vision_width"], intermediate_size=sizes["vision_intermediate"],
                      num_heads=sizes["vision_heads"], out_hidden_size=sizes["hidden"], patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                      fullatt_block_indexes=list(range(1, depth, 2)))
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                                     video_token_id=ids["<|video_pad|>"],
                                     vision_start_token_id=ids["<|vision_start|>"],
                                     vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
        model = tf.Qwen2_5_VLForConditionalGeneration(config)
        side = sizes["image_side"]
        processor = build_processor(tokenizer, min_pixels=56 * 56, max_pixels=max(side, 56) ** 2)
    return model, processor


def make_items(kind: str, sizes: dict[str, Any]) -> list:
    """B countdown prompts; for the VL model each carries one noise image of ``image_side`` pixels."""
    import numpy as np
    from PIL import Image

    from mmdps import tasks

    items = tasks.get("countdown").load(None, split="train", limit=sizes["batch"], seed=0)
    if kind == "text":
        return items
    rng = np.random.default_rng(0)
    side = sizes["image_side"]
    with_images = []
    for item in items:
        image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        content = [{"type": "image", "image": image}, {"type": "text", "text": item.text}]
        with_images.append(dataclasses.replace(item, messages=[{"role": "user", "content": content}]))
    return with_images


def reset_accelerate() -> None:
    """accelerate keeps one process-wide state: each trainer starts from a clean one."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


# ---------------------------------------------------------------------- mmdps
def mmdps_config(model_dir: Path, out: Path, sizes: dict[str, Any]):
    from mmdps.config import GRPOConfig

    return GRPOConfig(
        model_name_or_path=str(model_dir), task="countdown", selector="uniform", batch_size=sizes["batch"],
        num_generations=sizes["k"], max_new_tokens=sizes["max_new_tokens"], max_prompt_length=1024,
        micro_batch_size=sizes["micro_batch"], learning_rate=1e-6, weight_decay=0.0, beta=0.0, entropy_coeff=0.0,
        loss_agg_mode="token-mean", skip_zero_advantage_groups=False, temperature=1.0, output_dir=str(out),
        seed=0, progress_bar=False, log_completions_steps=0, save_steps=0, save_final=False, resume=None)


def force_length(engine) -> None:
    """Make the HF engine sample exactly ``max_new_tokens`` tokens (EOS is masked until then)."""
    base = engine.generation_config

    def fixed_length(k, sampling):
        config = base(k, sampling)
        config.min_new_tokens = sampling.max_new_tokens
        return config

    engine.generation_config = fixed_length


def time_mmdps(kind: str, model_dir: Path, items: list, sizes: dict[str, Any], out: Path,
               report: Report) -> dict[str, Any]:
    """One untimed full-size warm-up step (CUDA libraries, and the allocator's blocks for every KV-cache
    size), then up to ``steps`` timed steps (fewer when the budget runs low); peak memory is that of
    the timed steps."""
    import torch

    from mmdps.trainer import GRPOTrainer

    reset_accelerate()
    t0 = time.perf_counter()
    config = mmdps_config(model_dir, out / f"mmdps-{kind}", sizes)
    trainer = GRPOTrainer(config, items=items)
    force_length(trainer.engine)
    load_s = time.perf_counter() - t0
    steps: list[dict[str, float]] = []
    for index in range(1 + sizes["steps"]):
        if index > 1 and report.left() < 1.5 * steps[-1]["step_s"]:
            break
        if index == 1 and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.step += 1
        t0 = time.perf_counter()
        metrics = trainer.train_step()
        step_s = time.perf_counter() - t0
        steps.append({"step_s": step_s, "rollout_s": metrics["time/rollout"], "train_s": metrics["time/train"],
                      "reward_s": metrics["time/reward"], "tokens": metrics["tokens_generated"],
                      "completion_length_mean": metrics["completion_length_mean"]})
        label = f"step {index}" if index else "warm-up step"
        print(f"[mmdps {kind}] {label}: {step_s:.2f} s (rollout {metrics['time/rollout']:.2f} s, "
              f"train {metrics['time/train']:.2f} s, {metrics['tokens_generated']} tokens)")
    warmup, timed = steps[0], steps[1:]
    result = {"load_s": round(load_s, 2), "warmup_step_s": warmup["step_s"], "steps": timed,
              "step_s": statistics.median(s["step_s"] for s in timed),
              "rollout_tokens_per_s": statistics.median(s["tokens"] / s["rollout_s"] for s in timed),
              "train_s": statistics.median(s["train_s"] for s in timed), **peak_memory()}
    del trainer
    free_memory()
    return result


# ---------------------------------------------------------------------- TRL
def time_trl(kind: str, model_dir: Path, items: list, sizes: dict[str, Any], out: Path) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same model, prompts, reward and sizes: generation batch B x k, one
    optimizer step over (B x k) / micro_batch accumulated micro-batches, completions forced to the
    same length. The first step is the warm-up; the rest are timed between ``on_step_end`` calls."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from mmdps import verifiers
    from mmdps.models.loading import load_processor

    reset_accelerate()
    verify = verifiers.get("countdown")
    rows = []
    for item in items:
        if kind == "text":
            rows.append({"prompt": item.messages, "answer": json.dumps(item.ground_truth)})
        else:
            prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item.text}]}]
            rows.append({"prompt": prompt, "image": item.images[0], "answer": json.dumps(item.ground_truth)})
    dataset = Dataset.from_list(rows)

    def reward(completions, answer, **_):
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [float(verify(text, json.loads(a))["score"]) for text, a in zip(texts, answer, strict=True)]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_train_begin(self, *_, **__):
            self.marks.append(time.perf_counter())

        def on_step_end(self, *_, **__):
            self.marks.append(time.perf_counter())
            if len(self.marks) == 2 and torch.cuda.is_available():  # the warm-up step is done
                torch.cuda.reset_peak_memory_stats()

    cuda = torch.cuda.is_available()
    sequences = sizes["batch"] * sizes["k"]
    length = sizes["max_new_tokens"]
    config = GRPOConfig(
        output_dir=str(out / f"trl-{kind}"), per_device_train_batch_size=sizes["micro_batch"],
        gradient_accumulation_steps=sequences // sizes["micro_batch"], num_generations=sizes["k"],
        max_completion_length=length, generation_kwargs={"min_new_tokens": length}, temperature=1.0, top_p=1.0,
        beta=0.0, learning_rate=1e-6, weight_decay=0.0, max_grad_norm=1.0, epsilon=0.2, epsilon_high=0.28,
        loss_type="dapo", max_steps=1 + sizes["steps"], logging_steps=10**6, save_strategy="no", report_to="none",
        use_cpu=not cuda, bf16=cuda, seed=0, disable_dropout=True, dataloader_num_workers=0,
        gradient_checkpointing=False)  # TRL turns it on by default; mmdps trains without it here
    model_cls = AutoModelForCausalLM if kind == "text" else AutoModelForImageTextToText
    t0 = time.perf_counter()
    model = model_cls.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=load_processor(model_dir), callbacks=[clock])
    load_s = time.perf_counter() - t0
    free_memory()
    trainer.train()
    times = [b - a for a, b in itertools.pairwise(clock.marks)]
    result = {"load_s": round(load_s, 2), "warmup_step_s": times[0], "step_times_s": times[1:],
              "step_s": statistics.median(times[1:]), **peak_memory()}
    del trainer, model
    free_memory()
    return result


# ---------------------------------------------------------------------- the check
def guarded(report: Report, key: str, need_s: float, run: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """Run one phase if ``need_s`` seconds are left; a failure is recorded (with its error) and the
    check goes on with the next phase."""
    if report.left() < need_s:
        report.skip(key, f"time budget: {report.left():.0f} s left, about {need_s:.0f} s needed")
        return None
    t0 = time.perf_counter()
    try:
        result = run()
    except Exception as exc:  # noqa: BLE001 - one broken phase must not hide the others' figures
        logging.exception("phase %s failed", key)
        report.put(key, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        return None
    result["phase_s"] = round(time.perf_counter() - t0, 1)
    report.put(key, result)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("transformers", "trl", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, args.budget_s)
    sizes = settings_of(args)
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    env = environment()
    report.put("environment", env)
    report.put("settings", {**sizes, "dry_run": args.dry_run, "budget_s": args.budget_s, "fixed_length": True})
    print(f"device: {env['device']}; torch {env['torch']}, transformers {env['transformers']}, trl {env['trl']}")
    if not args.dry_run and env["device"] == "cpu":
        print("no CUDA device: use --dry-run on a CPU machine")
        return 2

    if "tests" not in skip:
        limit = max(60.0, min(180.0, report.left() - 120))  # leave time for the measurements
        guarded(report, "gpu_tests", 60, lambda: run_tests(report, timeout_s=limit))
    import torch

    torch.manual_seed(0)
    # Weights and run folders go to scratch space: only the figures belong in --out.
    work = Path(tempfile.mkdtemp(prefix="mmdps-gpu-check-"))
    models: dict[str, tuple[Path, list]] = {}
    ours: dict[str, dict[str, Any]] = {}
    trl_ok = env["trl"][0].isdigit()
    for kind in ("text", "vl"):  # mmdps text, TRL text, mmdps VL, TRL VL
        if kind in skip:
            continue

        def run_ours(kind=kind) -> dict[str, Any]:
            t0 = time.perf_counter()
            folder, params = build_model(kind, sizes, work / "models" / kind)
            models[kind] = (folder, make_items(kind, sizes))
            result = {"parameters": params, "build_s": round(time.perf_counter() - t0, 2)}
            result.update(time_mmdps(kind, folder, models[kind][1], sizes, work, report))
            return result

        # The first phase's cost is unknown; later ones are sized from it (VL: images, longer prompts).
        need = 1.3 * ours["text"]["phase_s"] if "text" in ours else 45
        result = guarded(report, f"mmdps_{kind}", need, run_ours)
        if result is None:
            continue
        ours[kind] = result
        if "trl" in skip:
            continue
        if not trl_ok:
            report.skip(f"trl_{kind}", f"TRL is not importable here: {env['trl']}")
            continue
        theirs = guarded(report, f"trl_{kind}", 1.2 * result["phase_s"],
                         lambda kind=kind: time_trl(kind, models[kind][0], models[kind][1], sizes, work))
        if theirs is not None:
            theirs["ratio_mmdps_over_trl"] = result["step_s"] / theirs["step_s"]
            report.put(f"trl_{kind}", theirs)

    shutil.rmtree(work, ignore_errors=True)
    print_summary(report.data, report.path)
    shutil.rmtree(work, ignore_errors=True)
    tests = report.data.get("gpu_tests", {})
    return 1 if tests.get("rc") not in (0, None) else 0


def print_summary(data: dict[str, Any], path: Path) -> None:
    settings = data["settings"]
    print(f"\n== gpu check on {data['environment']['device']} ({data['elapsed_s']} s) ==")
    tests = data.get("gpu_tests", {})
    print(f"gpu tests: {tests.get('summary') or tests}")
    print(f"step: B={settings['batch']} prompts x k={settings['k']}, completions forced to "
          f"{settings['max_new_tokens']} tokens, micro-batch {settings['micro_batch']}")
    for kind in ("text", "vl"):
        ours, theirs = data.get(f"mmdps_{kind}", {}), data.get(f"trl_{kind}", {})
        if "step_s" not in ours:
            print(f"{kind}: {ours}")
            continue
        line = (f"{kind}: {ours['parameters'] / 1e6:.0f}M params; rollout {ours['rollout_tokens_per_s']:.0f} tokens/s; "
                f"mmdps step {ours['step_s']:.2f} s (train {ours['train_s']:.2f} s); "
                f"peak {ours.get('peak_allocated_gib', '-')} GiB allocated")
        if "step_s" in theirs:
            line += (f"; TRL step {theirs['step_s']:.2f} s, peak {theirs.get('peak_allocated_gib', '-')} GiB; "
                     f"mmdps / TRL = {theirs['ratio_mmdps_over_trl']:.2f}")
        else:
            line += f"; TRL: {theirs}"
        print(line)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
