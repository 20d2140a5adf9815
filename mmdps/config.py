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
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k3")
DTYPES = ("auto", "float32", "bfloat16", "float16")
REPORT_TO = ("tensorboard", "wandb")
BASE_KEY = "base"


@dataclass
class GRPOConfig:
    """Everything a GRPO run needs. Defaults follow the DPS paper's released scripts (verl, see
    ``docs/training.md``) unless noted; per-domain files in ``configs/`` set the rest.

    Model

    - ``model_name_or_path`` (str, required): a local HF model folder, or ``tiny:<arch>`` with arch in
      ``qwen2``, ``qwen2-vl``, ``qwen2.5-vl``: a tiny random-weight model built offline on the fly into
      ``<output_dir>/tiny-model`` (for tests and CPU demos).
    - ``dtype`` (str, ``"auto"``): weight dtype, one of ``auto`` / ``float32`` / ``bfloat16`` / ``float16``.
    - ``attn_implementation`` (str | None, None): passed to ``from_pretrained`` (``sdpa``, ``flash_attention_2``).
    - ``bf16`` (bool | None, None): bf16 autocast through accelerate; None = on when a CUDA GPU is present.
    - ``gradient_checkpointing`` (bool, False): recompute activations in the backward pass (verl default on
      for large models).
    - ``use_lora`` (bool, False): train a LoRA adapter through peft instead of all weights.
    - ``lora_r`` (int, 16), ``lora_alpha`` (int, 32), ``lora_dropout`` (float, 0.0),
      ``lora_target_modules`` (str | list, ``"all-linear"``), ``lora_exclude_vision`` (bool, True: no
      adapters in the vision tower of VL models).

    Data

    - ``task`` (str, ``"countdown"``): task pack name (``mmdps.tasks.get``): ``math``, ``countdown``, ``geometry``.
    - ``train_source`` (str | None, None): file or folder of training rows; None = the pack's generator.
    - ``train_split`` (str, ``"train"``), ``train_limit`` (int | None, None): passed to ``pack.load``.
    - ``task_options`` (dict, {}): extra keyword arguments of ``pack.load`` (e.g. ``num``, ``image_dir``).
    - ``task_template`` (str | None, None), ``system_prompt`` (str | None, None): prompt template name or format
      string and optional system message of the pack.
    - ``eval_source`` (str | None, None), ``eval_split`` (str, ``"test"``), ``eval_limit`` (int | None, None),
      ``eval_options`` (dict, {}): the held-out set for in-training evaluation (None with the pack's
      generator and ``eval_steps > 0`` generates it).
    - ``max_prompt_length`` (int, 1024): prompt tokens after the chat template (paper: 1024 MATH / Geo3K,
      256 Countdown). Prompts with images are never truncated (clear error instead).
    - ``min_pixels`` (int | None, None), ``max_pixels`` (int | None, None): Qwen2-VL image resize bounds; None = the
      processor's own (the Geo3K configs use 3136 / 1003520 as EasyR1 and verl do). One resize rule serves
      rollout and the training forward pass.

    Prompt selection

    - ``selector`` (str, ``"dps"``): ``uniform``, ``ds`` (DAPO Dynamic Sampling), ``mopps``, ``dps``, or any name
      ``mmdps.selection.make_selector`` knows.
    - ``selector_kwargs`` (dict, {}): selector options, e.g. ``decay`` (DPS lambda 0.7 MATH / 0.5 Countdown,
      Geo3K), ``strategy``, ``max_rounds`` for DS (4 MATH / 10 otherwise, DAPO).
    - ``candidate_ratio`` (float | None, None): for selectors that rank candidates (``dps``, ``mopps``): None
      ranks the whole pool every step (the DPS paper's rule; its released scripts' ratio x B covers the
      pool); a number r >= 1 ranks only the next ceil(r x B) prompts of a seeded shuffled pass over the
      pool (the official trainers' dataloader batch) and trains on the best B of them. The candidate
      order is checkpointed, so a resumed run draws the same candidates. None leaves MoPPS at its own
      default (16).
    - ``batch_size`` (int, 256): prompts per step, B (paper: 256 MATH / Countdown, 512 Geo3K).
    - ``num_generations`` (int, 8): rollouts per prompt, k (paper: 8).

    Rollout

    - ``engine`` (str, ``"hf"``): ``hf`` (transformers ``generate``) or ``vllm`` (GPU, optional extra).
    - ``engine_kwargs`` (dict, {}): extra engine options (e.g. ``gpu_memory_utilization`` for vLLM).
    - ``generation_batch_size`` (int | None, None): prompts per ``generate`` call of the HF engine (None = all).
    - ``max_new_tokens`` (int, 1024): response length limit (paper: 8192 MATH, 1024 Countdown / Geo3K).
    - ``temperature`` (float, 1.0), ``top_p`` (float, 1.0), ``top_k`` (int, 0 = off): rollout sampling (paper).

    Optimisation (GRPO / DAPO, Shao et al. 2024; Yu et al. 2025)

    - ``learning_rate`` (float, 1e-6): AdamW learning rate (paper).
    - ``weight_decay`` (float, 0.1): paper (verl default).
    - ``adam_beta1`` (float, 0.9), ``adam_beta2`` (float, 0.999), ``adam_epsilon`` (float, 1e-8).
    - ``lr_scheduler_type`` (str, ``"constant"``): any ``transformers.get_scheduler`` name; ``warmup_steps`` (int, 0):
      the paper uses no warmup. Warm-up and decay count optimizer updates.
    - ``max_grad_norm`` (float, 1.0): gradient clipping (paper).
    - ``max_steps`` (int, 100): training steps (paper: 360 MATH-1.5B, 120 Countdown / Geo3K-3B).
    - ``mini_batch_size`` (int | None, None): prompts per optimizer update (verl ``ppo_mini_batch_size``: 128 MATH,
      64 Countdown, 256 Geo3K); None = one update per step on the whole batch.
    - ``ppo_epochs`` (int, 1): passes over the batch per step (verl ``ppo_epochs``).
    - ``micro_batch_size`` (int, 8): sequences per forward/backward; gradients accumulate over micro-batches.
    - ``clip_low`` (float, 0.2), ``clip_high`` (float, 0.28): asymmetric ratio clip (DAPO clip-higher).
    - ``clip_c`` (float | None, 10.0): dual-clip bound for negative advantages (verl ``clip_ratio_c``); None = off.
    - ``loss_agg_mode`` (str, ``"token-mean"``): ``token-mean`` (DAPO), ``seq-mean-token-mean`` (GRPO),
      ``seq-mean-token-sum-norm`` (Dr.GRPO).
    - ``advantage_estimator`` (str, ``"grpo"``): ``grpo`` (group mean baseline, scaled as ``scale_rewards`` says),
      ``rloo`` (leave-one-out baseline, no scaling; Ahmadian et al. 2024) or ``reinforce_pp`` (group mean
      subtracted, then divided by the batch std; REINFORCE++ with baseline, Hu 2025).
    - ``scale_rewards`` (bool | str, True): GRPO's scaling of the centred rewards: True / ``group`` = the group
      std (GRPO), ``batch`` = the std of the batch's rewards (TRL ``scale_rewards="batch"``), False / ``none`` =
      none (Dr.GRPO). Only for ``advantage_estimator=grpo``; the other estimators ignore the default.
    - ``ratio_level`` (str, ``"token"``): importance ratio per ``token`` (PPO/GRPO), per ``sequence`` (GSPO, the
      length-normalised sequence ratio; its paper clips at 3e-4 / 4e-4 and aggregates ``seq-mean-token-mean``) or
      ``sequence_token`` (GSPO-token).
    - ``loss_type`` (str, ``"clip"``): ``clip`` (PPO clipped surrogate, with ``clip_c``) or ``cispo`` (MiniMax-M1:
      REINFORCE on every token weighted by ``sg(min(ratio, 1 + clip_high))``; ``clip_low`` and ``clip_c`` unused).
    - ``rollout_correction`` (str | None, None): correct for the sampler/trainer log-prob mismatch with ``tis``
      (weight ``min(rho, cap)``, Yao et al. 2025) or ``mis`` (weight ``rho``, 0 beyond ``cap``), where ``rho`` is
      the trainer's over the sampler's probability of each sampled token (``rollout_correction_level="token"``)
      or of the whole sequence (``"sequence"``). Needs an engine that reports sampling log-probs (both do,
      except for greedy decoding). The mismatch is logged every step either way (``rollout/*``).
    - ``rollout_correction_level`` (str, ``"token"``), ``rollout_correction_cap`` (float, 2.0): see above.
    - ``beta`` (float, 0.0): KL-loss coefficient to a frozen reference (paper: 0 MATH / Countdown, 0.01 Geo3K-3B).
      0 loads no reference model.
    - ``kl_estimator`` (str, ``"k3"``): ``k1`` or ``k3`` (Schulman's estimators; verl ``low_var_kl`` = k3).
    - ``entropy_coeff`` (float, 0.001): entropy bonus (paper).
    - ``mask_truncated_completions`` (bool, False): drop completions that hit ``max_new_tokens`` from the loss
      (DAPO overlong filtering).
    - ``overlong_buffer_len`` (int, 0): DAPO soft overlong punishment window in tokens; 0 = off.
    - ``overlong_penalty_factor`` (float, 1.0): the penalty at ``max_new_tokens`` (DAPO).
    - ``skip_zero_advantage_groups`` (bool, True): leave groups whose advantages are all 0 out of the
      forward/backward pass when that cannot change the gradient (``entropy_coeff == 0``, ``beta == 0``, one
      update per step). Their tokens still count in the loss normaliser, so the update is identical; the step
      gets faster in proportion to the zero-variance share (mmdps; an exact form of the recipe's "drop
      zero-variance groups"). Clip-fraction statistics then cover the trained groups only.

    Rewards

    - ``reward_workers`` (int, 1): threads that run verifiers; 1 = in the main thread.

    Run, logging, checkpoints

    - ``output_dir`` (str, ``"outputs/run"``): metrics, samples, checkpoints.
    - ``run_name`` (str | None, None): name for W&B / TensorBoard (default: the folder name).
    - ``seed`` (int, 42): seeds python, numpy, torch, the selector and rollout sampling.
    - ``logging_steps`` (int, 1): write a metrics line every N steps.
    - ``report_to`` (list, []): extra sinks, ``tensorboard`` and/or ``wandb`` (optional extras).
    - ``wandb_project`` (str | None, None): W&B project (default ``mmdps``).
    - ``progress_bar`` (bool, True): rich progress bar with step, reward, effective-sample ratio and ETA.
    - ``log_completions_steps`` (int, 10): save sampled completions to ``samples/step_XXXX.jsonl`` every N
      steps (0 = never); ``num_completions_to_log`` (int, 8) of them.
    - ``save_steps`` (int, 50): checkpoint every N steps (0 = only at the end); ``save_total_limit``
      (int | None, 3): keep the newest N checkpoints; ``save_final`` (bool, True): checkpoint the last step.
    - ``resume`` (str | None, ``"auto"``): ``auto`` = continue from the newest complete checkpoint in
      ``output_dir`` if any; a checkpoint path; or None / ``none`` to start fresh.
    - ``eval_steps`` (int, 0): evaluate every N steps (0 = off, paper: every 5 MATH / 10 otherwise) with
      ``eval_num_samples`` (int, 16) samples at ``eval_temperature`` (float, 0.6), ``eval_top_p`` (float, 1.0),
      ``eval_max_new_tokens`` (int | None, None = ``max_new_tokens``) (paper: n=16, T=0.6).
    - ``max_consecutive_nan`` (int, 3): stop after this many non-finite losses / gradients in a row.
    """

    # model
    model_name_or_path: str = ""
    dtype: str = "auto"
    attn_implementation: str | None = None
    bf16: bool | None = None
    gradient_checkpointing: bool = False
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str | list = "all-linear"
    lora_exclude_vision: bool = True
    # data
    task: str = "countdown"
    train_source: str | None = None
    train_split: str = "train"
    train_limit: int | None = None
    task_options: dict = field(default_factory=dict)
    task_template: str | None = None
    system_prompt: str | None = None
    eval_source: str | None = None
    eval_split: str = "test"
    eval_limit: int | None = None
    eval_options: dict = field(default_factory=dict)
    max_prompt_length: int = 1024
    min_pixels: int | None = None
    max_pixels: int | None = None
    # selection
    selector: str = "dps"
    selector_kwargs: dict = field(default_factory=dict)
    candidate_ratio: float | None = None
    batch_size: int = 256
    num_generations: int = 8
    # rollout
    engine: str = "hf"
    engine_kwargs: dict = field(default_factory=dict)
    generation_batch_size: int | None = None
    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    # optimisation
    learning_rate: float = 1e-6
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    max_steps: int = 100
    mini_batch_size: int | None = None
    ppo_epochs: int = 1
    micro_batch_size: int = 8
    clip_low: float = 0.2
    clip_high: float = 0.28
    clip_c: float | None = 10.0
    loss_agg_mode: str = "token-mean"
    advantage_estimator: str = "grpo"
    scale_rewards: bool | str = True
    ratio_level: str = "token"
    loss_type: str = "clip"
    rollout_correction: str | None = None
    rollout_correction_level: str = "token"
    rollout_correction_cap: float = 2.0
    beta: float = 0.0
    kl_estimator: str = "k3"
    entropy_coeff: float = 0.001
    mask_truncated_completions: bool = False
    overlong_buffer_len: int = 0
    overlong_penalty_factor: float = 1.0
    skip_zero_advantage_groups: bool = True
    # rewards
    reward_workers: int = 1
    # run, logging, checkpoints
    output_dir: str = "outputs/run"
    run_name: str | None = None
    seed: int = 42
    logging_steps: int = 1
    report_to: list = field(default_factory=list)
    wandb_project: str | None = None
    progress_bar: bool = True
    log_completions_steps: int = 10
    num_completions_to_log: int = 8
    save_steps: int = 50
    save_total_limit: int | None = 3
    save_final: bool = True
    resume: str | None = "auto"
    eval_steps: int = 0
    eval_num_samples: int = 16
    eval_temperature: float = 0.6
    eval_top_p: float = 1.0
    eval_max_new_tokens: int | None = None
    max_consecutive_nan: int = 3

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix for any inconsistent value."""
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is required (a local model folder or tiny:qwen2 / tiny:qwen2-vl / "
                             "tiny:qwen2.5-vl)")
        positive = ("batch_size", "num_generations", "max_new_tokens", "max_steps", "ppo_epochs", "micro_batch_size",
                    "max_prompt_length", "logging_steps", "reward_workers", "max_consecutive_nan", "eval_num_samples")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        non_negative = ("warmup_steps", "overlong_buffer_len", "save_steps", "eval_steps", "log_completions_steps",
                        "num_completions_to_log", "top_k")
        for name in non_negative:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2: group advantages need at least two rollouts per prompt")
        if self.mini_batch_size is not None and not 1 <= self.mini_batch_size <= self.batch_size:
            raise ValueError(f"mini_batch_size must be in [1, batch_size={self.batch_size}] or None, "
                             f"got {self.mini_batch_size}")
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"loss_agg_mode must be one of {LOSS_AGG_MODES}, got {self.loss_agg_mode!r}")
        self._validate_objective()
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for sink in self.report_to:
            if sink not in REPORT_TO:
                raise ValueError(f"report_to entries must be in {REPORT_TO}, got {sink!r}")
        for name in ("clip_low", "clip_high", "beta", "entropy_coeff", "weight_decay", "lora_dropout",
                     "overlong_penalty_factor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.clip_low >= 1.0:  # the ratio's lower clip bound 1 - clip_low must stay positive
            raise ValueError(f"clip_low must be in [0, 1), got {self.clip_low!r}")
        if self.clip_c is not None and self.clip_c <= 1.0:
            raise ValueError(f"clip_c (dual clip) must be > 1 or None, got {self.clip_c!r}")
        if self.learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ValueError("learning_rate and max_grad_norm must be > 0")
        if not 0.0 < self.top_p <= 1.0 or self.temperature < 0:
            raise ValueError(f"need 0 < top_p <= 1 and temperature >= 0, got top_p={self.top_p}, "
                             f"temperature={self.temperature}")
        if self.overlong_buffer_len >= self.max_new_tokens:
            raise ValueError(f"overlong_buffer_len ({self.overlong_buffer_len}) must be below max_new_tokens "
                             f"({self.max_new_tokens})")
        for name in ("min_pixels", "max_pixels", "mini_batch_size", "generation_batch_size", "train_limit",
                     "eval_limit", "eval_max_new_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.candidate_ratio is not None:
            from mmdps.selection.base import check_candidate_ratio

            check_candidate_ratio(self.candidate_ratio)
            if "candidate_ratio" in self.selector_kwargs:
                raise ValueError("candidate_ratio is set both at the top level and in selector_kwargs; keep one")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ValueError(f"save_total_limit must be >= 1 or None, got {self.save_total_limit}")
        if isinstance(self.resume, str) and self.resume.lower() in ("none", "null", "false", "no", ""):
            self.resume = None

    def _validate_objective(self) -> None:
        """The advantage estimator, ratio level, loss type and rollout correction (choices from mmdps.rl)."""
        from mmdps.rl import (
            ADVANTAGE_ESTIMATORS,
            LOSS_TYPES,
            RATIO_LEVELS,
            REWARD_SCALES,
            ROLLOUT_CORRECTION_LEVELS,
            ROLLOUT_CORRECTIONS,
        )

        for name, choices in (("advantage_estimator", ADVANTAGE_ESTIMATORS), ("ratio_level", RATIO_LEVELS),
                              ("loss_type", LOSS_TYPES), ("rollout_correction_level", ROLLOUT_CORRECTION_LEVELS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
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
        if not self.rollout_correction_cap > 0:
            raise ValueError(f"rollout_correction_cap must be > 0 (e.g. 2.0), got {self.rollout_correction_cap!r}")

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
        apply_override(values, key, _parse_scalar(raw))
    return GRPOConfig.from_dict(values)


def read_yaml(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read one YAML mapping, merging it over the file(s) it names under ``base:``."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ValueError(f"config include cycle: {chain}")
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
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
            value = yaml.safe_load(value)
        if kind is list and isinstance(value, str):  # report_to=wandb means [wandb]
            value = [value]
        if not isinstance(value, kind):
            raise ValueError(f"not a {kind.__name__}")
        return value
    raise TypeError(f"unsupported field type {kind}")


def _parse_scalar(raw: str) -> Any:
    raw = raw.strip()
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(GRPOConfig)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _type_name(annotation: Any) -> str:
    if _is_union(annotation):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))
