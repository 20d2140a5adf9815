"""Evaluation reports: ``report.json``, ``summary.md`` and ``samples.jsonl``, reading them back, the
flat ``eval/*`` metrics for a logger, and the text helpers the comparison and the command share."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.eval.runner import EvalResult

REPORT_FILE = "report.json"
SUMMARY_FILE = "summary.md"
SAMPLES_FILE = "samples.jsonl"
REQUIRED_REPORT_FIELDS = ("mean_at_n", "pass_at_k", "n", "num_problems")


def flat_metrics(report: Mapping[str, Any], prefix: str = "eval", *, with_groups: bool = True) -> dict[str, float]:
    """Flatten a report into ``{"eval/mean_at_n": ..., "eval/pass@4": ..., "eval/by_type/goal:Angle": ...}``
    for a metrics logger (the group entries are their mean@n)."""
    p = f"{prefix}/" if prefix else ""
    out = {f"{p}{key}": float(report[key]) for key in (
        "mean_at_n", "mean_at_n_stderr", "mean_score", "format_error_rate", "mean_completion_tokens",
        "truncation_rate", "tokens_generated") if key in report}
    out.update({f"{p}pass@{k}": float(v) for k, v in report["pass_at_k"].items()})
    if with_groups:
        for group in ("by_type", "by_difficulty"):
            for name, metrics in report.get(group, {}).items():
                out[f"{p}{group}/{name}"] = float(metrics["mean_at_n"])
        for breakdown, groups in report.get("breakdowns", {}).items():
            for name, metrics in groups.items():
                out[f"{p}{breakdown}/{name}"] = float(metrics["mean_at_n"])
    if "timing" in report:
        out[f"{p}seconds"] = float(report["timing"]["total_seconds"])
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def percent(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def print_rich_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
                      notes: Sequence[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)
    for note in notes:
        console.print(note.lstrip("- "), style="yellow")


def summary_markdown(report: Mapping[str, Any]) -> str:
    """A human-readable summary of one report (percentages)."""
    config = report.get("config", {})
    title = config.get("label") or config.get("model") or "evaluation"
    lines = [f"# {title}", ""]
    setting = [f"{key}: `{config[key]}`" for key in ("model", "task", "benchmark", "data", "split", "engine")
               if config.get(key)]
    if config.get("protocol_setting"):
        setting.append(f"protocol: {config['protocol_setting']}")
    sampling = report.get("sampling", {})
    setting.append(f"sampling: n={report['n']}, temperature={sampling.get('temperature')}, "
                   f"top_p={sampling.get('top_p')}, max_new_tokens={sampling.get('max_new_tokens')}, "
                   f"seed={sampling.get('seed')}")
    lines += [f"- {s}" for s in setting] + [""]
    n = report["n"]
    main_rows = [
        ("problems", report["num_problems"]),
        (f"mean@{n} (Pass@1 over {n} samples) %",
         f"{percent(report['mean_at_n'])} ± {percent(report.get('mean_at_n_stderr'))}"),
        *[(f"pass@{k} %", percent(v)) for k, v in sorted(report["pass_at_k"].items(), key=lambda kv: int(kv[0]))],
        ("mean score", f"{report.get('mean_score', float('nan')):.4f}"),
        ("format errors %", percent(report.get("format_error_rate"))),
        ("truncated %", percent(report.get("truncation_rate"))),
        ("tokens generated", report.get("tokens_generated", "-")),
        ("mean completion tokens", f"{report.get('mean_completion_tokens', float('nan')):.1f}"),
    ]
    timing = report.get("timing")
    if timing:
        main_rows.append(("seconds", f"{timing['total_seconds']:.1f}"))
        main_rows.append(("tokens / s (generation)", f"{timing['tokens_per_second']:.1f}"))
    lines += [markdown_table(["metric", "value"], main_rows), ""]
    top_k = max((int(k) for k in report["pass_at_k"]), default=n)
    sections = [("type", "By problem type", report.get("by_type")),
                ("difficulty", "By difficulty", report.get("by_difficulty")),
                *[(name, f"By {name} (official breakdown)", groups)
                  for name, groups in (report.get("breakdowns") or {}).items()]]
    for column, heading, groups in sections:
        if not groups:
            continue
        rows = [(name, g["num_problems"], percent(g["mean_at_n"]), percent(_get_k(g["pass_at_k"], top_k)))
                for name, g in groups.items()]
        lines += [f"## {heading}", "", markdown_table([column, "problems", f"mean@{n} %", f"pass@{top_k} %"],
                                                       rows), ""]
    return "\n".join(lines)


def _get_k(values: Mapping[Any, float], k: int) -> float:
    """``values[k]`` whether the keys are ints (in memory) or strings (read back from JSON)."""
    if k in values:
        return values[k]
    return values.get(str(k), float("nan"))


def write_report(result: EvalResult, output_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``summary.md`` and ``samples.jsonl`` (every sample with its verdict)
    into ``output_dir`` (created if needed). Returns the paths by name."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / REPORT_FILE, "summary": out / SUMMARY_FILE, "samples": out / SAMPLES_FILE}
    paths["report"].write_text(json.dumps(result.report, indent=2, default=_json_default) + "\n")
    paths["summary"].write_text(summary_markdown(result.report) + "\n")
    with paths["samples"].open("w") as handle:
        for sample in result.samples:
            handle.write(json.dumps(sample, ensure_ascii=False, default=_json_default) + "\n")
    return paths


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``report.json`` (or the folder holding one); ``pass_at_k`` keys come back as ints."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation report at {path}; pass a report.json or the --output folder of "
                                "`mmdps eval`")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    missing = [key for key in REQUIRED_REPORT_FIELDS if key not in report]
    if missing:
        raise ValueError(f"{path} is not an mmdps evaluation report: it lacks {missing}")
    report["pass_at_k"] = {int(k): v for k, v in report["pass_at_k"].items()}
    groups = [report.get("by_type", {}), report.get("by_difficulty", {}), *report.get("breakdowns", {}).values()]
    for group in groups:
        for metrics in group.values():
            metrics["pass_at_k"] = {int(k): v for k, v in metrics.get("pass_at_k", {}).items()}
    report["_path"] = str(path)
    return report
