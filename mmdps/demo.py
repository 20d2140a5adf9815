"""The CPU demo (``mmdps demo``). A ~1M-parameter Qwen2 learns Countdown in minutes, offline.

1. build a tiny Qwen2 (hidden 128, 4 layers, tied embeddings) with a character-level tokenizer;
2. supervised warm-up on generated worked solutions (``<answer>7*19+3</answer>``) until the model
   solves some but not all problems;
3. evaluate a fixed 400-prompt held-out set (greedy and k=8 samples at T=1);
4. GRPO with the DPS selector through :class:`mmdps.trainer.GRPOTrainer`, evaluating along the way;
5. print accuracy before/after and the rollouts spent; write ``demo.json`` and ``demo.png``.

The recipe (levels, sizes, learning rates) is the measured one of ``docs/demo.md``. Every random
stream is seeded and the SFT length is a step count (``--sft-seconds`` would make it depend on the
machine's speed), so one machine with one thread count repeats its numbers exactly; another processor
or thread count rounds differently and moves them by a few points (docs/demo.md, "What is
reproducible"). Everything is written under ``--out``.

The pieces (:func:`make_data`, :func:`warm_start`, :func:`run_grpo`, :func:`evaluate_policy`) are
reused by ``scripts/bench_selection_e2e.py`` and ``scripts/bench_trainer_vs_trl.py``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdps.data.item import Item

if TYPE_CHECKING:  # the vision-language demo reuses the loop below with its own settings and data
    from mmdps.demo_vl import VLDemoData, VLDemoSettings

# The four levels of the tiny Countdown split (tasks/countdown.py TINY_LEVELS): 2 numbers in 1-20,
# 3 in 1-9, 3 in 1-25, 4 in 1-9; + - * only.
LEVELS = ("L0: 2 nums 1-20", "L1: 3 nums 1-9", "L2: 3 nums 1-25", "L3: 4 nums 1-9")
# Unique SFT problems drawn per level (L0 / L1 have only ~600 / ~2000 distinct problems in all);
# levels are then balanced by repetition so that each one gets a quarter of the SFT batches.
SFT_PROBLEMS_PER_LEVEL = (500, 1_500, 6_000, 6_000)
# Tokens the model reads as one symbol, so that prompts stay ~15 tokens long.
ADDED_TOKENS = ("<answer>", "</answer>", "Numbers:", "Target:")
# Renders only the user's text: no system prompt, no role markers, no generation prefix (the answer
# starts with the <answer> token, which separates it well enough).
CHAT_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ message['content'] }}"
                 "{% endif %}{% endfor %}")


@dataclass
class DemoSettings:
    """Every knob of the demo, with the measured recipe as defaults (docs/demo.md)."""

    seed: int = 0
    threads: int = 2
    # model
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    # data
    pool_size: int = 4000  # RL training prompts (the measured recipe's pool size)
    heldout_per_level: int = 100
    # SFT
    sft_steps: int = 900
    sft_seconds: float | None = None
    sft_batch_size: int = 64
    sft_lr: float = 2e-3
    # GRPO
    selector: str = "dps"
    selector_kwargs: dict = field(default_factory=lambda: {"decay": 0.5})
    candidate_ratio: float | None = None  # GRPOConfig.candidate_ratio: None ranks the whole pool
    rl_steps: int = 200
    batch_size: int = 32
    num_generations: int = 8
    rl_lr: float = 1e-4
    max_new_tokens: int = 16
    temperature: float = 1.0
    # evaluation
    eval_every: int = 50
    eval_samples: int = 8
    progress: bool = True

    def validate(self) -> None:
        for name in ("threads", "hidden_size", "num_layers", "num_heads", "intermediate_size", "pool_size",
                     "heldout_per_level", "sft_batch_size", "batch_size", "max_new_tokens", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.sft_steps < 0 or self.eval_every < 0:
            raise ValueError("--sft-steps and --eval-every must be >= 0")
        if self.rl_steps < 1:
            raise ValueError(f"--rl-steps must be >= 1, got {self.rl_steps}")
        if self.num_generations < 2:
            raise ValueError(f"--num-generations must be >= 2 (GRPO compares rollouts), got {self.num_generations}")
        if self.batch_size > self.pool_size:
            raise ValueError(f"--batch-size ({self.batch_size}) exceeds --pool-size ({self.pool_size})")


# ---------------------------------------------------------------------- tokenizer and model
def build_tokenizer():
    """A character-level Qwen2 tokenizer: the 256 byte symbols and no merges, the Qwen2 special tokens,
    ``<answer>``, ``</answer>``, ``Numbers:`` and ``Target:`` as single tokens, and a chat template that
    renders only the user's text."""
    from mmdps.models.tiny import build_tokenizer as build_qwen2_tokenizer

    tokenizer = build_qwen2_tokenizer("byte")
    tokenizer.add_tokens(list(ADDED_TOKENS))  # not special: decode(skip_special_tokens=True) keeps them
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer, settings: DemoSettings):
    """A random-weight ``Qwen2ForCausalLM`` (about 1.1M parameters at the defaults); the global RNG is
    left untouched."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.pad_token_id
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=settings.hidden_size,
                         intermediate_size=settings.intermediate_size, num_hidden_layers=settings.num_layers,
                         num_attention_heads=settings.num_heads, num_key_value_heads=settings.num_heads,
                         max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=pad,
                         eos_token_id=eos, pad_token_id=pad)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    return model.eval()


# ---------------------------------------------------------------------- data
@dataclass
class DemoData:
    """The held-out set, the RL prompt pool and the SFT problems: pairwise disjoint."""

    heldout: list[Item]
    pool: list[Item]
    sft: list[Item]


def _key(item: Item) -> tuple[int, tuple[int, ...]]:
    truth = item.ground_truth
    return int(truth["target"]), tuple(sorted(truth["numbers"]))


def _level_items(pack, level: int, num: int, seed: str, exclude: set) -> list[Item]:
    """Up to ``num`` distinct problems of one level that are not in ``exclude``."""
    from mmdps.tasks.countdown import TINY_LEVELS, generate_problems

    # The pack's generator refuses to return fewer problems than asked; small levels are exhausted
    # near a few hundred problems, so ask for what exists (shrinking until it succeeds).
    while True:
        try:
            problems = generate_problems(num, levels=TINY_LEVELS[level], seed=seed)
            break
        except ValueError:
            num = num * 2 // 3
    items = []
    for p in problems:
        item = pack.make_item(id=0, question=_question(p),
                              ground_truth={"target": p["target"], "numbers": p["numbers"]},
                              metadata={"solution": p["solution"], "difficulty": level,
                                        "problem_type": LEVELS[level].split(":")[0]})
        if _key(item) not in exclude:
            items.append(item)
    return items


def _question(problem: dict) -> str:
    from mmdps.tasks.countdown import countdown_question

    return countdown_question(problem["target"], problem["numbers"])


def make_data(settings: DemoSettings) -> DemoData:
    """Generate the three disjoint sets from the Countdown pack's ``tiny`` levels (seeded).

    The held-out set has ``heldout_per_level`` problems per level and does not depend on the seed, so
    runs with different seeds are scored on the same problems.
    """
    from mmdps import tasks

    pack = tasks.get("countdown", template="compact")
    heldout = []
    for level in range(len(LEVELS)):
        heldout += pack.load(None, split="tiny", levels=[level], num=settings.heldout_per_level,
                             seed=f"heldout-{level}")
    seen = {_key(item) for item in heldout}
    pool = [item for item in pack.load(None, split="tiny", num=settings.pool_size + len(heldout),
                                       seed=f"pool-{settings.seed}")
            if _key(item) not in seen][: settings.pool_size]
    seen |= {_key(item) for item in pool}
    sft: list[Item] = []
    for level, num in enumerate(SFT_PROBLEMS_PER_LEVEL):
        sft += _level_items(pack, level, num, f"sft-{settings.seed}-{level}", seen)
    # Ids must be unique within each list (selector and reports key by them).
    return DemoData(heldout=_renumber(heldout), pool=_renumber(pool), sft=_renumber(sft))


def _renumber(items: Sequence[Item]) -> list[Item]:
    return [dataclasses.replace(item, id=index) for index, item in enumerate(items)]


def sft_examples(items: Sequence[Item], tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids (exactly as the rollout engine encodes them) and target ids
    (``<answer>EXPR</answer>`` + EOS, the reference solution without spaces), levels balanced by
    repetition."""
    from mmdps.data.collate import PromptEncoder

    # The chat template renders just the user's text; tokenising those strings in one batch call is ~50x
    # faster than rendering the template per item. Checked against the engine's own encoder.
    texts = [item.text for item in items]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    reference = PromptEncoder(tokenizer, max_prompt_length=64).encode(items[:8])
    if any(list(ref.input_ids) != ids for ref, ids in zip(reference, prompt_ids[:len(reference)], strict=True)):
        raise RuntimeError("SFT prompts differ from the rollout engine's encoding; the chat template changed")
    answers = ["<answer>" + item.metadata["solution"].replace(" ", "") + "</answer>" for item in items]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    target_ids = [ids + [eos] for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]]
    by_level: dict[int, list[tuple[list[int], list[int]]]] = {}
    for item, prompt, target in zip(items, prompt_ids, target_ids, strict=True):
        by_level.setdefault(item.metadata["difficulty"], []).append((prompt, target))
    largest = max(len(rows) for rows in by_level.values())
    prompts, targets = [], []
    for level in sorted(by_level):
        rows = by_level[level]
        for index in range(largest):
            prompt, target = rows[index % len(rows)]
            prompts.append(prompt)
            targets.append(target)
    return prompts, targets


# ---------------------------------------------------------------------- evaluation
def evaluate_policy(engine, items: Sequence[Item], *, samples: int = 8, seed: int = 0, max_new_tokens: int = 16,
                    temperature: float = 1.0, levels: Sequence[str] = LEVELS) -> dict[str, Any]:
    """Greedy accuracy, mean accuracy over ``samples`` samples at ``temperature``, the share of
    prompts whose samples are mixed (some right, some wrong), both accuracies per level
    (``levels``: names ``"L<difficulty>: ..."``, keyed by the part before the colon) and per prompt
    (``per_prompt``)."""
    import numpy as np

    from mmdps.eval import evaluate_items
    from mmdps.rollout.base import SamplingParams

    t0 = time.perf_counter()
    greedy = evaluate_items(engine, items, n=1, batch_size=len(items), progress=False,
                            sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    sampled = evaluate_items(engine, items, n=samples, batch_size=100, progress=False,
                             sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                                                     seed=seed))
    rates = np.array([p["success_rate"] for p in sampled.problems])
    greedy_right = [float(p["success_rate"]) for p in greedy.problems]
    by_level = {}
    for name in levels:
        key = name.split(":")[0].lstrip("L")
        by_level[name.split(":")[0]] = {
            "greedy": greedy.report["by_difficulty"].get(key, {}).get("mean_at_n"),
            "sampled": sampled.report["by_difficulty"].get(key, {}).get("mean_at_n"),
        }
    return {"greedy": greedy.report["mean_at_n"], "sampled": sampled.report["mean_at_n"], "prompts": len(items),
            "mixed": float(np.mean((rates > 0) & (rates < 1))), "all_right": float(np.mean(rates == 1)),
            "all_wrong": float(np.mean(rates == 0)), "by_level": by_level,
            # per prompt, in the order of ``items``: two evaluations of the same items can be compared pairwise
            "per_prompt": {"greedy": greedy_right, "sampled": [float(rate) for rate in rates]},
            "seconds": time.perf_counter() - t0}


def make_engine(model, tokenizer):
    """The demo's rollout engine for evaluation: HF ``generate`` with the policy, 64 prompt tokens."""
    from mmdps import rollout

    return rollout.make_engine("hf", model, tokenizer, max_prompt_length=64)


# ---------------------------------------------------------------------- SFT warm start
def warm_start(settings: DemoSettings, data: DemoData, model_dir: Path, *,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the tiny model, run SFT, save model + tokenizer to ``model_dir``; returns the SFT stats."""
    from mmdps.sft import supervised_warmup

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, settings)
    params = sum(p.numel() for p in model.parameters())
    prompts, targets = sft_examples(data.sft, tokenizer)
    log(f"model: Qwen2, {params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}; "
        f"SFT on {len(data.sft)} problems ({len(prompts)} balanced examples)")
    with _Progress(settings.progress, "SFT", settings.sft_steps) as advance:
        result = supervised_warmup(model, prompts, targets, pad_token_id=tokenizer.pad_token_id,
                                   max_steps=settings.sft_steps, max_seconds=settings.sft_seconds,
                                   batch_size=settings.sft_batch_size, lr=settings.sft_lr, seed=settings.seed,
                                   on_step=lambda step, loss: advance(step, f"loss {loss:.3f}"))
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return {"parameters": params, "steps": result.steps, "seconds": result.seconds, "final_loss": result.final_loss}


class _Progress:
    """A rich progress bar for SFT; ``with`` yields ``advance(step, text)`` (a no-op when disabled)."""

    def __init__(self, enabled: bool, name: str, total: int):
        self.enabled, self.name, self.total = enabled, name, total

    def __enter__(self) -> Callable[[int, str], None]:
        if not self.enabled:
            return lambda step, text: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn(f"[bold]{self.name}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn())
        task = self.bar.add_task(self.name, total=self.total, info="")
        self.bar.start()
        return lambda step, text: self.bar.update(task, completed=step, info=text)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


# ---------------------------------------------------------------------- GRPO
def grpo_config(settings: DemoSettings | VLDemoSettings, model_dir: Path, output_dir: Path, *,
                selector: str | None = None, selector_kwargs: dict | None = None, max_steps: int | None = None):
    """The trainer configuration of the demo recipe (docs/demo.md)."""
    from mmdps.config import GRPOConfig

    return GRPOConfig(
        model_name_or_path=str(model_dir), dtype="float32", task="countdown", task_template="compact",
        selector=selector or settings.selector,
        selector_kwargs=dict(settings.selector_kwargs if selector_kwargs is None else selector_kwargs),
        candidate_ratio=settings.candidate_ratio,
        batch_size=settings.batch_size, num_generations=settings.num_generations,
        max_prompt_length=64, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
        learning_rate=settings.rl_lr, weight_decay=0.0, adam_beta2=0.99, max_grad_norm=1.0,
        max_steps=max_steps if max_steps is not None else settings.rl_steps,
        micro_batch_size=settings.batch_size * settings.num_generations,  # one forward: sequences are short
        clip_low=0.2, clip_high=0.2, entropy_coeff=0.0, loss_agg_mode="token-mean",
        output_dir=str(output_dir), seed=settings.seed, progress_bar=settings.progress,
        log_completions_steps=50, save_steps=0, save_final=False, resume=None, eval_steps=0)


def run_grpo(config, data: DemoData | VLDemoData, settings: DemoSettings | VLDemoSettings, *,
             rollout_budget: int | None = None, eval_every_rollouts: int | None = None,
             log: Callable[[str], None] = print,
             levels: Sequence[str] = LEVELS, controls: dict[str, Sequence[Item]] | None = None) -> dict[str, Any]:
    """GRPO with ``config.selector`` from ``config.model_name_or_path`` through :class:`GRPOTrainer`.

    Stops after ``config.max_steps`` steps or, when given, once ``rollout_budget`` rollouts are spent
    (:class:`~mmdps.trainer.RolloutBudget`; Dynamic Sampling spends a variable number per step), whichever
    comes first. Evaluates the held-out set at the start,
    each time another ``eval_every_rollouts`` rollouts are spent (default: every ``settings.eval_every``
    steps' worth) and at the end. Returns the curve (accuracy vs rollouts and vs training seconds,
    evaluation excluded) and per-step statistics. ``controls`` (name -> items) are evaluated at every
    point too, under ``point[name]`` (e.g. the held-out questions with blank images).
    """

    from mmdps.logging_utils import ProgressBar
    from mmdps.trainer import GRPOTrainer, RolloutBudget

    # The trainer's own bar counts steps; this one counts rollouts when a budget is given.
    trainer = GRPOTrainer(dataclasses.replace(config, progress_bar=False), items=data.pool, eval_items=data.heldout)
    engine = trainer.engine
    per_step = config.batch_size * config.num_generations
    every = eval_every_rollouts or (settings.eval_every * per_step if settings.eval_every else None)
    total_steps = config.max_steps if rollout_budget is None else None
    curve: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []

    def evaluate(train_seconds: float) -> dict[str, Any]:
        options = dict(samples=settings.eval_samples, seed=settings.seed, max_new_tokens=config.max_new_tokens,
                       temperature=settings.temperature, levels=levels)
        point = evaluate_policy(engine, data.heldout, **options)
        for name, items in (controls or {}).items():
            point[name] = evaluate_policy(engine, items, **options)
        point.update(step=trainer.step, rollouts=trainer.rollouts_total, train_seconds=train_seconds)
        curve.append(point)
        extra = "".join(f"  {name}: greedy {point[name]['greedy']:.3f}" for name in controls or {})
        log(f"  step {trainer.step:4d}  rollouts {trainer.rollouts_total:7d}  held-out greedy {point['greedy']:.3f}"
            f"  sampled@{settings.eval_samples} {point['sampled']:.3f}  mixed {point['mixed']:.2f}{extra}")
        return point

    class Curve:
        """After each step: the step record, the bar, and an evaluation each ``every`` rollouts."""

        train_seconds = 0.0  # training time, evaluation excluded
        next_eval = every or 0

        def on_step_end(self, trainer: GRPOTrainer, metrics: dict[str, Any]) -> None:
            self.train_seconds += metrics["time/step"]
            steps.append(_step_record(metrics, self.train_seconds))
            bar.update(trainer.step if total_steps else trainer.rollouts_total // per_step,
                       reward=metrics.get("reward_mean"), acc=metrics.get("acc_mean"),
                       effective=metrics.get("effective_ratio"))
            if every and trainer.rollouts_total >= self.next_eval:
                evaluate(self.train_seconds)
                while self.next_eval <= trainer.rollouts_total:
                    self.next_eval += every

    evaluate(0.0)
    recorder = Curve()
    bar = ProgressBar(total_steps or max(1, rollout_budget // per_step), enabled=settings.progress)
    try:
        trainer.train(stop=None if rollout_budget is None else RolloutBudget(rollout_budget), callbacks=[recorder])
    finally:
        bar.close()
    if curve[-1]["step"] != trainer.step:
        evaluate(recorder.train_seconds)
    return {"curve": curve, "steps": steps, "rollouts": curve[-1]["rollouts"], "train_seconds": recorder.train_seconds}


def _step_record(metrics: dict[str, Any], train_seconds: float) -> dict[str, Any]:
    keep = ("rollouts", "rollouts_total", "prompts_generated", "rollout_rounds", "reward_mean", "acc_mean",
            "effective_ratio", "zero_variance_share", "selector/prediction_accuracy", "time/step",
            "time/rollout", "time/train")
    record = {key: metrics[key] for key in keep if key in metrics}
    record["train_seconds"] = train_seconds
    return record


# ---------------------------------------------------------------------- the demo
def run_demo(settings: DemoSettings, out: Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole demo; writes ``demo.json`` and ``demo.png`` under ``out`` and returns the summary."""
    import torch

    settings.validate()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    data = make_data(settings)
    log(f"data: {len(data.sft)} SFT problems, {len(data.pool)} RL prompts, {len(data.heldout)} held-out "
        f"(disjoint; levels {', '.join(LEVELS)})")
    model_dir = out / "sft-model"
    sft = warm_start(settings, data, model_dir, log=log)
    log(f"SFT: {sft['steps']} steps in {sft['seconds']:.0f} s, final loss {sft['final_loss']:.3f}")

    log(f"GRPO with the {settings.selector.upper()} selector: {settings.rl_steps} steps x {settings.batch_size} "
        f"prompts x {settings.num_generations} rollouts, evaluating every {settings.eval_every} steps")
    config = grpo_config(settings, model_dir, out / "grpo")
    torch.manual_seed(settings.seed)
    rl = run_grpo(config, data, settings, log=log)
    before, after = rl["curve"][0], rl["curve"][-1]
    summary = {
        "settings": dataclasses.asdict(settings),
        "sft": sft,
        "before": before,
        "after": after,
        "rollouts": rl["rollouts"],
        "rl_seconds": rl["train_seconds"],
        "curve": rl["curve"],
        "steps": rl["steps"],
        "total_seconds": time.perf_counter() - started,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_curve(rl["curve"], out / "demo.png", title=f"Countdown, tiny Qwen2, GRPO + {settings.selector.upper()}")
    _print_summary(summary, out, log)
    return summary


def plot_curve(curve: Sequence[dict[str, Any]], path: Path, *, title: str,
               controls: dict[str, str] | None = None) -> Path:
    """Held-out accuracy (greedy and sampled) against cumulative rollouts; ``controls`` (key in each
    point -> legend label) adds their greedy accuracy as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rollouts = [point["rollouts"] for point in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rollouts, [p["greedy"] for p in curve], marker="o", label="greedy")
    ax.plot(rollouts, [p["sampled"] for p in curve], marker="s", label="mean of 8 samples, T=1")
    for key, label in (controls or {}).items():
        ax.plot(rollouts, [p[key]["greedy"] for p in curve], linestyle="--", color="grey", label=f"{label}, greedy")
    ax.set_xlabel("cumulative rollouts")
    ax.set_ylabel(f"held-out accuracy ({curve[0]['prompts']} prompts)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _print_summary(summary: dict[str, Any], out: Path, log: Callable[[str], None]) -> None:
    before, after = summary["before"], summary["after"]
    lines = ["", "held-out accuracy (400 prompts)      before RL   after RL",
             f"  greedy                               {before['greedy']:8.3f}   {after['greedy']:8.3f}",
             f"  sampled (mean of 8, T=1)             {before['sampled']:8.3f}   {after['sampled']:8.3f}"]
    for level in before["by_level"]:
        b, a = before["by_level"][level], after["by_level"][level]
        lines.append(f"  {level} greedy / sampled              {b['greedy']:.2f} / {b['sampled']:.2f}"
                     f"   {a['greedy']:.2f} / {a['sampled']:.2f}")
    lines += [f"rollouts spent: {summary['rollouts']:,} in {summary['rl_seconds']:.0f} s of GRPO; "
              f"total wall time {summary['total_seconds']:.0f} s",
              f"wrote {out / 'demo.json'} and {out / 'demo.png'}"]
    for line in lines:
        log(line)
