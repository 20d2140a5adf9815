"""Several evaluation reports side by side (``mmdps eval --compare``): a table, printed and written to
``comparison.md``, and grouped bars in ``comparison.png``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmdps.eval.report import load_report, markdown_table, percent, print_rich_table

COMPARISON_TABLE_FILE = "comparison.md"
COMPARISON_PLOT_FILE = "comparison.png"


@dataclass
class Comparison:
    """Reports side by side: ``headers`` and ``rows`` (one per report, percentages as strings),
    the ``markdown`` written to ``comparison.md`` and the ``files`` written."""

    labels: list[str]
    headers: list[str]
    rows: list[list[str]]
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)


def _labels_for(reports: Sequence[dict[str, Any]], labels: Sequence[str] | None) -> list[str]:
    if labels:
        if len(labels) != len(reports):
            raise ValueError(f"got {len(labels)} labels for {len(reports)} reports")
        return list(labels)
    # The folder name (out/base, out/dps) is what users pick to tell runs apart; else the config label.
    names = [r.get("config", {}).get("label") or Path(r["_path"]).parent.name for r in reports]
    if len(set(names)) < len(names):
        names = [str(Path(r["_path"]).parent) for r in reports]
    return names


def compare_reports(paths: Sequence[str | os.PathLike], output_dir: str | os.PathLike | None = None, *,
                    labels: Sequence[str] | None = None, print_table: bool = True) -> Comparison:
    """Put several reports side by side: mean@n, pass@k, format errors, tokens per report (e.g. base
    vs uniform vs DPS checkpoints), printed with rich. With ``output_dir``, also write
    ``comparison.md`` (with a by-type table when the reports have types, and a table per official
    breakdown of each benchmark, e.g. MathVista's ``task``) and ``comparison.png``
    (grouped bars of mean@n and pass@k)."""
    if not paths:
        raise ValueError("compare_reports needs at least one report")
    reports = [load_report(p) for p in paths]
    names = _labels_for(reports, labels)
    ks = sorted({k for r in reports for k in r["pass_at_k"]})
    headers = ["report", "task", "problems", "n", "mean@n %", "± stderr", *[f"pass@{k} %" for k in ks],
               "format err %", "mean tokens", "truncated %"]
    rows = []
    for name, r in zip(names, reports, strict=True):
        rows.append([name, r.get("task") or r.get("config", {}).get("task", "-"), str(r["num_problems"]), str(r["n"]),
                     percent(r["mean_at_n"]), percent(r.get("mean_at_n_stderr")),
                     *[percent(r["pass_at_k"].get(k)) for k in ks], percent(r.get("format_error_rate")),
                     f"{r.get('mean_completion_tokens', float('nan')):.1f}", percent(r.get("truncation_rate"))])
    notes = []
    for key in ("task", "num_problems", "n"):
        if len({str(r.get(key)) for r in reports}) > 1:
            notes.append(f"- The reports differ in `{key}`: the numbers are not directly comparable.")
    sections = ["# Evaluation comparison", "", markdown_table(headers, rows), ""]
    if notes:
        sections += [*notes, ""]
    types = sorted({t for r in reports for t in r.get("by_type", {})})
    if types:
        type_rows = [[t, *[percent(r.get("by_type", {}).get(t, {}).get("mean_at_n")) for r in reports]] for t in types]
        sections += ["## mean@n % by problem type", "", markdown_table(["type", *names], type_rows), ""]
    sections += _breakdown_sections(reports, names)
    comparison = Comparison(labels=names, headers=headers, rows=rows, markdown="\n".join(sections))
    if print_table:
        print_rich_table("Evaluation comparison", headers, rows, notes)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        comparison.files["table"] = out / COMPARISON_TABLE_FILE
        comparison.files["table"].write_text(comparison.markdown + "\n")
        comparison.files["plot"] = _plot_comparison(names, reports, ks, out / COMPARISON_PLOT_FILE)
    return comparison


def _breakdown_sections(reports: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    """One table per benchmark and official breakdown (MathVista's task, MathVerse's problem_version, ...),
    with a column for each report of that benchmark."""
    sections: list[str] = []
    tasks = list(dict.fromkeys(r.get("task") or "-" for r in reports if r.get("breakdowns")))
    for task in tasks:
        members = [(name, r) for name, r in zip(names, reports, strict=True) if (r.get("task") or "-") == task]
        breakdowns = list(dict.fromkeys(b for _, r in members for b in r.get("breakdowns", {})))
        for breakdown in breakdowns:
            labels = list(dict.fromkeys(label for _, r in members for label in r["breakdowns"].get(breakdown, {})))
            rows = [[label, *[percent(r["breakdowns"].get(breakdown, {}).get(label, {}).get("mean_at_n"))
                              for _, r in members]] for label in labels]
            sections += [f"## {task}: mean@n % by {breakdown}", "",
                         markdown_table([breakdown, *[name for name, _ in members]], rows), ""]
    return sections


def _plot_comparison(names: Sequence[str], reports: Sequence[dict[str, Any]], ks: Sequence[int], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: this only writes a file
    import matplotlib.pyplot as plt

    metrics = ["mean@n", *[f"pass@{k}" for k in ks]]
    values = np.array([[100 * r["mean_at_n"], *[100 * r["pass_at_k"].get(k, np.nan) for k in ks]] for r in reports])
    # The error bar is the table's "± stderr" (of mean@n over problems); reports give none for pass@k.
    stderr = [r.get("mean_at_n_stderr") for r in reports]
    errors = np.array([[np.nan if s is None else 100 * s, *[np.nan] * len(ks)] for s in stderr])
    width = 0.8 / len(reports)
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics) * max(1, len(reports)) / 2 + 2), 4.5))
    for i, (name, row, error) in enumerate(zip(names, values, errors, strict=True)):
        bars = ax.bar(x + (i - (len(reports) - 1) / 2) * width, row, width, label=name,
                      yerr=np.nan_to_num(error), capsize=3, error_kw={"elinewidth": 1})
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, metrics)
    ax.set_ylabel("%")
    top = np.nanmax(values + np.nan_to_num(errors)) if np.isfinite(values).any() else 100
    ax.set_ylim(0, min(105, max(10.0, top * 1.15)))
    ax.set_title("mean@n and pass@k per report (error bars: ± stderr of mean@n over problems)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
