"""What both CPU demos share: the settings, the SFT warm start, the evaluation, the GRPO loop with its
evaluation callback, the plot and the whole run (:func:`run_demo`). A task supplies its own pieces in a
:class:`Recipe` (:mod:`mmdps.demos.countdown`, :mod:`mmdps.demos.vl`); nothing here knows a task.

Every random stream is seeded and the SFT length is a step count, so one machine with one thread count
repeats a demo's numbers exactly (docs/demo.md, "What is reproducible").
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdps.data.item import Item
from mmdps.logging_utils import ProgressBar

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.config import GRPOConfig
    from mmdps.rollout.base import RolloutEngine

Log = Callable[[str], None]
# Prompts per generate call when sampling in the evaluation; the sampling seed advances with each batch
# (seed + index of its first prompt), so a fixed batch size keeps the numbers reproducible.
EVAL_SAMPLE_BATCH = 100
# What the demos keep of the trainer's per-step metrics.
DEMO_STEP_KEYS = ("rollouts", "rollouts_total", "prompts_generated", "rollout_rounds", "reward_mean", "acc_mean",
                  "effective_ratio", "zero_variance_share", "selector/prediction_accuracy", "time/step",
                  "time/rollout", "time/train")


@dataclass
class DemoSettings:
    """Every knob both demos share, with the Countdown recipe's measured values as defaults (docs/demo.md);
    a task's settings class overrides the defaults it measured differently and adds its own knobs."""

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


@dataclass(frozen=True)
class Recipe:
    """One demo task: the functions that differ between tasks; :func:`run_demo` and :func:`warm_start` run
    any recipe.

    Attributes:
        name: the key in :data:`mmdps.demos.RECIPES`.
        title: the model and task in a few words, for plots and tables.
        settings: the task's settings class (a :class:`DemoSettings`), its defaults the measured recipe.
        build_processor: ``() -> processor``: the tokenizer (text) or processor (VL) of a fresh model.
        build_model: ``(tokenizer, settings) -> model``: random weights seeded by ``settings.seed``.
        make_data: ``(settings) -> data`` with ``heldout``, ``pool`` and ``sft`` item lists.
        sft_examples: ``(items, processor) -> (prompts, targets)`` for :func:`mmdps.sft.supervised_warmup`.
        grpo_config: ``(settings, model_dir, output_dir, *, selector=None, selector_kwargs=None,
            max_steps=None) -> GRPOConfig``.
        level_names: ``(settings) -> names`` (``"L<difficulty>: ..."``) the evaluation reports by.
        controls: ``(data) -> {name: items}`` evaluated beside the held-out set at every point.
        describe_data: ``(data, settings, seconds) -> line`` logged after the data is made.
        describe_model: ``(model, tokenizer, sft_items, prompts, encode_seconds) -> (line, stats)``: the
            line logged before SFT and the figures recorded with the SFT statistics.
        print_summary: ``(summary, out, log)``: the report printed at the end of the demo.
        max_prompt_length: prompt tokens of the rollout engine.
        plot_controls: control name -> legend label in ``demo.png``.
    """

    name: str
    title: str
    settings: type[DemoSettings]
    build_processor: Callable[[], Any]
    build_model: Callable[[Any, Any], Any]
    make_data: Callable[[Any], Any]
    sft_examples: Callable[[Sequence[Item], Any], tuple[list, list[list[int]]]]
    grpo_config: Callable[..., GRPOConfig]
    level_names: Callable[[Any], Sequence[str]]
    controls: Callable[[Any], dict[str, Sequence[Item]]]
    describe_data: Callable[[Any, Any, float], str]
    describe_model: Callable[[Any, Any, Sequence[Item], Sequence[Any], float], tuple[str, dict[str, Any]]]
    print_summary: Callable[[dict[str, Any], Path, Log], None]
    max_prompt_length: int
    plot_controls: Mapping[str, str] = field(default_factory=dict)

    def make_engine(self, model, processor) -> RolloutEngine:
        """The rollout engine the demo evaluates a saved model with: HF ``generate`` with the policy."""
        from mmdps import rollout

        return rollout.make_engine("hf", model, processor, max_prompt_length=self.max_prompt_length)

    def evaluate_policy(self, engine, items: Sequence[Item], settings: DemoSettings, *,
                        max_new_tokens: int | None = None) -> dict[str, Any]:
        """:func:`evaluate_policy` with the settings' sampling and this task's level names."""
        return evaluate_policy(engine, items, samples=settings.eval_samples, seed=settings.seed,
                               max_new_tokens=max_new_tokens or settings.max_new_tokens,
                               temperature=settings.temperature, levels=self.level_names(settings))


def renumber(items: Sequence[Item]) -> list[Item]:
    """The items with ids 0, 1, ...: ids must be unique within a list (selectors and reports key by them)."""
    return [dataclasses.replace(item, id=index) for index, item in enumerate(items)]


# ---------------------------------------------------------------------- evaluation
def evaluate_policy(engine, items: Sequence[Item], *, samples: int = 8, seed: int = 0, max_new_tokens: int = 16,
                    temperature: float = 1.0, levels: Sequence[str] = ()) -> dict[str, Any]:
    """Greedy accuracy, mean accuracy over ``samples`` samples at ``temperature``, the share of prompts whose
    samples are mixed (some right, some wrong), both accuracies per level (``levels``: names
    ``"L<difficulty>: ..."``, keyed by the part before the colon; None for a level without items) and per
    prompt (``per_prompt``, in ``items`` order, so two evaluations of the same items compare pairwise).

    Scored by :func:`mmdps.rollout.scoring.rollout_and_score`, the library's one rollout-and-score path."""
    import numpy as np

    from mmdps.eval.metrics import problem_difficulty
    from mmdps.rollout.base import SamplingParams
    from mmdps.rollout.scoring import rollout_and_score

    if not items:
        raise ValueError("evaluate_policy: no items to evaluate")
    t0 = time.perf_counter()
    greedy = rollout_and_score(engine, items, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)).groups
    sampled = []
    for start in range(0, len(items), EVAL_SAMPLE_BATCH):
        sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + start)
        sampled += rollout_and_score(engine, items[start:start + EVAL_SAMPLE_BATCH], samples, sampling).groups
    greedy_right = [group.success_rate for group in greedy]
    rates = np.array([group.success_rate for group in sampled])
    difficulty = [problem_difficulty(item.metadata) for item in items]

    def accuracy(values: Iterable[float], level: str | None = None) -> float | None:
        chosen = [v for v, d in zip(values, difficulty, strict=True) if level is None or d == level]
        return float(np.mean(chosen)) if chosen else None

    by_level = {}
    for name in levels:
        short = name.split(":")[0]
        by_level[short] = {"greedy": accuracy(greedy_right, short.lstrip("L")),
                           "sampled": accuracy(rates, short.lstrip("L"))}
    return {"greedy": accuracy(greedy_right), "sampled": accuracy(rates), "prompts": len(items),
            "mixed": float(np.mean((rates > 0) & (rates < 1))), "all_right": float(np.mean(rates == 1)),
            "all_wrong": float(np.mean(rates == 0)), "by_level": by_level,
            "per_prompt": {"greedy": greedy_right, "sampled": [float(rate) for rate in rates]},
            "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------- SFT warm start
def warm_start(recipe: Recipe, settings: DemoSettings, sft_items: Sequence[Item], model_dir: Path, *,
               log: Log = print, device: Any = None) -> dict[str, Any]:
    """Build the recipe's model (seeded by ``settings.seed``), run SFT on ``sft_items`` (order seeded by
    ``settings.seed``) on ``device`` (default: where it was built), save model and processor to
    ``model_dir``; returns the SFT statistics with the recipe's own figures (``describe_model``)."""
    from mmdps.sft import supervised_warmup

    processor = recipe.build_processor()
    tokenizer = getattr(processor, "tokenizer", processor)
    model = recipe.build_model(tokenizer, settings)
    if device is not None:
        model = model.to(device)
    t0 = time.perf_counter()
    prompts, targets = recipe.sft_examples(sft_items, processor)
    line, stats = recipe.describe_model(model, tokenizer, sft_items, prompts, time.perf_counter() - t0)
    log(line)
    with ProgressBar(settings.sft_steps, enabled=settings.progress, label="SFT") as bar:
        result = supervised_warmup(model, prompts, targets, pad_token_id=tokenizer.pad_token_id,
                                   max_steps=settings.sft_steps, max_seconds=settings.sft_seconds,
                                   batch_size=settings.sft_batch_size, lr=settings.sft_lr, seed=settings.seed,
                                   on_step=lambda step, loss: bar.update(step, f"loss {loss:.3f}"))
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    return {**stats, "steps": result.steps, "seconds": result.seconds, "final_loss": result.final_loss}


# ---------------------------------------------------------------------- GRPO
def grpo_config(settings: DemoSettings, model_dir: Path, output_dir: Path, *, task: Mapping[str, Any],
                selector: str | None = None, selector_kwargs: dict | None = None, max_steps: int | None = None):
    """The demos' trainer configuration (docs/demo.md); ``task`` holds the task's own fields (``task``,
    ``task_template``, ``max_prompt_length``, image bounds ...)."""
    from mmdps.config import GRPOConfig

    return GRPOConfig(
        model_name_or_path=str(model_dir), dtype="float32", **task,
        selector=selector or settings.selector,
        selector_kwargs=dict(settings.selector_kwargs if selector_kwargs is None else selector_kwargs),
        candidate_ratio=settings.candidate_ratio,
        batch_size=settings.batch_size, num_generations=settings.num_generations,
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
        learning_rate=settings.rl_lr, weight_decay=0.0, adam_beta2=0.99, max_grad_norm=1.0,
        max_steps=max_steps if max_steps is not None else settings.rl_steps,
        micro_batch_size=settings.batch_size * settings.num_generations,  # one forward: sequences are short
        clip_low=0.2, clip_high=0.2, entropy_coeff=0.0, loss_agg_mode="token-mean",
        output_dir=str(output_dir), seed=settings.seed, progress_bar=settings.progress, console_log=settings.progress,
        log_completions_steps=50, save_steps=0, save_final=False, resume=None, eval_steps=0)


def step_record(metrics: Mapping[str, Any], keys: Sequence[str], **extra: Any) -> dict[str, Any]:
    """The ``keys`` of one step's trainer metrics that are present, then ``extra``."""
    record = {key: metrics[key] for key in keys if key in metrics}
    record.update(extra)
    return record


class EvalCallback:
    """A :class:`~mmdps.trainer.GRPOTrainer` callback: one record per step, training time summed (evaluation
    excluded), and an evaluation whenever the rollouts spent pass the next point of a schedule.

    Args:
        evaluate: ``(trainer) -> point``; the callback adds ``step``, ``rollouts`` and ``train_seconds`` and
            appends the point to :attr:`curve`.
        every: evaluate each time another ``every`` rollouts are spent, once per step however many points a
            step passes (Dynamic Sampling spends a variable number per step).
        at: or evaluate at these rollout counts, once per point passed (so a curve has one point each).
        record: ``(metrics, train_seconds) -> dict``, appended to :attr:`steps` (default: the demos' keys).
        on_step: ``(trainer, metrics)`` after each step's record (e.g. a progress bar).
        on_eval: ``(point)`` after each evaluation (e.g. a log line).
    """

    def __init__(self, evaluate: Callable[[Any], dict[str, Any]], *, every: int | None = None,
                 at: Sequence[float] = (), record: Callable[[Mapping[str, Any], float], dict[str, Any]] | None = None,
                 on_step: Callable[[Any, Mapping[str, Any]], None] | None = None,
                 on_eval: Callable[[dict[str, Any]], None] | None = None) -> None:
        if every and at:
            raise ValueError("EvalCallback: give every or at, not both")
        self.evaluate, self.every, self.at = evaluate, every, sorted(at)
        self.next_eval = every or 0
        self.record = record or (lambda metrics, seconds: step_record(metrics, DEMO_STEP_KEYS, train_seconds=seconds))
        self.on_step, self.on_eval = on_step, on_eval
        self.steps: list[dict[str, Any]] = []
        self.curve: list[dict[str, Any]] = []
        self.train_seconds = 0.0

    def evaluate_now(self, trainer) -> dict[str, Any]:
        point = self.evaluate(trainer)
        point.update(step=trainer.step, rollouts=trainer.rollouts_total, train_seconds=self.train_seconds)
        self.curve.append(point)
        if self.on_eval is not None:
            self.on_eval(point)
        return point

    def on_step_end(self, trainer, metrics: Mapping[str, Any]) -> None:
        self.train_seconds += metrics["time/step"]
        self.steps.append(self.record(metrics, self.train_seconds))
        if self.on_step is not None:
            self.on_step(trainer, metrics)
        spent = trainer.rollouts_total
        if self.every and spent >= self.next_eval:
            self.evaluate_now(trainer)
            while self.next_eval <= spent:
                self.next_eval += self.every
        while self.at and spent >= self.at[0] - 1e-9:
            self.at.pop(0)
            self.evaluate_now(trainer)


def run_grpo(recipe: Recipe, config, data, settings: DemoSettings, *, rollout_budget: int | None = None,
             eval_every_rollouts: int | None = None, controls: bool = True, log: Log = print) -> dict[str, Any]:
    """GRPO with ``config.selector`` from ``config.model_name_or_path`` through :class:`GRPOTrainer`, on
    ``data.pool``.

    Stops after ``config.max_steps`` steps or, when given, once ``rollout_budget`` rollouts are spent
    (:class:`~mmdps.trainer.RolloutBudget`), whichever comes first. Evaluates ``data.heldout`` at the start,
    each time another ``eval_every_rollouts`` rollouts are spent (default: every ``settings.eval_every`` steps'
    worth) and at the end; with ``controls`` also the recipe's controls (e.g. blank images) at every point.
    Returns the curve (accuracy vs rollouts and vs training seconds, evaluation excluded) and per-step records.
    """
    from mmdps.logging_utils import step_figures
    from mmdps.trainer import GRPOTrainer, RolloutBudget

    # The trainer's own bar counts steps; this one counts rollouts when a budget is given.
    trainer = GRPOTrainer(dataclasses.replace(config, progress_bar=False, console_log=False), items=data.pool,
                          eval_items=data.heldout)
    per_step = config.batch_size * config.num_generations
    every = eval_every_rollouts or (settings.eval_every * per_step if settings.eval_every else None)
    total_steps = config.max_steps if rollout_budget is None else None
    extra = recipe.controls(data) if controls else {}

    def evaluate(trainer) -> dict[str, Any]:
        point = recipe.evaluate_policy(trainer.engine, data.heldout, settings, max_new_tokens=config.max_new_tokens)
        for name, items in extra.items():
            point[name] = recipe.evaluate_policy(trainer.engine, items, settings, max_new_tokens=config.max_new_tokens)
        return point

    def report(point: dict[str, Any]) -> None:
        controls_text = "".join(f"  {name}: greedy {point[name]['greedy']:.3f}" for name in extra)
        log(f"  step {point['step']:4d}  rollouts {point['rollouts']:7d}  held-out greedy {point['greedy']:.3f}"
            f"  sampled@{settings.eval_samples} {point['sampled']:.3f}  mixed {point['mixed']:.2f}{controls_text}")

    bar = ProgressBar(total_steps or max(1, (rollout_budget or 0) // per_step), enabled=settings.progress)

    def show(trainer, metrics: Mapping[str, Any]) -> None:
        bar.update(trainer.step if total_steps else trainer.rollouts_total // per_step, step_figures(metrics))

    callback = EvalCallback(evaluate, every=every, on_step=show, on_eval=report)
    callback.evaluate_now(trainer)
    try:
        trainer.train(stop=None if rollout_budget is None else RolloutBudget(rollout_budget), callbacks=[callback])
    finally:
        bar.close()
    if callback.curve[-1]["step"] != trainer.step:
        callback.evaluate_now(trainer)
    return {"curve": callback.curve, "steps": callback.steps, "rollouts": callback.curve[-1]["rollouts"],
            "train_seconds": callback.train_seconds}


# ---------------------------------------------------------------------- the demo
def run_demo(recipe: Recipe, settings: DemoSettings, out: Path, *, log: Log = print) -> dict[str, Any]:
    """The whole demo of ``recipe``: data, SFT warm start, GRPO with evaluations; writes ``demo.json`` and
    ``demo.png`` under ``out``, prints the recipe's summary and returns it."""
    import torch

    settings.validate()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()

    data = recipe.make_data(settings)
    data_seconds = time.perf_counter() - started
    log(recipe.describe_data(data, settings, data_seconds))
    model_dir = out / "sft-model"
    sft = warm_start(recipe, settings, data.sft, model_dir, log=log)
    log(f"SFT: {sft['steps']} steps in {sft['seconds']:.0f} s, final loss {sft['final_loss']:.3f}")

    log(f"GRPO with the {settings.selector.upper()} selector: {settings.rl_steps} steps x {settings.batch_size} "
        f"prompts x {settings.num_generations} rollouts, evaluating every {settings.eval_every} steps")
    config = recipe.grpo_config(settings, model_dir, out / "grpo")
    torch.manual_seed(settings.seed)
    rl = run_grpo(recipe, config, data, settings, log=log)
    steps = rl["steps"]
    summary = {
        "settings": dataclasses.asdict(settings),
        "sft": sft,
        "before": rl["curve"][0],
        "after": rl["curve"][-1],
        "rollouts": rl["rollouts"],
        "rl_seconds": rl["train_seconds"],
        "step_seconds": {key: _mean([s[f"time/{key}"] for s in steps if f"time/{key}" in s])
                         for key in ("step", "rollout", "train")},
        "curve": rl["curve"],
        "steps": steps,
        "data_seconds": data_seconds,
        "total_seconds": time.perf_counter() - started,
        # CPU time of this process: close to the wall time a quiet machine would take with --threads 1,
        # so a run on a shared machine can say how much of its wall time was waiting.
        "cpu_seconds": time.process_time() - cpu_started,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_curve(rl["curve"], out / "demo.png", title=f"{recipe.title}, GRPO + {settings.selector.upper()}",
               controls=dict(recipe.plot_controls))
    recipe.print_summary(summary, out, log)
    return summary


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


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
