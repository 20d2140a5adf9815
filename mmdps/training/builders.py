"""What a GRPO run is built from, in the order :class:`~mmdps.trainer.GRPOTrainer` builds it: processor and
prompt encoder, training items (loaded, checked, fitted to ``max_prompt_length``), selector, policy (and
reference), optimizer and scheduler, rollout engine. Each builder takes the config and returns its piece."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmdps.config import GRPOConfig
from mmdps.data.images import ImageError
from mmdps.data.item import Item
from mmdps.rollout.base import RolloutEngine

logger = logging.getLogger(__name__)

TINY_PREFIX = "tiny:"


# ---------------------------------------------------------------------- model folder and processor
def model_path(config: GRPOConfig, output_dir: Path, accelerator) -> str:
    """The model folder; ``tiny:<arch>`` builds a tiny random model once into the output folder."""
    name = config.model_name_or_path
    if not name.startswith(TINY_PREFIX):
        return name
    from mmdps.models.tiny import build_tiny_model

    arch = name[len(TINY_PREFIX):]
    folder = output_dir / "tiny-model" / arch
    if accelerator.is_main_process and not (folder / "config.json").is_file():
        build_tiny_model(arch, folder, seed=0)  # fixed seed: a resumed run rebuilds the same base
    accelerator.wait_for_everyone()
    return str(folder)


def build_encoder(config: GRPOConfig, processor: Any):
    from mmdps.data.collate import PromptEncoder

    return PromptEncoder(processor, max_prompt_length=config.max_prompt_length, min_pixels=config.min_pixels,
                         max_pixels=config.max_pixels, truncation=truncation(config))


def truncation(config: GRPOConfig) -> str:
    return "left" if config.long_prompts == "truncate" else "error"


# ---------------------------------------------------------------------- items
def task_pack(config: GRPOConfig):
    from mmdps import tasks

    options = {}
    if config.task_template is not None:
        options["template"] = config.task_template
    if config.system_prompt is not None:
        options["system_prompt"] = config.system_prompt
    return tasks.get(config.task, **options)


def load_items(config: GRPOConfig, source, split, limit, options) -> list[Item]:
    items = task_pack(config).load(source, split=split, limit=limit, seed=config.seed, **options)
    if not items:
        raise ValueError(f"task {config.task!r} loaded no items from source={source!r}, split={split!r}; "
                         "check the path, split and limit")
    return items


def training_items(config: GRPOConfig) -> list[Item]:
    return load_items(config, config.train_source, config.train_split, config.train_limit, config.task_options)


def eval_items(config: GRPOConfig) -> list[Item]:
    if config.eval_steps <= 0:
        return []
    return load_items(config, config.eval_source, config.eval_split, config.eval_limit, config.eval_options)


def reward_verifier(config: GRPOConfig) -> str | None:
    """The verifier name of the config's own reward (``reward_function``), registered now; None without one."""
    if config.reward_function is None:
        return None
    from mmdps.verifiers.custom import register_reward_functions

    return register_reward_functions(config.reward_function, config.reward_weights, config.success_threshold)


def use_reward(items: list[Item], verifier: str | None) -> list[Item]:
    """The items scored by ``verifier`` instead of their task's own (unchanged when None)."""
    if verifier is None:
        return items
    import dataclasses

    return [dataclasses.replace(item, verifier=verifier) for item in items]


def check_ground_truth(config: GRPOConfig, items: Sequence[Item], what: str, reward: str | None = None) -> None:
    """Score a sample of the items' own ground truths, written as the task asks for answers, with the run's
    reward (``reward``: the config's own, else each item's verifier) and refuse to start when many fail: a
    wrong column mapping, or a reward that does not read the answers the prompt asks for, shows in seconds."""
    if not config.check_ground_truth:
        return
    from mmdps.data.sanity import check_reward_on_ground_truth
    from mmdps.verifiers import score_completion

    def score(item: Item, completion: str):
        return score_completion(use_reward([item], reward)[0], completion)

    result = check_reward_on_ground_truth(items, task_pack(config), score_fn=score, seed=config.seed)
    logger.info("%s: %s", what, result.summary())


def fit_prompts(items: list[Item], encoder, config: GRPOConfig, what: str) -> list[Item]:
    """Measure every prompt before training and apply ``long_prompts`` to those over the limit."""
    limit, mode = config.max_prompt_length, config.long_prompts
    lengths = encoder.prompt_lengths(items)
    long = [(item, n) for item, n in zip(items, lengths, strict=True) if n > limit]
    if mode == "truncate":  # text prompts are cut on the left; image tokens cannot be cut
        long = [(item, n) for item, n in long if item.images]
    if not long:
        return items
    shown = ", ".join(f"item {item.id} ({where(item)}, {n} tokens)" for item, n in long[:5])
    more = f" and {len(long) - 5} more" if len(long) > 5 else ""
    summary = f"{len(long)} prompt(s) of the {what} are longer than max_prompt_length={limit}: {shown}{more}"
    if mode == "drop":
        logger.warning("%s; dropped them (long_prompts=drop)", summary)
        dropped = {id(item) for item, _ in long}
        return [item for item in items if id(item) not in dropped]
    if mode == "truncate":
        raise ValueError(f"{summary}; prompts with images cannot be truncated: raise max_prompt_length, lower "
                         "max_pixels, or set long_prompts=drop")
    raise ValueError(f"{summary}; raise max_prompt_length, or set long_prompts=drop (leave them out) or "
                     "long_prompts=truncate (keep the last max_prompt_length tokens of text prompts)")


def check_items(items: Sequence[Item], what: str) -> None:
    """Unique ids, a verifier for every item, and images that exist (clear errors naming the row)."""
    if not items:
        raise ValueError(f"the {what} is empty")
    seen: dict[int, int] = {}
    for position, item in enumerate(items):
        if item.id in seen:
            raise ValueError(f"{what}: items {seen[item.id]} and {position} share id {item.id}; ids must be unique "
                             "(checkpoints and the selector key prompts by them)")
        seen[item.id] = position
        if not item.verifier:
            raise ValueError(f"{what}: item {item.id} names no verifier")
        for image in item.images:
            if image is None:
                raise ImageError(f"{what}: item {item.id} ({where(item)}) has an image part without an image")
            if isinstance(image, (str, os.PathLike)) and not str(image).startswith(("http://", "https://")) \
                    and not os.path.exists(str(image).removeprefix("file://")):
                raise ImageError(f"{what}: item {item.id} ({where(item)}): image file not found: {image}")


def check_pool(items: Sequence[Item], batch_size: int) -> None:
    if batch_size > len(items):
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(items)} prompts): a step "
                         "selects batch_size different prompts; lower batch_size or train on more prompts")


def check_modality(items: Sequence[Item], is_vl: bool, model_name: str) -> None:
    if is_vl:
        return
    with_images = next((item for item in items if item.images), None)
    if with_images is not None:
        raise ValueError(f"item {with_images.id} has images but {model_name} is a text-only model; use a "
                         "vision-language model (e.g. Qwen2.5-VL) or a text task")


def where(item: Item) -> str:
    meta = item.metadata
    parts = [f"{key} {meta[key]}" for key in ("source", "file", "row") if key in meta]
    return ", ".join(parts) or f"task {item.task}"


# ---------------------------------------------------------------------- selector
def build_selector(config: GRPOConfig, num_prompts: int):
    from mmdps.selection import make_selector

    return make_selector(config.selector, num_prompts, config.selector_kwargs, candidate_ratio=config.candidate_ratio,
                         seed=config.seed, rollouts_per_prompt=config.num_generations)


# ---------------------------------------------------------------------- policy, optimizer, engine
def build_policy(config: GRPOConfig, path: str, accelerator, processor, *, weights_from: Path | None = None):
    """The policy (with LoRA and gradient checkpointing as configured, weights restored from a checkpoint
    before any wrapping) and the frozen reference model when ``beta > 0`` (None with LoRA: the base is
    the reference, adapters disabled), both with the ``processor`` already loaded. Returns
    ``(model, ref_model)``."""
    from mmdps.checkpoint import load_model_weights
    from mmdps.models.loading import apply_lora, enable_gradient_checkpointing, load_policy

    model: torch.nn.Module  # the transformers model, or its peft wrapper with LoRA
    model, _ = load_policy(path, dtype=config.dtype, attn_implementation=config.attn_implementation,
                           processor=processor)
    if config.use_lora:
        model = apply_lora(model, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                           target_modules=config.lora_target_modules, exclude_vision=config.lora_exclude_vision)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if weights_from is not None:
        load_model_weights(weights_from, model)
    ref_model = None
    if config.beta > 0 and not config.use_lora:
        ref, _ = load_policy(path, dtype=config.dtype, attn_implementation=config.attn_implementation,
                             processor=processor)
        ref.requires_grad_(False).eval()
        ref_model = accelerator.prepare_model(ref, evaluation_mode=True)
    return model, ref_model


def num_mini_batches(config: GRPOConfig, num_groups: int) -> int:
    size = config.mini_batch_size or num_groups
    return max(1, math.ceil(num_groups / size))


def build_optimizer(config: GRPOConfig, model: torch.nn.Module, accelerator):
    """AdamW over the trainable parameters and its schedule, prepared by accelerate with the model.
    Returns ``(model, optimizer, scheduler)``."""
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (check use_lora / lora_target_modules)")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
    updates_per_step = num_mini_batches(config, config.batch_size) * config.ppo_epochs
    # Stepped by hand once per optimizer update (accelerate would step it num_processes times per call).
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=config.warmup_steps,
                              num_training_steps=config.max_steps * updates_per_step)
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, scheduler


def build_engine(config: GRPOConfig, model, processor, path: str) -> RolloutEngine:
    from mmdps.rollout import make_engine

    options: dict[str, Any] = dict(max_prompt_length=config.max_prompt_length, min_pixels=config.min_pixels,
                                   max_pixels=config.max_pixels, truncation=truncation(config))
    if config.engine == "vllm":  # a colocated engine loaded from the base folder, then synced
        options.update(model_path=path, max_new_tokens=config.max_new_tokens, seed=config.seed)
    else:
        options.update(generation_batch_size=config.generation_batch_size)
    options.update(config.engine_kwargs)
    return make_engine(config.engine, model, processor, **options)
