"""Deprecated: the Countdown demo now lives in :mod:`mmdps.demos` (:mod:`mmdps.demos.countdown` for the task,
:mod:`mmdps.demos.common` for what both demos share). This module re-exports the old names for one release."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdps.demos import common
from mmdps.demos.common import DemoSettings, Log, plot_curve
from mmdps.demos.common import evaluate_policy as _evaluate_policy
from mmdps.demos.countdown import (
    ADDED_TOKENS,
    CHAT_TEMPLATE,
    LEVELS,
    RECIPE,
    SFT_PROBLEMS_PER_LEVEL,
    DemoData,
    build_model,
    build_tokenizer,
    grpo_config,
    make_data,
    sft_examples,
)

warnings.warn("mmdps.demo is deprecated: use mmdps.demos (mmdps.demos.countdown, mmdps.demos.common)",
              DeprecationWarning, stacklevel=2)

__all__ = ["ADDED_TOKENS", "CHAT_TEMPLATE", "LEVELS", "SFT_PROBLEMS_PER_LEVEL", "DemoData", "DemoSettings",
           "build_model", "build_tokenizer", "evaluate_policy", "grpo_config", "make_data", "make_engine",
           "plot_curve", "run_demo", "run_grpo", "sft_examples", "warm_start"]

make_engine = RECIPE.make_engine


def evaluate_policy(engine, items, *, samples: int = 8, seed: int = 0, max_new_tokens: int = 16,
                    temperature: float = 1.0, levels: Sequence[str] = LEVELS) -> dict[str, Any]:
    return _evaluate_policy(engine, items, samples=samples, seed=seed, max_new_tokens=max_new_tokens,
                            temperature=temperature, levels=levels)


def warm_start(settings: DemoSettings, data: DemoData, model_dir: Path, *, log: Log = print) -> dict[str, Any]:
    return common.warm_start(RECIPE, settings, data.sft, model_dir, log=log)


def run_grpo(config, data: DemoData, settings: DemoSettings, *, rollout_budget: int | None = None,
             eval_every_rollouts: int | None = None, log: Log = print) -> dict[str, Any]:
    return common.run_grpo(RECIPE, config, data, settings, rollout_budget=rollout_budget,
                           eval_every_rollouts=eval_every_rollouts, log=log)


def run_demo(settings: DemoSettings, out: Path, *, log: Log = print) -> dict[str, Any]:
    return common.run_demo(RECIPE, settings, out, log=log)
