"""What a trainer logs about a selector after each update (TRL and verl integrations alike)."""

from __future__ import annotations

import numpy as np

from mmdps.selection import Selector


def selector_metrics(selector: Selector, predicted_informative_share: float | None = None) -> dict[str, float]:
    """What a trainer logs about a selector after an update: ``selector/<diagnostic>``,
    ``selector/observed_informative_share`` (share of the last batch's prompts with 0 < success < 1),
    ``selector/predicted_informative_share`` (the share the selector predicted for that batch, when it
    predicts one) and the data diagnostics ``prompts/*`` (repeat share, distinct prompts). The diagnostics
    include, for DPS and MoPPS, the calibration of their predictions (``selector/brier``, ``brier_mean``,
    ``calibration_error``, ``reliability/bin_<i>/...``, DPS's probe as ``selector/probe/...``), which
    ``mmdps.selection_plot.plot_selection`` draws. Finite values only (nothing measured yet is left out)."""
    diagnostics = selector.diagnostics()
    metrics = {f"selector/{key}": value for key, value in diagnostics.items()}
    if "observed_partial_ratio" in diagnostics:
        metrics["selector/observed_informative_share"] = diagnostics["observed_partial_ratio"]
    if predicted_informative_share is not None:
        metrics["selector/predicted_informative_share"] = predicted_informative_share
    metrics.update(selector.training_diagnostics())
    return {key: float(value) for key, value in metrics.items() if np.isfinite(value)}
