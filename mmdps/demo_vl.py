"""Deprecated: the vision-language demo now lives in :mod:`mmdps.demos.vl` (and :mod:`mmdps.demos.common` for
what both demos share). This module re-exports the old names for one release."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdps.demos import common
from mmdps.demos.common import Log
from mmdps.demos.vl import (
    CHAT_TEMPLATE,
    DEFAULT_LEVELS,
    LEVEL_NAMES,
    LEVELS,
    MAX_PIXELS,
    MAX_PROMPT_LENGTH,
    MIN_PIXELS,
    RECIPE,
    VLDemoData,
    VLDemoSettings,
    build_model,
    build_processor,
    grpo_config,
    make_data,
    print_summary,
    sft_examples,
)

warnings.warn("mmdps.demo_vl is deprecated: use mmdps.demos.vl", DeprecationWarning, stacklevel=2)

__all__ = ["CHAT_TEMPLATE", "DEFAULT_LEVELS", "LEVEL_NAMES", "LEVELS", "MAX_PIXELS", "MAX_PROMPT_LENGTH",
           "MIN_PIXELS", "VLDemoData", "VLDemoSettings", "build_model", "build_processor", "evaluate_policy",
           "grpo_config", "make_data", "make_engine", "print_summary", "run_demo", "run_grpo", "sft_examples",
           "warm_start"]

make_engine = RECIPE.make_engine


def evaluate_policy(engine, items, *, samples: int = 8, seed: int = 0, max_new_tokens: int = 4,
                    temperature: float = 1.0, levels: Sequence[str] = LEVELS) -> dict[str, Any]:
    return common.evaluate_policy(engine, items, samples=samples, seed=seed, max_new_tokens=max_new_tokens,
                                  temperature=temperature, levels=levels)


def warm_start(settings: VLDemoSettings, data: VLDemoData, model_dir: Path, *, log: Log = print) -> dict[str, Any]:
    return common.warm_start(RECIPE, settings, data.sft, model_dir, log=log)


def run_grpo(config, data: VLDemoData, settings: VLDemoSettings, *, rollout_budget: int | None = None,
             eval_every_rollouts: int | None = None, controls: bool = True, log: Log = print) -> dict[str, Any]:
    return common.run_grpo(RECIPE, config, data, settings, rollout_budget=rollout_budget,
                           eval_every_rollouts=eval_every_rollouts, controls=controls, log=log)


def run_demo(settings: VLDemoSettings, out: Path, *, log: Log = print) -> dict[str, Any]:
    return common.run_demo(RECIPE, settings, out, log=log)
