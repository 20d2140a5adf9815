"""The CPU demos (``mmdps demo``): an SFT warm start, then GRPO through the library's trainer, offline.

One :class:`Recipe` per task holds the functions that differ (settings, model, data, SFT examples, trainer
configuration, report); :mod:`mmdps.demos.common` runs any of them (:func:`run_demo`, :func:`warm_start`,
:func:`run_grpo`, :func:`evaluate_policy`, :class:`EvalCallback`). ``RECIPES`` names them:

* ``countdown`` (:mod:`mmdps.demos.countdown`): a ~1M-parameter Qwen2 learns Countdown, GRPO with DPS;
* ``vl`` (:mod:`mmdps.demos.vl`, ``mmdps demo --vl``): a 1.4M-parameter Qwen2-VL learns to read digits from
  images, with the blank-image control.

``scripts/bench_selection_e2e.py`` and the other benchmark scripts build on the same recipes.
"""

from __future__ import annotations

from mmdps.demos import countdown, vl
from mmdps.demos.common import (
    DemoSettings,
    EvalCallback,
    Recipe,
    evaluate_policy,
    plot_curve,
    renumber,
    run_demo,
    run_grpo,
    step_record,
    warm_start,
)
from mmdps.demos.vl import VLDemoSettings

RECIPES: dict[str, Recipe] = {"countdown": countdown.RECIPE, "vl": vl.RECIPE}

__all__ = ["RECIPES", "Recipe", "DemoSettings", "VLDemoSettings", "EvalCallback", "evaluate_policy", "plot_curve",
           "renumber", "run_demo", "run_grpo", "step_record", "warm_start", "countdown", "vl"]
