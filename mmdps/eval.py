"""Evaluation: ``mmdps eval`` and the functions the trainer calls to evaluate during training.

Every problem gets ``n`` sampled completions, each scored by the item's verifier. The report gives

* ``mean_at_n``: the mean accuracy over all ``n`` samples of all problems (the paper's "Pass@1, mean
  of 16 samples"), with its standard error across problems;
* ``pass_at_k``: the unbiased pass@k estimator of Chen et al. (2021) for each ``k <= n``;
* accuracy by problem type (``by_type``) and difficulty (``by_difficulty``) when items carry them,
  the format-error rate, tokens generated, the truncation rate and timings.

Library use (the trainer's eval-every-N-steps)::

    result = evaluate_items(engine, items, n=16, sampling=SamplingParams(max_new_tokens=1024, temperature=0.6))
    logger.log(flat_metrics(result.report, prefix="eval"), step=step)
    write_report(result, "runs/x/eval/step_100")

Command line::

    mmdps eval --model PATH --task geometry3k --data DIR --output out/base
    mmdps eval --compare out/base out/dps --output out/compare
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from mmdps.rollout.base import SamplingParams

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.data.item import Item
    from mmdps.rollout.base import RolloutEngine

REPORT_FILE = "report.json"
SUMMARY_FILE = "summary.md"
SAMPLES_FILE = "samples.jsonl"
COMPARISON_TABLE_FILE = "comparison.md"
COMPARISON_PLOT_FILE = "comparison.png"
REQUIRED_REPORT_FIELDS = ("mean_at_n", "pass_at_k", "n", "num_problems")


# ---------------------------------------------------------------------------------------------- pass@k
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct among ``n`` samples (Chen et al., 2021).

    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` so that no huge
    binomial coefficient is ever formed.
    """
    n, c, k = int(n), int(c), int(k)
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_per_problem(n: int, correct: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Vectorized :func:`pass_at_k` over problems that all have ``n`` samples: one value per entry
    of ``correct`` (the number of correct samples of each problem)."""
    n, k = int(n), int(k)
    correct = np.asarray(correct, dtype=np.int64)
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs n >= 1 and 1 <= k <= n, got n={n}, k={k}")
    if correct.size and (correct.min() < 0 or correct.max() > n):
        raise ValueError(f"correct counts must lie in [0, {n}], got {correct.min()}..{correct.max()}")
    # survive[c] = prod of the last c factors (1 - k/i), i = n-c+1..n: the chance that k samples drawn
    # without replacement all miss the c correct ones. A factor is 0 at i == k, so n - c < k gives 0.
    factors = 1.0 - k / np.arange(n, 0, -1, dtype=np.float64)
    survive = np.concatenate([[1.0], np.cumprod(factors)])
    return 1.0 - survive[correct]


def default_ks(n: int) -> list[int]:
    """Powers of two up to ``n``, and ``n`` itself: ``default_ks(16) == [1, 2, 4, 8, 16]``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks = [1 << e for e in range(n.bit_length()) if (1 << e) <= n]
    return sorted(set(ks) | {n})


# ---------------------------------------------------------------------------------------------- grouping
def problem_types(metadata: Mapping[str, Any]) -> list[str]:
    """The problem types of an item, from its metadata, as flat labels.

    ``problem_type`` may be a string, a list of strings, or a mapping of kind -> type(s) (e.g.
    ``{"graph": ["Circle"], "goal": ["Angle"]}``, giving ``graph:Circle`` and ``goal:Angle``). The raw
    Geometry3K keys ``problem_type_graph`` / ``problem_type_goal`` are understood too. A problem with
    several types counts in each of them.
    """
    labels: list[str] = []

    def add(prefix: str, value: Any, skip: Iterable[str] = ()) -> None:
        values = value if isinstance(value, (list, tuple, set)) else [value]
        for v in values:
            text = "" if v is None else str(v).strip()
            if text and text not in skip:
                labels.append(f"{prefix}{text}")

    for kind in ("graph", "goal"):
        add(f"{kind}:", metadata.get(f"problem_type_{kind}"))
    # A bare type that repeats one of the prefixed ones (the geometry pack sets problem_type to the first
    # goal type) would count the problem twice under two names.
    covered = {label.split(":", 1)[1] for label in labels}
    value = metadata.get("problem_type")
    if isinstance(value, Mapping):
        for kind, types in value.items():
            add(f"{kind}:", types)
    elif value is not None:
        add("", value, skip=covered)
    return list(dict.fromkeys(labels))  # de-duplicated, first-seen order


def problem_difficulty(metadata: Mapping[str, Any]) -> str | None:
    """``metadata["difficulty"]`` (or MATH's ``level``) as a string, or None."""
    for key in ("difficulty", "level"):
        value = metadata.get(key)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return None


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class EvalResult:
    """What :func:`evaluate_items` returns.

    Attributes:
        report: the aggregate metrics (JSON-serialisable except that ``pass_at_k`` keys are ints).
        samples: one dict per sample: ``item_id``, ``sample``, ``completion``, ``score``, ``acc``,
            ``format``, ``correct``, ``tokens``, ``truncated``, ``finish_reason``, ``ground_truth``.
        problems: one dict per problem: ``item_id``, ``n``, ``num_correct``, ``success_rate``,
            ``mean_score``, ``types``, ``difficulty`` (e.g. to initialise a prompt selector).
    """

    report: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)


def _group_metrics(problems: Sequence[dict[str, Any]], n: int, ks: Sequence[int]) -> dict[str, Any]:
    correct = np.array([p["num_correct"] for p in problems], dtype=np.int64)
    return {
        "num_problems": len(problems),
        "mean_at_n": float(correct.mean() / n) if len(problems) else float("nan"),
        "pass_at_k": {k: float(pass_at_k_per_problem(n, correct, k).mean()) for k in ks},
    }


def _grouped(problems: Sequence[dict[str, Any]], keys: Callable[[dict], Iterable[str]], n: int,
             ks: Sequence[int]) -> dict[str, Any]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for problem in problems:
        for key in keys(problem):
            groups[key].append(problem)
    return {key: _group_metrics(groups[key], n, ks) for key in sorted(groups, key=_natural_key)}


def _natural_key(label: str) -> tuple[float, str]:
    """Numeric labels (difficulty 2.0 < 10.0) in numeric order, then the others alphabetically."""
    try:
        return float(label), ""
    except ValueError:
        return math.inf, label


def evaluate_items(engine: "RolloutEngine", items: Sequence["Item"], *, n: int = 16,
                   sampling: SamplingParams | None = None, ks: Sequence[int] | None = None, batch_size: int = 8,
                   progress: bool = True, config: Mapping[str, Any] | None = None) -> EvalResult:
    """Sample ``n`` completions per item with ``engine``, score them with each item's verifier and
    aggregate the metrics.

    Args:
        engine: any :class:`~mmdps.rollout.base.RolloutEngine` (HF or vLLM; the trainer's own engine).
        items: the problems. Ids should be unique (reports and samples refer to them).
        n: samples per problem.
        sampling: how to sample; defaults to the paper's validation setting (T=0.6, top-p 1.0).
            When ``sampling.seed`` is set, the batch starting at item ``i`` uses ``seed + i``, so
            results are reproducible for a given ``batch_size``.
        ks: the k of pass@k (each ``1 <= k <= n``); default :func:`default_ks`.
        batch_size: prompts per ``engine.generate`` call (each call makes ``batch_size * n`` samples).
        progress: show a progress bar over samples.
        config: free-form settings (model path, task, data, ...) copied into ``report["config"]``.

    A completion counts as correct when its verifier's ``acc`` is >= 1, and as a format error when
    its ``format`` is < 1.
    """
    if not items:
        raise ValueError("evaluate_items: no items to evaluate (check the data path, split and --limit)")
    if n < 1:
        raise ValueError(f"evaluate_items: n must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"evaluate_items: batch_size must be >= 1, got {batch_size}")
    sampling = sampling or SamplingParams(max_new_tokens=1024, temperature=0.6, top_p=1.0)
    ks = sorted(set(int(k) for k in ks)) if ks else default_ks(n)
    if ks[0] < 1 or ks[-1] > n:
        raise ValueError(f"evaluate_items: every k of pass@k must lie in [1, n={n}], got {ks}")
    for item in items:
        if not item.verifier:
            raise ValueError(f"item {item.id} (task {item.task!r}) names no verifier; set Item.verifier")
    if len({item.id for item in items}) < len(items):
        warnings.warn("evaluate_items: item ids are not unique, so samples.jsonl cannot tell those problems "
                      "apart; the metrics are unaffected", stacklevel=2)

    from tqdm import tqdm

    from mmdps import verifiers

    # Resolve every verifier before generating, so an unknown name fails in seconds, not after sampling.
    verifier_of = {name: verifiers.get(name) for name in {item.verifier for item in items}}
    samples: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    generation_seconds = scoring_seconds = 0.0
    started = time.perf_counter()
    bar = tqdm(total=len(items) * n, unit="sample", desc="eval", disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, len(items), batch_size):
            batch = list(items[start:start + batch_size])
            batch_sampling = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + start)
            t0 = time.perf_counter()
            outputs = engine.generate(batch, n, batch_sampling)
            generation_seconds += time.perf_counter() - t0
            if len(outputs) != len(batch) or any(len(row) != n for row in outputs):
                shape = [len(row) for row in outputs]
                raise RuntimeError(f"{type(engine).__name__}.generate returned {shape} completions for "
                                   f"{len(batch)} items x k={n}; expected a {len(batch)} x {n} nested list")
            t0 = time.perf_counter()
            for item, completions in zip(batch, outputs):
                problems.append(_score_item(item, completions, verifier_of[item.verifier], samples))
            scoring_seconds += time.perf_counter() - t0
            bar.update(len(batch) * n)
            if progress:
                done = np.array([p["num_correct"] for p in problems])
                bar.set_postfix(mean_at_n=f"{done.mean() / n:.3f}")
    finally:
        bar.close()
    total_seconds = time.perf_counter() - started
    report = _build_report(problems, samples, n=n, ks=ks, sampling=sampling, config=config)
    tokens = report["tokens_generated"]
    report["timing"] = {
        "total_seconds": total_seconds,
        "generation_seconds": generation_seconds,
        "scoring_seconds": scoring_seconds,
        "samples_per_second": len(samples) / total_seconds if total_seconds > 0 else float("nan"),
        "tokens_per_second": tokens / generation_seconds if generation_seconds > 0 else float("nan"),
    }
    return EvalResult(report=report, samples=samples, problems=problems)


def _score_item(item: "Item", completions: Sequence[Any], verify: Callable[..., dict],
                samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Score the completions of one item, append its sample records and return its problem record."""
    num_correct = 0
    scores: list[float] = []
    for index, completion in enumerate(completions):
        try:
            verdict = verify(completion.text, item.ground_truth, **item.metadata)
        except Exception as error:  # verifiers never raise on model output: a bad ground truth or a bug
            kind = ValueError if isinstance(error, ValueError) else RuntimeError
            raise kind(f"verifier {item.verifier!r} failed on item {item.id} (task {item.task!r}): {error}") from error
        acc, score, fmt = float(verdict["acc"]), float(verdict["score"]), float(verdict["format"])
        correct = acc >= 1.0
        num_correct += correct
        scores.append(score)
        samples.append({
            "item_id": item.id,
            "sample": index,
            "completion": completion.text,
            "score": score,
            "acc": acc,
            "format": fmt,
            "correct": correct,
            "tokens": len(completion.token_ids),
            "truncated": bool(completion.truncated),
            "finish_reason": completion.finish_reason,
            "ground_truth": item.ground_truth,
        })
    return {
        "item_id": item.id,
        "n": len(completions),
        "num_correct": num_correct,
        "success_rate": num_correct / len(completions),
        "mean_score": float(np.mean(scores)),
        "types": problem_types(item.metadata),
        "difficulty": problem_difficulty(item.metadata),
        "task": item.task,
    }


def _build_report(problems: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]], *, n: int,
                  ks: Sequence[int], sampling: SamplingParams, config: Mapping[str, Any] | None) -> dict[str, Any]:
    from mmdps import __version__

    correct = np.array([p["num_correct"] for p in problems], dtype=np.int64)
    rates = correct / n
    tokens = np.array([s["tokens"] for s in samples], dtype=np.int64)
    report: dict[str, Any] = {
        "task": ",".join(sorted({p["task"] for p in problems if p["task"]})),
        "n": n,
        "num_problems": len(problems),
        "num_samples": len(samples),
        "mean_at_n": float(rates.mean()),
        # standard error of mean@n across problems: the noise floor when comparing checkpoints
        "mean_at_n_stderr": float(rates.std(ddof=1) / math.sqrt(len(rates))) if len(rates) > 1 else 0.0,
        "pass_at_k": {k: float(pass_at_k_per_problem(n, correct, k).mean()) for k in ks},
        "mean_score": float(np.mean([s["score"] for s in samples])),
        "format_error_rate": float(np.mean([s["format"] < 1.0 for s in samples])),
        "tokens_generated": int(tokens.sum()),
        "mean_completion_tokens": float(tokens.mean()),
        "max_completion_tokens": int(tokens.max()),
        "truncation_rate": float(np.mean([s["truncated"] for s in samples])),
        "solved_fraction": float(np.mean(correct > 0)),
        "unsolved_fraction": float(np.mean(correct == 0)),
        "by_type": _grouped(problems, lambda p: p["types"], n, ks),
        "by_difficulty": _grouped(problems, lambda p: [p["difficulty"]] if p["difficulty"] else [], n, ks),
        "sampling": asdict(sampling),
        "config": dict(config or {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mmdps_version": __version__,
    }
    return report


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
    if "timing" in report:
        out[f"{p}seconds"] = float(report["timing"]["total_seconds"])
    return out


# ---------------------------------------------------------------------------------------------- writing
def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _pct(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def _markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(report: Mapping[str, Any]) -> str:
    """A human-readable summary of one report (percentages)."""
    config = report.get("config", {})
    title = config.get("label") or config.get("model") or "evaluation"
    lines = [f"# {title}", ""]
    setting = [f"{key}: `{config[key]}`" for key in ("model", "task", "data", "split", "engine") if config.get(key)]
    sampling = report.get("sampling", {})
    setting.append(f"sampling: n={report['n']}, temperature={sampling.get('temperature')}, "
                   f"top_p={sampling.get('top_p')}, max_new_tokens={sampling.get('max_new_tokens')}, "
                   f"seed={sampling.get('seed')}")
    lines += [f"- {s}" for s in setting] + [""]
    n = report["n"]
    main_rows = [
        ("problems", report["num_problems"]),
        (f"mean@{n} (Pass@1 over {n} samples) %",
         f"{_pct(report['mean_at_n'])} ± {_pct(report.get('mean_at_n_stderr'))}"),
        *[(f"pass@{k} %", _pct(v)) for k, v in sorted(report["pass_at_k"].items(), key=lambda kv: int(kv[0]))],
        ("mean score", f"{report.get('mean_score', float('nan')):.4f}"),
        ("format errors %", _pct(report.get("format_error_rate"))),
        ("truncated %", _pct(report.get("truncation_rate"))),
        ("tokens generated", report.get("tokens_generated", "-")),
        ("mean completion tokens", f"{report.get('mean_completion_tokens', float('nan')):.1f}"),
    ]
    timing = report.get("timing")
    if timing:
        main_rows.append(("seconds", f"{timing['total_seconds']:.1f}"))
        main_rows.append(("tokens / s (generation)", f"{timing['tokens_per_second']:.1f}"))
    lines += [_markdown_table(["metric", "value"], main_rows), ""]
    for group, heading in (("by_type", "By problem type"), ("by_difficulty", "By difficulty")):
        groups = report.get(group) or {}
        if not groups:
            continue
        top_k = max((int(k) for k in report["pass_at_k"]), default=n)
        rows = [(name, g["num_problems"], _pct(g["mean_at_n"]), _pct(_get_k(g["pass_at_k"], top_k)))
                for name, g in groups.items()]
        lines += [f"## {heading}", "", _markdown_table([group[3:], "problems", f"mean@{n} %", f"pass@{top_k} %"],
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
    for group in ("by_type", "by_difficulty"):
        for metrics in report.get(group, {}).values():
            metrics["pass_at_k"] = {int(k): v for k, v in metrics.get("pass_at_k", {}).items()}
    report["_path"] = str(path)
    return report


# ---------------------------------------------------------------------------------------------- comparing
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
    ``comparison.md`` (with a by-type table when the reports have types) and ``comparison.png``
    (grouped bars of mean@n and pass@k)."""
    if not paths:
        raise ValueError("compare_reports needs at least one report")
    reports = [load_report(p) for p in paths]
    names = _labels_for(reports, labels)
    ks = sorted({k for r in reports for k in r["pass_at_k"]})
    headers = ["report", "task", "problems", "n", "mean@n %", "± stderr", *[f"pass@{k} %" for k in ks],
               "format err %", "mean tokens", "truncated %"]
    rows = []
    for name, r in zip(names, reports):
        rows.append([name, r.get("task") or r.get("config", {}).get("task", "-"), str(r["num_problems"]), str(r["n"]),
                     _pct(r["mean_at_n"]), _pct(r.get("mean_at_n_stderr")),
                     *[_pct(r["pass_at_k"].get(k)) for k in ks], _pct(r.get("format_error_rate")),
                     f"{r.get('mean_completion_tokens', float('nan')):.1f}", _pct(r.get("truncation_rate"))])
    notes = []
    for key in ("task", "num_problems", "n"):
        if len({str(r.get(key)) for r in reports}) > 1:
            notes.append(f"- The reports differ in `{key}`: the numbers are not directly comparable.")
    sections = ["# Evaluation comparison", "", _markdown_table(headers, rows), ""]
    if notes:
        sections += [*notes, ""]
    types = sorted({t for r in reports for t in r.get("by_type", {})})
    if types:
        type_rows = [[t, *[_pct(r.get("by_type", {}).get(t, {}).get("mean_at_n")) for r in reports]] for t in types]
        sections += ["## mean@n % by problem type", "", _markdown_table(["type", *names], type_rows), ""]
    comparison = Comparison(labels=names, headers=headers, rows=rows, markdown="\n".join(sections))
    if print_table:
        _print_rich_table("Evaluation comparison", headers, rows, notes)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        comparison.files["table"] = out / COMPARISON_TABLE_FILE
        comparison.files["table"].write_text(comparison.markdown + "\n")
        comparison.files["plot"] = _plot_comparison(names, reports, ks, out / COMPARISON_PLOT_FILE)
    return comparison


def _print_rich_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
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


def _plot_comparison(names: Sequence[str], reports: Sequence[dict[str, Any]], ks: Sequence[int], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: this only writes a file
    import matplotlib.pyplot as plt

    metrics = ["mean@n", *[f"pass@{k}" for k in ks]]
    values = np.array([[100 * r["mean_at_n"], *[100 * r["pass_at_k"].get(k, np.nan) for k in ks]] for r in reports])
    width = 0.8 / len(reports)
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics) * max(1, len(reports)) / 2 + 2), 4.5))
    for i, (name, row) in enumerate(zip(names, values)):
        bars = ax.bar(x + (i - (len(reports) - 1) / 2) * width, row, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, metrics)
    ax.set_ylabel("%")
    ax.set_ylim(0, min(105, max(10.0, np.nanmax(values) * 1.15 if np.isfinite(values).any() else 100)))
    ax.set_title("mean@n and pass@k per report")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- CLI
def configure_parser(parser) -> None:
    """Arguments of ``mmdps eval``."""
    parser.description = ("Evaluate a model on a benchmark (mean@n, pass@k, accuracy by type), "
                          "or put several reports side by side with --compare.")
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--model", help="model folder (HF layout; for a training checkpoint its model/ folder) "
                                      "or hub id available offline")
    what.add_argument("--task", help="task pack: geometry3k, geometry, math, gsm8k, countdown, ...")
    what.add_argument("--data", help="data file or folder for the task pack; omit or 'procedural' for "
                                     "a generated test set (packs with a generator)")
    what.add_argument("--split", default="test", help="split name passed to the pack (default: test)")
    what.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    what.add_argument("--num", type=int, default=None, help="procedural sets: how many problems to generate")
    what.add_argument("--columns", default=None,
                      help="column mapping for generic files, e.g. question=query,answer=label,image=img_path")
    what.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="extra keyword for the pack's loader (repeatable; values parsed as JSON when possible)")
    what.add_argument("--template", default=None, help="prompt template name or format string with {question}")
    what.add_argument("--system-prompt", default=None, help="system message put before every prompt")
    what.add_argument("--skip-invalid", action="store_true", help="skip bad rows instead of failing")

    gen = parser.add_argument_group("sampling (defaults: the paper's validation setting)")
    gen.add_argument("--n", type=int, default=16, help="samples per problem (default 16)")
    gen.add_argument("--ks", type=_int_list, default=None,
                     help="comma-separated k for pass@k (default: powers of two <= n, and n)")
    gen.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6; 0 = greedy)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1.0: off)")
    gen.add_argument("--top-k", type=int, default=0, help="top-k sampling (default 0: off)")
    gen.add_argument("--max-new-tokens", type=int, default=1024, help="completion length limit (default 1024)")
    gen.add_argument("--seed", type=int, default=0, help="seed of data generation and sampling")

    eng = parser.add_argument_group("engine")
    eng.add_argument("--engine", choices=("hf", "vllm"), default="hf", help="rollout engine (default hf)")
    eng.add_argument("--batch-size", type=int, default=None,
                     help="prompts per generate call (default: 8 for hf, all at once for vllm)")
    eng.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                     help="model dtype (default auto: bfloat16 on a GPU, float32 on the CPU)")
    eng.add_argument("--device", default=None, help="torch device for the hf engine (default: cuda if available)")
    eng.add_argument("--max-prompt-length", type=int, default=1024, help="prompt token limit (default 1024)")
    eng.add_argument("--min-pixels", type=int, default=None, help="VL models: lower bound of image pixels")
    eng.add_argument("--max-pixels", type=int, default=None, help="VL models: upper bound of image pixels")
    eng.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vllm only (default 0.85)")
    eng.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm only (default 1)")

    out = parser.add_argument_group("output")
    out.add_argument("--output", help="folder for report.json, summary.md, samples.jsonl (or the comparison)")
    out.add_argument("--label", default=None, help="name of this run in summaries and comparisons")
    out.add_argument("--compare", nargs="+", metavar="REPORT", default=None,
                     help="compare report.json files (or their folders) instead of evaluating")
    out.add_argument("--labels", nargs="+", default=None, help="names of the compared reports, in order")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")


def _int_list(text: str) -> list[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]`` (argparse names this function in its error message)."""
    return [int(k) for k in text.split(",") if k.strip()]


def _parse_mapping(text: str, what: str) -> dict[str, str]:
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{what}: {part!r} is not KEY=VALUE (e.g. question=query,answer=label)")
        mapping[key.strip()] = value.strip()
    return mapping


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--option {text!r} is not KEY=VALUE")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def load_eval_items(task: str, data: str | None, *, split: str = "test", limit: int | None = None, seed: int = 0,
                    num: int | None = None, columns: Mapping[str, str] | None = None, template: str | None = None,
                    system_prompt: str | None = None, skip_invalid: bool = False, **options: Any) -> list["Item"]:
    """Load a test set through its task pack (``data`` None or ``"procedural"``: generated)."""
    from mmdps import tasks

    pack_options = {k: v for k, v in (("template", template), ("system_prompt", system_prompt)) if v is not None}
    pack = tasks.get(task, **pack_options)
    source = None if data in (None, "", "procedural") else data
    if num is not None:
        options["num"] = num
    if columns:
        options["columns"] = dict(columns)
    return pack.load(source, split=split, limit=limit, seed=seed, skip_invalid=skip_invalid, **options)


def build_engine(name: str, model_path: str, *, dtype: str = "auto", device: str | None = None,
                 max_prompt_length: int = 1024, max_new_tokens: int = 1024, min_pixels: int | None = None,
                 max_pixels: int | None = None, seed: int = 0, max_images: int = 1,
                 gpu_memory_utilization: float = 0.85, tensor_parallel_size: int = 1) -> "RolloutEngine":
    """Load ``model_path`` into the ``hf`` or ``vllm`` rollout engine."""
    from mmdps.models.loading import load_policy, load_processor

    pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    if name == "hf":
        from mmdps.rollout.hf import HFEngine

        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else None  # None: stay on the CPU
        model, processor = load_policy(model_path, dtype=dtype, device=device)
        model.eval()
        return HFEngine(model, processor, max_prompt_length=max_prompt_length, **pixels)
    if name == "vllm":
        # vLLM reads the checkpoint itself: no HF copy of the weights to load, and nothing to sync.
        from mmdps.models.loading import is_lora_adapter

        if is_lora_adapter(model_path):
            raise ValueError(f"--engine vllm loads full model folders and {model_path} is a LoRA adapter: use "
                             "--engine hf (which merges the adapter on load), or pass a merged copy written by "
                             "mmdps.models.loading.save_merged_adapter(adapter_folder, out_folder)")
        from mmdps.rollout.vllm import VLLMEngine

        return VLLMEngine(model_path, load_processor(model_path), tp=tensor_parallel_size,
                          mem_util=gpu_memory_utilization, max_prompt_length=max_prompt_length,
                          max_completion_length=max_new_tokens, seed=seed, max_images=max(1, max_images),
                          dtype=dtype, return_logprobs=False, **pixels)
    raise ValueError(f"unknown engine {name!r}; use 'hf' or 'vllm'")


def _seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _print_summary(report: Mapping[str, Any], paths: Mapping[str, Path]) -> None:
    n = report["n"]
    rows = [["problems", str(report["num_problems"])],
            [f"mean@{n} %", f"{_pct(report['mean_at_n'])} ± {_pct(report['mean_at_n_stderr'])}"],
            *[[f"pass@{k} %", _pct(v)] for k, v in report["pass_at_k"].items()],
            ["format errors %", _pct(report["format_error_rate"])],
            ["truncated %", _pct(report["truncation_rate"])],
            ["mean completion tokens", f"{report['mean_completion_tokens']:.1f}"],
            ["seconds", f"{report['timing']['total_seconds']:.1f}"]]
    _print_rich_table(f"{report['config'].get('label') or 'evaluation'}", ["metric", "value"], rows)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


def fail(message: str) -> int:
    from mmdps.cli import fail as cli_fail

    return cli_fail("eval", message)


def run(args) -> int:
    """Entry point of ``mmdps eval``."""
    if args.compare:
        try:
            compare_reports(args.compare, args.output, labels=args.labels)
        except (FileNotFoundError, ValueError) as error:
            return fail(str(error))
        if args.output:
            print(f"wrote {Path(args.output) / COMPARISON_TABLE_FILE} and {Path(args.output) / COMPARISON_PLOT_FILE}")
        return 0
    missing = [flag for flag, value in (("--model", args.model), ("--task", args.task), ("--output", args.output))
               if not value]
    if missing:
        return fail(f"{', '.join(missing)} required (or use --compare REPORT ...)")
    if args.n < 1 or args.max_new_tokens < 1:
        return fail("--n and --max-new-tokens must be >= 1")
    if args.ks and not all(1 <= k <= args.n for k in args.ks):
        return fail(f"every k of --ks must lie in [1, --n={args.n}], got {args.ks}")
    try:
        options = dict(_parse_option(o) for o in args.option)
        columns = _parse_mapping(args.columns, "--columns") if args.columns else None
        if columns and "image" in columns and "images" not in columns:  # the loaders' key is "images"
            columns["images"] = columns.pop("image")
        items = load_eval_items(args.task, args.data, split=args.split, limit=args.limit, seed=args.seed,
                                num=args.num, columns=columns, template=args.template,
                                system_prompt=args.system_prompt, skip_invalid=args.skip_invalid, **options)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:  # TypeError: a third-party pack's loader
        return fail(str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error))
    if not items:
        return fail(f"task {args.task!r} loaded no problems from {args.data or 'its generator'} "
                    f"(split {args.split!r}, limit {args.limit})")
    _seed_everything(args.seed)
    batch_size = args.batch_size or (8 if args.engine == "hf" else len(items))
    try:
        engine = build_engine(args.engine, args.model, dtype=args.dtype, device=args.device,
                              max_prompt_length=args.max_prompt_length, min_pixels=args.min_pixels,
                              max_pixels=args.max_pixels, seed=args.seed, max_new_tokens=args.max_new_tokens,
                              max_images=max(len(item.images) for item in items),
                              gpu_memory_utilization=args.gpu_memory_utilization,
                              tensor_parallel_size=args.tensor_parallel_size)
    except (FileNotFoundError, ValueError) as error:  # a mistyped --model path, an adapter for vllm
        return fail(str(error))
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              top_k=args.top_k, seed=args.seed)
    config = {"label": args.label or Path(args.output).name, "model": args.model, "task": args.task,
              "data": args.data or "procedural", "split": args.split, "limit": args.limit, "engine": args.engine,
              "batch_size": batch_size, "dtype": args.dtype, "template": args.template, "seed": args.seed,
              "min_pixels": args.min_pixels, "max_pixels": args.max_pixels, "columns": columns, "options": options}
    try:
        result = evaluate_items(engine, items, n=args.n, sampling=sampling, ks=args.ks, batch_size=batch_size,
                                progress=not args.no_progress, config=config)
    except ValueError as error:
        return fail(str(error))
    finally:
        engine.close()
    paths = write_report(result, args.output)
    _print_summary(result.report, paths)
    return 0
