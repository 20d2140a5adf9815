"""mmdps: active RL finetuning (GRPO) of text and vision-language reasoning models.

The public API, importable from the top level (each name is imported on first use, so ``import mmdps`` stays
light and a numpy-only user of the selectors never pulls in torch)::

    from mmdps import GRPOConfig, GRPOTrainer, load_config, make_selector, make_engine, rollout_and_score

The pieces are usable on their own:

* ``mmdps.selection`` prompt selectors (DPS and baselines); numpy only.
* ``mmdps.rl`` the GRPO/DAPO math as pure torch functions (``grpo_objective``, ``group_advantages``, ...).
* ``mmdps.tasks`` task packs (math, Countdown, geometry, visual) and ``mmdps.verifiers`` rule-based rewards.
* ``mmdps.rollout`` generation engines (HF ``generate``, vLLM) behind one interface, and ``rollout_and_score``.
* ``mmdps.trainer`` the accelerate GRPO trainer, built from ``mmdps.training``; ``mmdps.eval`` evaluation.
* ``mmdps.integrations`` the selectors inside TRL and verl; ``mmdps.cli`` the ``mmdps`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "GRPOConfig": "mmdps.config",
    "load_config": "mmdps.config",
    "GRPOTrainer": "mmdps.trainer",
    "RolloutBudget": "mmdps.trainer",
    "TrainingDivergedError": "mmdps.trainer",
    "make_selector": "mmdps.selection",
    "SELECTORS": "mmdps.selection",
    "make_engine": "mmdps.rollout",
    "SamplingParams": "mmdps.rollout",
    "rollout_and_score": "mmdps.rollout.scoring",
    "evaluate_items": "mmdps.eval",
    "Item": "mmdps.data.item",
    "Verdict": "mmdps.verifiers",
    "score_completion": "mmdps.verifiers",
    "success_rate": "mmdps.verifiers",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmdps' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
