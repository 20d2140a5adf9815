"""``plot_selection``: how well a selector predicted its rollouts, drawn from a run's logged metrics.

The selectors that predict before the rollout (DPS, MoPPS) log ``brier`` (the last update's Brier score),
``brier_mean`` (all updates) and a cumulative reliability diagram ``reliability/bin_<i>/{predicted,observed,
count}`` through ``diagnostics()`` (``mmdps.selection.calibration``); the trainer writes them to
``metrics.jsonl`` as ``selector/<key>`` (DPS's random probe as ``selector/probe/<key>``). This module draws
them: the reliability diagram (the last logged one, cumulative) and the Brier score over steps. It lives
outside ``mmdps.selection``, which stays numpy-only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmdps.selection import Selector

PLOT_FILE = "selection.png"
_BIN = re.compile(r"^(?P<prefix>.*?)reliability/bin_(?P<bin>\d+)/(?P<what>predicted|observed|count)$")


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (or of ``<path>/metrics.jsonl`` for a run's output directory)."""
    file = Path(path)
    if file.is_dir():
        file = file / "metrics.jsonl"
    if not file.is_file():
        raise FileNotFoundError(f"no metrics file at {file}: pass a run's output directory, its metrics.jsonl, "
                                "or the records themselves")
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}, line {number}: not a JSON record ({err.msg}); the file is damaged") from err
        if not isinstance(record, dict):
            raise ValueError(f"{file}, line {number}: expected a JSON object of metrics, got {type(record).__name__}")
        records.append(record)
    return records


def calibration_series(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric prefix that logs a ``brier`` (e.g. ``selector/``, ``selector/probe/``): the steps, the Brier
    score per step and cumulative, and the last reliability diagram as ``[bins, 3]`` rows (bin, predicted,
    observed, count). A record without ``step`` takes its position."""
    series: dict[str, dict[str, Any]] = {}
    for position, record in enumerate(records):
        step = record.get("step", position)
        bins: dict[str, dict[int, dict[str, float]]] = {}
        for key, value in record.items():
            match = _BIN.match(key)
            if match and _finite(value):
                bins.setdefault(match["prefix"], {}).setdefault(int(match["bin"]), {})[match["what"]] = float(value)
        for key, value in record.items():
            if not key.endswith("brier") or not _finite(value):
                continue
            prefix = key[: -len("brier")]
            if prefix and not prefix.endswith("/"):
                continue
            entry = series.setdefault(prefix, {"steps": [], "brier": [], "brier_mean": [], "reliability": None,
                                               "success_rate": False})
            entry["steps"].append(step)
            entry["brier"].append(float(value))
            entry["brier_mean"].append(float(record.get(prefix + "brier_mean", np.nan)))
            entry["success_rate"] |= prefix + "posterior_mean_abs_error" in record  # MoPPS predicts a rate
            if bins.get(prefix):
                entry["reliability"] = np.array([[i, row.get("predicted", np.nan), row.get("observed", np.nan),
                                                  row.get("count", np.nan)] for i, row in sorted(bins[prefix].items())])
    return series


def plot_selection(source: str | os.PathLike | Iterable[Mapping[str, Any]] | Selector,
                   path: str | os.PathLike | None = None) -> Path | None:
    """Draw the reliability diagram and the Brier score over steps into ``path`` (a PNG).

    ``source``: a run's output directory (``path`` then defaults to ``<output_dir>/selection.png``), a
    ``metrics.jsonl`` file, a list of metric records (e.g. TRL's ``trainer.state.log_history`` or the
    ``metrics()`` a verl sampler returned each step), or a selector (its current diagnostics: the
    reliability diagram and one Brier point). Returns the file written, or ``None`` when the metrics hold
    no calibration (a selector that predicts nothing, such as uniform): nothing is drawn then.
    """
    if isinstance(source, Selector):
        records: Sequence[Mapping[str, Any]] = [{"step": source.steps,
                                                 **{f"selector/{k}": v for k, v in source.diagnostics().items()}}]
    elif isinstance(source, (str, os.PathLike)):
        records = read_records(source)
        if path is None and Path(source).is_dir():
            path = Path(source) / PLOT_FILE
    else:
        records = list(source)
    if path is None:
        raise ValueError("plot_selection needs path= (where to write the PNG) unless source is an output directory")
    series = calibration_series(records)
    if not series:
        return None
    _draw(series, Path(path))
    return Path(path)


def _draw(series: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: this only writes a file
    import matplotlib.pyplot as plt

    fig, (rel_ax, brier_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    rel_ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfectly calibrated")
    quantities = set()
    for prefix, entry in series.items():
        name = _label(prefix)
        quantities.add("success rate" if entry["success_rate"] else "P(partial)")
        table = entry["reliability"]
        if table is not None:
            counts = np.nan_to_num(table[:, 3])
            sizes = 20 + 180 * counts / max(float(counts.max()), 1.0)
            line, = rel_ax.plot(table[:, 1], table[:, 2], lw=1, label=f"{name} ({int(counts.sum())} groups)")
            rel_ax.scatter(table[:, 1], table[:, 2], s=sizes, color=line.get_color(), alpha=0.7)
        line, = brier_ax.plot(entry["steps"], entry["brier"], lw=0.8, alpha=0.5, label=f"{name}, per step")
        brier_ax.plot(entry["steps"], entry["brier_mean"], lw=2, color=line.get_color(), label=f"{name}, cumulative")
    quantity = " / ".join(sorted(quantities))
    rel_ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"predicted {quantity} (mean of bin)",
               ylabel="observed (share of partial groups / success rate)",
               title="reliability, cumulative (marker size: groups in the bin)")
    rel_ax.legend(fontsize=8)
    brier_ax.set(xlabel="step", ylabel="Brier score (lower is better)", title="Brier score of the prediction")
    brier_ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(prefix: str) -> str:
    if prefix.rstrip("/").endswith("probe"):
        return "random probe"
    return "selected prompts"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))
