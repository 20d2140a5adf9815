"""The training configuration: one dataclass, loaded from YAML with ``key=value`` overrides.

::

    from mmdps.config import load_config
    config = load_config("configs/countdown_dps.yaml", ["max_steps=10", "selector_kwargs.decay=0.7"])

A YAML file may name another one under ``base:`` (a path relative to the file, or a list of paths);
the file's keys are merged over the base's, dictionaries key by key. Unknown keys raise a
``ValueError`` that lists the valid keys and the closest matches.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from mmdps.yaml_io import YAMLSyntaxError, load_yaml, read_yaml_file

DTYPES = ("auto", "float32", "bfloat16", "float16")
REPORT_TO = ("tensorboard", "wandb")
LONG_PROMPTS = ("error", "drop", "truncate")
BASE_KEY = "base"
#: The smallest positive sampling temperature: logits / T overflow to inf for tiny T (1e-45 crashed
#: torch.multinomial), and vLLM clamps anything below 0.01 to 0.01 for the same reason. 0 is greedy.
MIN_TEMPERATURE = 0.01


def field_choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of each choice field, taken from the module that implements the choice, so
    that the config, the code and the docs cannot disagree (imported here because mmdps.rl needs torch)."""
    from mmdps.rl import (
        ADVANTAGE_ESTIMATORS,
        KL_KINDS,
        LOSS_AGG_MODES,
        LOSS_TYPES,
        RATIO_LEVELS,
        ROLLOUT_CORRECTION_LEVELS,
    )
    from mmdps.rollout import ENGINES
    from mmdps.selection.allocation import MODES as ALLOCATION_MODES

    return {"rollout_allocation": ALLOCATION_MODES,
            "dtype": DTYPES, "engine": ENGINES, "loss_agg_mode": LOSS_AGG_MODES, "kl_estimator": KL_KINDS,
            "advantage_estimator": ADVANTAGE_ESTIMATORS, "ratio_level": RATIO_LEVELS, "loss_type": LOSS_TYPES,
            "rollout_correction_level": ROLLOUT_CORRECTION_LEVELS, "long_prompts": LONG_PROMPTS}


@dataclass
class GRPOConfig:
    """Everything a GRPO run needs. Defaults follow the DPS paper's released scripts (verl, see
    ``docs/training.md``) unless noted; per-domain files in ``configs/`` set the rest.

    Each field is documented beside its declaration (``metadata["help"]``, with the paper or the
    reference a default comes from); ``mmdps train --help`` lists every key from there
    (:func:`config_help`). The same metadata holds the field's bounds (``min``, ``max``,
    ``min_exclusive`` / ``max_exclusive``, ``positive_min``, ``why``; checked by :func:`check_bounds`) and
    ``resumable: True`` for the settings a resumed run may change (:func:`resumable_fields`). Fields whose
    value is one of a set take it from the module that implements the choice (:func:`field_choices`).
    """

    # ------------------------------------------------------------------ model
    model_name_or_path: str = field(default="", metadata={"help": (
        "required: a local HF model folder, or tiny:<arch> with arch qwen2, qwen2-vl or qwen2.5-vl (a tiny "
        "random-weight model built offline into <output_dir>/tiny-model, for tests and CPU demos)")})
    dtype: str = field(default="auto", metadata={"help": (
        "weight dtype; auto = bfloat16 on a GPU that supports it, float32 on the CPU")})
    attn_implementation: str | None = field(default=None, metadata={"resumable": True, "help": (
        "passed to from_pretrained (sdpa, flash_attention_2); None = transformers' default")})
    bf16: bool | None = field(default=None, metadata={"help": (
        "bf16 autocast through accelerate; None = on when a CUDA GPU is present")})
    gradient_checkpointing: bool = field(default=False, metadata={"resumable": True, "help": (
        "recompute activations in the backward pass (verl turns it on for large models)")})
    use_lora: bool = field(default=False, metadata={"help": "train a LoRA adapter through peft instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank r"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"min": 0, "help": "dropout on the LoRA path"})
    lora_target_modules: str | list = field(default="all-linear", metadata={"help": (
        "modules that get adapters: all-linear or a list of module names")})
    lora_exclude_vision: bool = field(default=True, metadata={"help": (
        "no adapters in the vision tower of VL models")})
    # ------------------------------------------------------------------ data
    task: str = field(default="countdown", metadata={"help": (
        "task pack (mmdps.tasks.get): math, countdown, geometry, or an alias / entry point")})
    train_source: str | None = field(default=None, metadata={"help": (
        "file or folder of training rows; None = the pack's generator")})
    train_split: str = field(default="train", metadata={"help": "split passed to pack.load for the training set"})
    train_limit: int | None = field(default=None, metadata={"min": 1, "help": "use only the first N training items"})
    task_options: dict = field(default_factory=dict, metadata={"help": (
        "extra keyword arguments of pack.load for the training set (e.g. num, image_dir)")})
    task_template: str | None = field(default=None, metadata={"help": (
        "prompt template: a name the pack knows or a format string with {question}; None = the pack's default")})
    system_prompt: str | None = field(default=None, metadata={"help": "system message put before every prompt"})
    eval_source: str | None = field(default=None, metadata={"resumable": True, "help": (
        "held-out set for in-training evaluation; None with a generator pack and eval_steps > 0 generates it")})
    eval_split: str = field(default="test", metadata={"resumable": True, "help": (
        "split passed to pack.load for the held-out set")})
    eval_limit: int | None = field(default=None, metadata={"min": 1, "resumable": True, "help": (
        "use only the first N held-out items")})
    eval_options: dict = field(default_factory=dict, metadata={"resumable": True, "help": (
        "extra keyword arguments of pack.load for the held-out set")})
    max_prompt_length: int = field(default=1024, metadata={"min": 1, "resumable": True, "help": (
        "prompt tokens after the chat template, image tokens included (paper: 1024 MATH / Geo3K, 256 Countdown); "
        "every prompt is measured before training starts (see long_prompts)")})
    long_prompts: str = field(default="error", metadata={"resumable": True, "help": (
        "prompts longer than max_prompt_length, found before training starts: error (stop, naming them), drop "
        "(leave them out of the training and eval sets, with a warning naming them) or truncate (keep the last "
        "max_prompt_length tokens; text prompts only: long image prompts still stop, since cutting image "
        "tokens breaks the image); docs/limits.md")})
    min_pixels: int | None = field(default=None, metadata={"min": 1, "resumable": True, "help": (
        "Qwen2-VL image resize lower bound; None = the processor's own (the Geo3K configs use 3136 as EasyR1 "
        "and verl); one resize rule serves rollout and the training forward pass")})
    max_pixels: int | None = field(default=None, metadata={"min": 1, "resumable": True, "help": (
        "Qwen2-VL image resize upper bound; None = the processor's own (the Geo3K configs use 1003520)")})
    # ------------------------------------------------------------------ prompt selection
    selector: str = field(default="dps", metadata={"help": (
        "prompt selector: uniform, ds (DAPO Dynamic Sampling), mopps, dps, or any name "
        "mmdps.selection.make_selector knows")})
    selector_kwargs: dict = field(default_factory=dict, metadata={"help": (
        "selector options, e.g. decay (DPS lambda: 0.7 MATH, 0.5 Countdown / Geo3K), strategy, max_rounds for "
        "DS (4 MATH, 10 otherwise, DAPO)")})
    candidate_ratio: float | None = field(default=None, metadata={"help": (
        "selectors that rank candidates (dps, mopps): None ranks the whole pool every step (the DPS paper's "
        "rule); r >= 1 ranks only the next ceil(r x B) prompts of a seeded shuffled pass over the pool (the "
        "official trainers' dataloader batch) and trains on the best B; the candidate order is checkpointed. "
        "Set it here or in selector_kwargs, not both (the MoPPS configs set 16 / 8 as the official scripts)")})
    batch_size: int = field(default=256, metadata={"min": 1, "help": (
        "prompts per step, B (paper: 256 MATH / Countdown, 512 Geo3K)")})
    num_generations: int = field(default=8, metadata={
        "min": 2, "why": "group advantages need at least two rollouts per prompt",
        "help": "rollouts per prompt, k (paper: 8); at least 2"})
    rollout_allocation: str = field(default="fixed", metadata={"help": (
        "rollouts per prompt: fixed (k each, as TRL and verl), predicted (the step's B x k rollouts split over "
        "up to B x k / k_min candidates by the selector's prediction, 0 or k_min..k_max each, maximising the "
        "expected groups with signal; per-prompt budgets as in Knapsack RL, arXiv 2509.25849) or until_signal "
        "(each of B prompts sampled in rounds of round_k until its rewards differ or k_max, within B x k; after "
        "Reinforce-Ada, arXiv 2510.04996); selectors without a prediction keep k (docs/selection.md)")})
    allocation_kwargs: dict = field(default_factory=dict, metadata={"help": (
        "options of rollout_allocation: k_min (2), k_max (2k), candidates (prompts asked per training prompt "
        "under predicted, k / k_min), round_k (2, until_signal), objective (groups or rollouts, predicted)")})
    # ------------------------------------------------------------------ rollout
    engine: str = field(default="hf", metadata={"help": (
        "rollout engine (mmdps.rollout.make_engine): hf (transformers generate) or vllm (GPU, optional extra)")})
    engine_kwargs: dict = field(default_factory=dict, metadata={"resumable": True, "help": (
        "engine options with vLLM's own names, e.g. gpu_memory_utilization, tensor_parallel_size, sleep_level "
        "(mmdps.rollout.engine_options lists them)")})
    generation_batch_size: int | None = field(default=None, metadata={"min": 1, "resumable": True, "help": (
        "prompts per generate call of the hf engine; None = all")})
    max_new_tokens: int = field(default=1024, metadata={"min": 1, "resumable": True, "help": (
        "response length limit (paper: 8192 MATH, 1024 Countdown / Geo3K)")})
    temperature: float = field(default=1.0, metadata={"min": 0, "positive_min": MIN_TEMPERATURE, "resumable": True,
        "help": (f"rollout sampling temperature (paper); 0 = greedy, otherwise at least {MIN_TEMPERATURE} (smaller "
                 "values overflow the scaled logits; vLLM clamps them to the same floor)")})
    top_p: float = field(default=1.0, metadata={"min": 0, "min_exclusive": True, "max": 1, "resumable": True,
        "help": "rollout nucleus sampling (paper: 1.0, off)"})
    top_k: int = field(default=0, metadata={"min": 0, "resumable": True, "help": "rollout top-k sampling; 0 = off"})
    # ------------------------------------------------------------------ optimisation (GRPO / DAPO)
    learning_rate: float = field(default=1e-6, metadata={"min": 0, "min_exclusive": True, "resumable": True, "help": (
        "AdamW learning rate (paper)")})
    weight_decay: float = field(default=0.1, metadata={"min": 0, "help": "AdamW weight decay (paper, verl default)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    lr_scheduler_type: str = field(default="constant", metadata={"help": (
        "any transformers.get_scheduler name; warm-up and decay count optimizer updates")})
    warmup_steps: int = field(default=0, metadata={"min": 0, "resumable": True, "help": (
        "learning-rate warm-up in optimizer updates (paper: none)")})
    max_grad_norm: float = field(default=1.0, metadata={"min": 0, "min_exclusive": True, "resumable": True, "help": (
        "gradient clipping (paper)")})
    max_steps: int = field(default=100, metadata={"min": 1, "resumable": True, "help": (
        "training steps (paper: 360 MATH-1.5B, 120 Countdown / Geo3K-3B)")})
    mini_batch_size: int | None = field(default=None, metadata={"min": 1, "help": (
        "prompts per optimizer update (verl ppo_mini_batch_size: 128 MATH, 64 Countdown, 256 Geo3K); None = "
        "one update per step on the whole batch")})
    ppo_epochs: int = field(default=1, metadata={"min": 1, "help": "passes over the batch per step (verl ppo_epochs)"})
    micro_batch_size: int = field(default=8, metadata={"min": 1, "resumable": True, "help": (
        "sequences per forward/backward; gradients accumulate over micro-batches")})
    clip_low: float = field(default=0.2, metadata={"min": 0, "max": 1, "max_exclusive": True, "resumable": True,
        "help": "lower ratio clip, 1 - clip_low (PPO; DAPO clip-higher)"})
    clip_high: float = field(default=0.28, metadata={"min": 0, "resumable": True, "help": (
        "upper ratio clip, 1 + clip_high (DAPO clip-higher)")})
    clip_c: float | None = field(default=10.0, metadata={"min": 1, "min_exclusive": True, "resumable": True, "help": (
        "dual-clip bound for negative advantages (Ye et al. 2020; verl clip_ratio_c); None = off")})
    loss_agg_mode: str = field(default="token-mean", metadata={"resumable": True, "help": (
        "loss aggregation (mmdps.rl.aggregate_loss, docs/rl_math.md): token-mean is DAPO's, seq-mean-token-mean "
        "GRPO's, seq-mean-token-sum-norm Dr.GRPO's")})
    advantage_estimator: str = field(default="grpo", metadata={"help": (
        "grpo (group mean baseline, scaled as scale_rewards says), rloo (leave-one-out baseline, no scaling; "
        "Ahmadian et al. 2024) or reinforce_pp (group mean subtracted, then divided by the batch std; REINFORCE++ "
        "with baseline, Hu 2025)")})
    scale_rewards: bool | str = field(default=True, metadata={"help": (
        "GRPO's scaling of the centred rewards: true / group = the group std (GRPO), batch = the std of the "
        "batch's rewards (TRL scale_rewards='batch'), false / none = none (Dr.GRPO). Only for "
        "advantage_estimator=grpo; the other estimators ignore the default")})
    ratio_level: str = field(default="token", metadata={"help": (
        "importance ratio per token (PPO/GRPO), per sequence (GSPO, the length-normalised sequence ratio; its "
        "paper clips at 3e-4 / 4e-4 and aggregates seq-mean-token-mean) or sequence_token (GSPO-token)")})
    loss_type: str = field(default="clip", metadata={"help": (
        "clip (PPO clipped surrogate, with clip_c) or cispo (MiniMax-M1: REINFORCE on every token weighted by "
        "sg(min(ratio, 1 + clip_high)); clip_low and clip_c unused)")})
    rollout_correction: str | None = field(default=None, metadata={"help": (
        "correct for the sampler/trainer log-prob mismatch with tis (weight min(rho, cap), Yao et al. 2025) or "
        "mis (weight rho, 0 beyond cap), where rho is the trainer's over the sampler's probability of each "
        "sampled token or of the whole sequence (rollout_correction_level); needs sampling log-probs (both "
        "engines report them, except for greedy decoding); the mismatch is logged every step either way "
        "(rollout/*)")})
    rollout_correction_level: str = field(default="token", metadata={"help": (
        "rho of rollout_correction per token or per sequence")})
    rollout_correction_cap: float = field(default=2.0, metadata={"min": 0, "min_exclusive": True, "help": (
        "the cap of the rollout_correction weights (tis truncates at it, mis zeroes beyond it)")})
    beta: float = field(default=0.0, metadata={"min": 0, "help": (
        "KL-loss coefficient to a frozen reference (paper: 0 MATH / Countdown, 0.01 Geo3K-3B); 0 loads no "
        "reference model")})
    kl_estimator: str = field(default="k3", metadata={"help": (
        "KL estimator (mmdps.rl.kl_penalty; Schulman 2020): k3 is GRPO's KL loss and verl's low_var_kl")})
    entropy_coeff: float = field(default=0.001, metadata={"min": 0, "resumable": True, "help": (
        "entropy bonus coefficient (paper)")})
    mask_truncated_completions: bool = field(default=False, metadata={"resumable": True, "help": (
        "drop completions that hit max_new_tokens from the loss (DAPO overlong filtering)")})
    overlong_buffer_len: int = field(default=0, metadata={"min": 0, "resumable": True, "help": (
        "DAPO soft overlong punishment window in tokens; 0 = off")})
    overlong_penalty_factor: float = field(default=1.0, metadata={"min": 0, "resumable": True, "help": (
        "the soft overlong penalty at max_new_tokens (DAPO)")})
    skip_zero_advantage_groups: bool = field(default=True, metadata={"resumable": True, "help": (
        "leave groups whose advantages are all 0 out of the forward/backward pass when that cannot change the "
        "gradient (entropy_coeff == 0, beta == 0, one update per step); their tokens still count in the loss "
        "normaliser, so the update is identical and the step faster (mmdps); clip statistics then cover the "
        "trained groups only")})
    # ------------------------------------------------------------------ rewards
    reward_workers: int = field(default=1, metadata={"min": 1, "resumable": True, "help": (
        "threads that run verifiers; 1 = in the main thread")})
    reward_function: str | list | None = field(default=None, metadata={"help": (
        "your own reward instead of the task's verifier: 'path/to/file.py:fn', or a list of them; "
        "fn(completion, ground_truth, **metadata) returns a float or a dict with score (acc, format optional) "
        "and runs in a verifier worker process (docs/verifiers.md, 'Bring your own reward function')")})
    reward_weights: list | None = field(default=None, metadata={"help": (
        "one weight per reward_function: score = the weighted sum; None = all 1")})
    success_threshold: float | None = field(default=None, metadata={"help": (
        "acc = score >= this, for a first reward_function whose scores are not all 0 or 1; without it such a "
        "score stops the run")})
    check_ground_truth: bool = field(default=True, metadata={"resumable": True, "help": (
        "before step 1, score a sample of up to 256 items' own ground truths with the run's reward and refuse to "
        "start when more than half fail (a wrong answer column or reward shows in seconds); false skips it")})
    # ------------------------------------------------------------------ run, logging, checkpoints
    output_dir: str = field(default="outputs/run", metadata={"resumable": True, "help": (
        "folder for metrics, samples and checkpoints")})
    run_name: str | None = field(default=None, metadata={"resumable": True, "help": (
        "name for W&B / TensorBoard; None = the output folder's name")})
    seed: int = field(default=42, metadata={"help": (
        "seeds python, numpy, torch, the selector and rollout sampling")})
    logging_steps: int = field(default=1, metadata={"min": 1, "resumable": True, "help": (
        "write a metrics line every N steps")})
    report_to: list = field(default_factory=list, metadata={"resumable": True, "help": (
        "extra metric sinks: tensorboard and/or wandb (optional extras)")})
    wandb_project: str | None = field(default=None, metadata={"resumable": True, "help": "W&B project; None = mmdps"})
    console_log: bool = field(default=True, metadata={"resumable": True, "help": (
        "print the resolved config at the start, a metrics line every logging_steps and the in-training "
        "evaluation's results (main process), with or without the progress bar; false leaves only metrics.jsonl")})
    progress_bar: bool = field(default=True, metadata={"resumable": True, "help": (
        "rich progress bar with step, reward, effective-sample ratio and ETA")})
    log_completions_steps: int = field(default=10, metadata={"min": 0, "resumable": True, "help": (
        "save sampled completions to samples/step_XXXX.jsonl every N steps; 0 = never")})
    num_completions_to_log: int = field(default=8, metadata={"min": 0, "resumable": True, "help": (
        "completions saved each time")})
    save_steps: int = field(default=50, metadata={"min": 0, "resumable": True, "help": (
        "checkpoint every N steps; 0 = only at the end")})
    save_total_limit: int | None = field(default=3, metadata={"min": 1, "resumable": True, "help": (
        "keep the newest N checkpoints; None = all")})
    save_final: bool = field(default=True, metadata={"resumable": True, "help": "checkpoint the last step"})
    resume: str | None = field(default="auto", metadata={"resumable": True, "help": (
        "auto = continue from the newest intact checkpoint in output_dir if any; a checkpoint path; or None / "
        "none to start fresh")})
    collective_timeout_s: float = field(default=1800.0, metadata={"min": 1, "resumable": True, "help": (
        "multi-process runs: the longest a rank waits for the others in a collective (rollout gather, gradient "
        "all-reduce, evaluation gather, checkpoint barrier) before it fails naming itself and the collective")})
    eval_steps: int = field(default=0, metadata={"min": 0, "resumable": True, "help": (
        "evaluate on the held-out set every N steps; 0 = off (paper: every 5 MATH, 10 otherwise)")})
    eval_num_samples: int = field(default=16, metadata={"min": 1, "resumable": True, "help": (
        "samples per held-out problem (paper: 16)")})
    eval_temperature: float = field(default=0.6, metadata={"min": 0, "positive_min": MIN_TEMPERATURE,
        "resumable": True, "help": "evaluation sampling temperature (paper: 0.6); 0 = greedy, as temperature"})
    eval_top_p: float = field(default=1.0, metadata={
        "min": 0, "min_exclusive": True, "max": 1, "resumable": True, "help": "evaluation nucleus sampling"})
    eval_max_new_tokens: int | None = field(default=None, metadata={"min": 1, "resumable": True, "help": (
        "evaluation response length limit; None = max_new_tokens")})
    max_consecutive_nan: int = field(default=3, metadata={"min": 1, "resumable": True, "help": (
        "stop after this many non-finite losses / gradients in a row")})

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix for any inconsistent value."""
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is required (a local model folder or tiny:qwen2 / tiny:qwen2-vl / "
                             "tiny:qwen2.5-vl)")
        for f in dataclasses.fields(self):  # the bounds declared in each field's metadata
            check_bounds(f.name, getattr(self, f.name))
        if self.mini_batch_size is not None and not 1 <= self.mini_batch_size <= self.batch_size:
            raise ValueError(f"mini_batch_size must be in [1, batch_size={self.batch_size}] or None, "
                             f"got {self.mini_batch_size}")
        for name, choices in field_choices().items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        self._validate_objective()
        for sink in self.report_to:
            if sink not in REPORT_TO:
                raise ValueError(f"report_to entries must be in {REPORT_TO}, got {sink!r}")
        for name, kind in _field_types().items():  # NaN and inf pass every "< 0" check: refuse them first
            value = getattr(self, name)
            if float in _options(kind) and isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.overlong_buffer_len >= self.max_new_tokens:
            raise ValueError(f"overlong_buffer_len ({self.overlong_buffer_len}) must be below max_new_tokens "
                             f"({self.max_new_tokens})")
        self._validate_completion_budget()
        # selector and engine names and options, before any model loads (the factories own the rules)
        from mmdps.rollout import check_engine_options
        from mmdps.selection import check_selector

        check_selector(self.selector, self.selector_kwargs, candidate_ratio=self.candidate_ratio, seed=self.seed,
                       rollouts_per_prompt=self.num_generations)
        check_engine_options(self.engine, self.engine_kwargs)
        self._validate_allocation()
        if self.reward_function is not None or self.reward_weights is not None or self.success_threshold is not None:
            from mmdps.verifiers.custom import check_reward_settings

            check_reward_settings(self.reward_function, self.reward_weights, self.success_threshold)
        if isinstance(self.resume, str) and self.resume.lower() in ("none", "null", "false", "no", ""):
            self.resume = None

    def _validate_objective(self) -> None:
        """scale_rewards and rollout_correction (choices from mmdps.rl), and how they combine; the plain choice
        fields are checked against :func:`field_choices`."""
        from mmdps.rl import REWARD_SCALES, ROLLOUT_CORRECTIONS

        if not isinstance(self.scale_rewards, bool) and self.scale_rewards not in REWARD_SCALES:
            raise ValueError(f"scale_rewards must be true, false or one of {REWARD_SCALES}, got {self.scale_rewards!r}")
        if self.advantage_estimator != "grpo" and self.scale_rewards not in (True, "group"):
            raise ValueError(f"scale_rewards={self.scale_rewards!r} applies to advantage_estimator=grpo only; "
                             f"{self.advantage_estimator} defines its own normalisation: remove scale_rewards")
        if isinstance(self.rollout_correction, str) and self.rollout_correction.lower() in ("none", "null", ""):
            self.rollout_correction = None
        if self.rollout_correction is not None:
            if self.rollout_correction not in ROLLOUT_CORRECTIONS:
                raise ValueError(f"rollout_correction must be None or one of {ROLLOUT_CORRECTIONS}, "
                                 f"got {self.rollout_correction!r}")
            if self.temperature == 0:
                raise ValueError("rollout_correction needs sampled rollouts (temperature > 0): greedy decoding "
                                 "reports no sampling log-probs")

    def _validate_allocation(self) -> None:
        """rollout_allocation with its options; refill selectors (their own rounds) and mini-batches (counted
        in prompts, whose number varies) only combine with fixed."""
        from mmdps.selection import SELECTORS
        from mmdps.selection.allocation import allocation_settings
        from mmdps.selection.refill import RefillSelector

        allocation_settings(self.rollout_allocation, self.allocation_kwargs, k=self.num_generations)
        if self.rollout_allocation == "fixed":
            return
        cls = SELECTORS.get(self.selector)
        if cls is not None and issubclass(cls, RefillSelector):
            raise ValueError(f"rollout_allocation={self.rollout_allocation} does not combine with selector="
                             f"{self.selector!r}: it refills the batch in rounds of k rollouts per prompt by its own "
                             "rule; use rollout_allocation=fixed with it, or a selector such as dps or mopps")
        if self.mini_batch_size is not None and self.mini_batch_size < self.batch_size:
            raise ValueError(f"rollout_allocation={self.rollout_allocation} trains on a varying number of prompts, "
                             f"so mini_batch_size={self.mini_batch_size} (in prompts) would change the number of "
                             "optimizer updates per step that the learning-rate schedule counts; leave mini_batch_size "
                             "unset (one update per step) or use rollout_allocation=fixed")

    def _validate_completion_budget(self) -> None:
        """vLLM sizes its context (``max_model_len``) from ``max_new_tokens`` once, at start-up; a longer
        evaluation budget would fail on the first long held-out prompt, mid-run. The trainer passes
        ``max_new_tokens`` to the engine, so engine_kwargs must not set it a second time."""
        for alias in ("max_new_tokens", "max_completion_length"):
            if alias in self.engine_kwargs:
                raise ValueError(f"engine_kwargs.{alias} duplicates the top-level max_new_tokens, which the trainer "
                                 f"passes to the engine: remove it from engine_kwargs and set max_new_tokens="
                                 f"{self.engine_kwargs[alias]!r} instead")
        if self.engine == "vllm" and self.eval_max_new_tokens is not None \
                and self.eval_max_new_tokens > self.max_new_tokens:
            raise ValueError(f"eval_max_new_tokens={self.eval_max_new_tokens} is above max_new_tokens="
                             f"{self.max_new_tokens}, but engine=vllm sizes its context (max_model_len = "
                             "max_prompt_length + max_new_tokens) from max_new_tokens: set eval_max_new_tokens to "
                             f"at most {self.max_new_tokens} (or remove it), or raise max_new_tokens")

    # ------------------------------------------------------------------ helpers
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GRPOConfig:
        """Build a config from a plain dict, coercing strings to the field types; bad keys raise."""
        check_keys(values.keys())
        hints = _field_types()
        return cls(**{key: coerce(value, hints[key], key) for key, value in values.items()})


# ---------------------------------------------------------------------- bounds and resumability
def resumable_fields() -> frozenset[str]:
    """The settings a resumed run may change (``metadata["resumable"]``); they apply from the resumed step
    on. Any other change is refused on resume: the restored state (optimizer, selector, data order, model)
    was built for the checkpoint's values."""
    return frozenset(f.name for f in dataclasses.fields(GRPOConfig) if f.metadata.get("resumable"))


def bound_text(name: str) -> str:
    """The values field ``name`` accepts per its metadata, in words (``"a positive integer"``, ``"in (0, 1]"``,
    ``"0 or >= 0.01"``); empty for a field without bounds."""
    meta = _field_metadata()[name]
    low, high = meta.get("min"), meta.get("max")
    if low is None and high is None:
        return ""
    is_int = int in _options(_field_types()[name])
    if low is not None and high is not None:
        text = f"in {'(' if meta.get('min_exclusive') else '['}{low}, {high}{')' if meta.get('max_exclusive') else ']'}"
    elif low is not None:
        text = f"{'>' if meta.get('min_exclusive') else '>='} {low}"
    else:
        text = f"{'<' if meta.get('max_exclusive') else '<='} {high}"
    if "positive_min" in meta:
        text = f"0 or >= {meta['positive_min']}"
    if is_int:
        text = "a positive integer" if text == ">= 1" else f"an integer {text}"
    return text + (" or None" if type(None) in _options(_field_types()[name]) else "")


def check_bounds(name: str, value: Any) -> None:
    """Raise a ``ValueError`` naming field ``name`` when ``value`` is outside the bounds of its metadata
    (``min`` / ``max``, inclusive unless ``min_exclusive`` / ``max_exclusive``; ``positive_min``: 0 or at
    least that; ``why``: the reason, added to the message). Integer fields refuse booleans and floats."""
    meta = _field_metadata()[name]
    if "min" not in meta and "max" not in meta:
        return
    kind = _field_types()[name]
    if value is None and type(None) in _options(kind):
        return
    is_int = int in _options(kind)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and not is_int and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    low, high = meta.get("min"), meta.get("max")
    ok = numeric and (not is_int or isinstance(value, int))
    if ok and low is not None:
        ok = value > low if meta.get("min_exclusive") else value >= low
    if ok and high is not None:
        ok = value < high if meta.get("max_exclusive") else value <= high
    if ok and "positive_min" in meta:
        ok = value == 0 or value >= meta["positive_min"]
    if not ok:
        why = meta.get("why")
        raise ValueError(f"{name} must be {bound_text(name)}{': ' + why if why else ''}, got {value!r}")


# ---------------------------------------------------------------------- help
# The field that opens each section of ``mmdps train --help``.
_SECTIONS = {"model_name_or_path": "model", "task": "data", "selector": "prompt selection", "engine": "rollout",
             "learning_rate": "optimisation (GRPO, Shao et al. 2024; DAPO, Yu et al. 2025)",
             "reward_workers": "rewards", "output_dir": "run, logging, checkpoints"}


def config_help(width: int = 100) -> str:
    """Every config key with its type, default, choices and help, from the field declarations (the text
    ``mmdps train --help`` shows)."""
    import textwrap

    choices = field_choices()
    hints = _field_types()
    lines: list[str] = []
    for f in dataclasses.fields(GRPOConfig):
        if f.name in _SECTIONS:
            lines += ["", f"{_SECTIONS[f.name]}:"]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        head = f"  {f.name} ({_type_name(hints[f.name])}, default {default!r})"
        text = f.metadata["help"] + (f"; one of: {', '.join(choices[f.name])}" if f.name in choices else "")
        text += f"; allowed: {bound_text(f.name)}" if bound_text(f.name) else ""
        lines.append(head)
        lines += textwrap.wrap(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False)
    return "\n".join(lines).lstrip("\n")


# ---------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> GRPOConfig:
    """Read a YAML config (with ``base:`` includes) and apply ``key=value`` overrides.

    Override keys may be dotted to reach into dictionary fields (``selector_kwargs.decay=0.5``); values
    are parsed as YAML scalars and coerced to the field's type (``max_steps=10``, ``resume=none``,
    ``report_to=[tensorboard]``).
    """
    values = read_yaml(path) if path is not None else {}
    for override in overrides:
        key, sep, raw = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {override!r} is not of the form key=value")
        apply_override(values, key, _parse_scalar(raw, override))
    return GRPOConfig.from_dict(values)


def read_yaml(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read one YAML mapping, merging it over the file(s) it names under ``base:``."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ValueError(f"config include cycle: {chain}")
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = read_yaml_file(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping of field: value, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, read_yaml(path.parent / base, (*_seen, path)))
    try:
        check_keys(data.keys())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return _deep_merge(merged, data)


def check_keys(keys) -> None:
    """Raise a ValueError for keys that are not config fields, with close matches and the valid keys."""
    valid = GRPOConfig.field_names()
    bad = [key for key in keys if key not in valid]
    if not bad:
        return
    hints = []
    for key in bad:
        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
        hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise ValueError(f"unknown config key(s): {'; '.join(hints)}. Valid keys: {', '.join(sorted(valid))}")


def apply_override(values: dict[str, Any], key: str, value: Any) -> None:
    """Set ``values[key] = value``; a dotted key sets one entry of a dictionary field."""
    head, _, rest = key.partition(".")
    check_keys([head])
    if not rest:
        values[head] = value
        return
    if _field_types()[head] is not dict:
        raise ValueError(f"{head} is not a dictionary field, so {key!r} cannot be set; use {head}=VALUE")
    target = values.setdefault(head, {})
    if not isinstance(target, dict):
        raise ValueError(f"{head} is {target!r}, not a mapping; cannot set {key!r}")
    *parents, leaf = rest.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert ``value`` to ``annotation`` (int, float, bool, str, dict, list, Optional / Union of these)."""
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{name} cannot be null (expected {_type_name(annotation)})")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise ValueError(f"{name}: cannot use {value!r} as {_type_name(annotation)} ({'; '.join(errors)})")


def _coerce_one(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError("not a boolean")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError("a boolean is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError("not an integer")
    if kind is float:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        return float(value)  # also parses strings such as "1e-6" that YAML 1.1 leaves as text
    if kind is str:
        if isinstance(value, (dict, list)):
            raise ValueError("not a string")
        return str(value)
    if kind in (dict, list):
        if isinstance(value, str):
            value = load_yaml(value, "the value")
        if kind is list and isinstance(value, str):  # report_to=wandb means [wandb]
            value = [value]
        if not isinstance(value, kind):
            raise ValueError(f"not a {kind.__name__}")
        return value
    raise TypeError(f"unsupported field type {kind}")


def _parse_scalar(raw: str, source: str) -> Any:
    raw = raw.strip()
    if raw == "":
        return ""
    try:
        return load_yaml(raw, f"override {source!r}")
    except YAMLSyntaxError:  # not YAML: the text as it is
        return raw


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(GRPOConfig)


@functools.cache
def _field_metadata() -> dict[str, Any]:
    return {f.name: f.metadata for f in dataclasses.fields(GRPOConfig)}


def _options(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation) if _is_union(annotation) else (annotation,)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _type_name(annotation: Any) -> str:
    if _is_union(annotation):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))
