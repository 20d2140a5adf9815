"""Sampling and scoring a test set: :func:`evaluate_items` (also the trainer's eval-every-N-steps) and
:func:`load_eval_items` (a test set through its task pack), or :func:`load_benchmark_items` (a
published benchmark through its preset)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from mmdps.eval.metrics import (
    breakdown_metrics,
    default_ks,
    metrics_by_group,
    pass_at_k_per_problem,
    problem_breakdowns,
    problem_difficulty,
    problem_types,
)
from mmdps.rollout.base import SamplingParams
from mmdps.verifiers import base as verifier_base

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.data.item import Item
    from mmdps.rollout.base import RolloutEngine
    from mmdps.rollout.scoring import Group


@dataclass
class EvalResult:
    """What :func:`evaluate_items` returns.

    Attributes:
        report: the aggregate metrics (JSON-serialisable except that ``pass_at_k`` keys are ints).
        samples: one dict per sample: ``item_id``, ``sample``, ``completion``, ``score``, ``acc``,
            ``format``, ``correct``, ``tokens``, ``truncated``, ``finish_reason``, ``ground_truth``.
        problems: one dict per problem: ``item_id``, ``n``, ``num_correct``, ``success_rate``,
            ``mean_score``, ``types``, ``difficulty``, ``breakdowns`` (e.g. to initialise a prompt selector).
    """

    report: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)


def evaluate_items(engine: RolloutEngine, items: Sequence[Item], *, n: int = 16,
                   sampling: SamplingParams | None = None, ks: Sequence[int] | None = None, batch_size: int = 8,
                   progress: bool = True, config: Mapping[str, Any] | None = None, shard: tuple[int, int] | None = None,
                   gather: Callable[[Any], list[Any]] | None = None) -> EvalResult:
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
        shard: ``(rank, world)`` to split the work over ``world`` processes: this one samples the batches
            ``rank, rank + world, ...`` only. Batches and their seeds are those of a one-process run, so the
            completions do not depend on ``world`` (with more processes than batches some have none).
        gather: with ``world > 1``, ``gather(part) -> [part of rank 0, part of rank 1, ...]`` run on every
            process (e.g. :func:`mmdps.training.collectives.gather_with_timeout`); each process then returns
            the result over all items.

    Completions are scored by :func:`mmdps.verifiers.score_completion`; one counts as correct by
    :attr:`~mmdps.verifiers.Verdict.correct`, and as a format error when its ``format`` is < 1.
    """
    if not items:
        raise ValueError("evaluate_items: no items to evaluate (check the data path, split and --limit)")
    if n < 1:
        raise ValueError(f"evaluate_items: n must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"evaluate_items: batch_size must be >= 1, got {batch_size}")
    rank, world = _check_shard(shard, gather)
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

    from mmdps import verifiers
    from mmdps.logging_utils import ProgressBar
    from mmdps.rollout.scoring import rollout_and_score

    # Resolve every verifier before generating, so an unknown name fails in seconds, not after sampling.
    for name in {item.verifier for item in items}:
        verifiers.get(name)
    verifier_base.new_run()  # the first verifier error of this evaluation is logged as a warning
    started = time.perf_counter()
    starts = list(range(0, len(items), batch_size))[rank::world]
    local: dict[str, Any] = {"batches": [], "generation_seconds": 0.0, "scoring_seconds": 0.0, "verifier_errors": 0}
    done: list[int] = []
    bar = ProgressBar(sum(len(items[start:start + batch_size]) for start in starts) * n, enabled=progress, label="eval")
    try:
        for start in starts:
            batch = list(items[start:start + batch_size])
            # the seed depends on the batch's place in the whole list only, not on who samples it
            batch_sampling = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + start)
            scored = rollout_and_score(engine, batch, n, batch_sampling)
            local["generation_seconds"] += scored.generate_seconds
            local["scoring_seconds"] += scored.score_seconds
            local["verifier_errors"] += scored.verifier_errors
            batch_samples: list[dict[str, Any]] = []
            batch_problems = [_problem_record(group, batch_samples) for group in scored.groups]
            local["batches"].append((start, batch_problems, batch_samples))
            done.extend(p["num_correct"] for p in batch_problems)
            bar.update(len(done) * n, f"mean@n {np.mean(done) / n:.3f}")
    finally:
        bar.close()
    local["seconds"] = time.perf_counter() - started
    parts = gather(local) if gather is not None and world > 1 else [local]
    batches = sorted((batch for part in parts for batch in part["batches"]), key=lambda batch: batch[0])
    problems = [problem for _, batch_problems, _ in batches for problem in batch_problems]
    samples = [sample for _, _, batch_samples in batches for sample in batch_samples]
    total_seconds = max(part["seconds"] for part in parts)
    generation_seconds = sum(part["generation_seconds"] for part in parts)  # summed over processes
    report = _build_report(problems, samples, n=n, ks=ks, sampling=sampling, config=config)
    # Verifier calls that raised (each scored 0): a steady count means a verifier bug, not a bad model.
    report["verifier_errors"] = sum(part["verifier_errors"] for part in parts)
    tokens = report["tokens_generated"]
    report["timing"] = {
        "total_seconds": total_seconds,
        "generation_seconds": generation_seconds,
        "scoring_seconds": sum(part["scoring_seconds"] for part in parts),
        "processes": world,
        "samples_per_second": len(samples) / total_seconds if total_seconds > 0 else float("nan"),
        "tokens_per_second": tokens / generation_seconds if generation_seconds > 0 else float("nan"),
    }
    return EvalResult(report=report, samples=samples, problems=problems)


def _check_shard(shard: tuple[int, int] | None, gather: Callable[[Any], list[Any]] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    rank, world = (int(value) for value in shard)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"evaluate_items: shard=(rank, world) needs 0 <= rank < world, got {shard}")
    if world > 1 and gather is None:
        raise ValueError(f"evaluate_items: shard={shard} splits the items over {world} processes, so it needs "
                         "gather= to collect their results (e.g. mmdps.training.collectives.gather_with_timeout)")
    return rank, world


def _problem_record(group: Group, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Append the sample records of one scored group and return its problem record."""
    item = group.item
    assert item is not None  # rollout_and_score sets it
    for index, completion in enumerate(group.completions):
        samples.append({
            "item_id": item.id,
            "sample": index,
            "completion": completion.text,
            "score": float(group.score[index]),
            "acc": float(group.acc[index]),
            "format": float(group.format[index]),
            "correct": bool(verifier_base.is_correct(group.acc[index])),
            "tokens": len(completion.token_ids),
            "truncated": bool(completion.truncated),
            "finish_reason": completion.finish_reason,
            "ground_truth": item.ground_truth,
        })
    return {
        "item_id": item.id,
        "n": group.size,
        "num_correct": group.num_correct,
        "success_rate": group.success_rate,
        "mean_score": float(np.mean(group.score)),
        "types": problem_types(item.metadata),
        "difficulty": problem_difficulty(item.metadata),
        "breakdowns": problem_breakdowns(item.metadata),
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
        "by_type": metrics_by_group(problems, lambda p: p["types"], n, ks),
        "by_difficulty": metrics_by_group(problems, lambda p: [p["difficulty"]] if p["difficulty"] else [], n, ks),
        # a benchmark's official groups under their own names (MathVista's task, skills, ...)
        "breakdowns": breakdown_metrics(problems, n, ks),
        "sampling": asdict(sampling),
        "config": dict(config or {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mmdps_version": __version__,
    }
    return report


def load_eval_items(task: str, data: str | None, *, split: str = "test", limit: int | None = None, seed: int = 0,
                    num: int | None = None, columns: Mapping[str, str] | None = None, template: str | None = None,
                    system_prompt: str | None = None, skip_invalid: bool = False, **options: Any) -> list[Item]:
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


def load_benchmark_items(name: str, data: str | None = None, *, split: str | None = None, limit: int | None = None,
                         template: str | None = None, system_prompt: str | None = None, skip_invalid: bool = False,
                         protocol: str = "official", **options: Any) -> list[Item]:
    """Load a benchmark through its preset (:mod:`mmdps.presets`): ``data`` is a hub id or a local copy
    (default: the preset's hub id), ``split`` defaults to the benchmark's own (e.g. ``testmini``),
    ``protocol`` (``official`` or ``dps``) gives the default template and load options."""
    from mmdps import presets

    preset_options = {k: v for k, v in (("template", template), ("system_prompt", system_prompt)) if v is not None}
    preset = presets.get(name, protocol=protocol, **preset_options)
    return preset.load(data, split=split, limit=limit, skip_invalid=skip_invalid, **options)
