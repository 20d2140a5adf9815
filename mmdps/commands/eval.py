"""``mmdps eval``: evaluate a model on a benchmark, or compare reports (docs/evaluation.md).

    mmdps eval --model PATH --task geometry3k --data DIR --output out/base
    mmdps eval --model PATH --benchmark mathvista --data AI4Math/MathVista --output out/mathvista
    mmdps eval --compare out/base out/dps --output out/compare

The library side is :mod:`mmdps.eval`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdps.config import DTYPES
from mmdps.data.loaders import SkippedRowsWarning
from mmdps.eval.compare import COMPARISON_PLOT_FILE, COMPARISON_TABLE_FILE, compare_reports
from mmdps.eval.report import percent, print_rich_table, write_report
from mmdps.eval.runner import evaluate_items, load_benchmark_items, load_eval_items
from mmdps.rollout.base import SamplingParams
from mmdps.seeding import seed_everything

if TYPE_CHECKING:  # pragma: no cover
    from mmdps.presets.protocols import Protocol
    from mmdps.rollout.base import RolloutEngine

PROTOCOL_CHOICES = ("official", "dps")  # mmdps.presets.protocols.PROTOCOL_NAMES (checked by a test)
PRINTED_GROUPS = 8  # labels printed per breakdown (MathVista has 28 sources); summary.md lists them all


def configure_parser(parser) -> None:
    """Arguments of ``mmdps eval``."""
    parser.description = ("Evaluate a model on a benchmark (mean@n, pass@k, accuracy by type), "
                          "or put several reports side by side with --compare.")
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--model", help="model folder (HF layout; for a training checkpoint its model/ folder) "
                                      "or hub id available offline")
    what.add_argument("--task", help="task pack: geometry3k, geometry, math, gsm8k, countdown, ...")
    what.add_argument("--benchmark", help="benchmark preset instead of a task pack: mathvista, mathverse, geoqa, "
                                          "geoqa_plus, geometry3k (published rows, prompt, scoring, breakdowns)")
    what.add_argument("--data", help="data file or folder for the task pack; omit or 'procedural' for "
                                     "a generated test set (packs with a generator). With --benchmark: a hub "
                                     "dataset id or a local copy (default: the benchmark's hub id)")
    what.add_argument("--split", default=None,
                      help="split name passed to the pack (default: test; a benchmark's own, e.g. testmini)")
    what.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    what.add_argument("--num", type=int, default=None, help="procedural sets: how many problems to generate")
    what.add_argument("--columns", default=None,
                      help="column mapping for generic files, e.g. question=query,answer=label,image=img_path")
    what.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="extra keyword for the pack's loader (repeatable; values parsed as JSON when possible)")
    what.add_argument("--template", default=None, help="prompt template name or format string with {question} "
                                                        "(default: the pack's; with --benchmark the protocol's)")
    what.add_argument("--system-prompt", default=None, help="system message put before every prompt")
    what.add_argument("--skip-invalid", action="store_true", help="skip bad rows instead of failing")
    what.add_argument("--reward-function", action="append", default=None, metavar="FILE.py:FN",
                      help="score with your own reward instead of the task's verifier, as the training config's "
                           "reward_function (repeatable; docs/verifiers.md)")
    what.add_argument("--reward-weights", type=float, nargs="+", default=None,
                      help="one weight per --reward-function (score = the weighted sum)")
    what.add_argument("--success-threshold", type=float, default=None,
                      help="acc = score >= this, for a first reward function whose scores are not all 0 or 1")

    gen = parser.add_argument_group("sampling (defaults: the protocol's, see --protocol)")
    gen.add_argument("--protocol", choices=PROTOCOL_CHOICES, default=None,
                     help="official: the benchmark's published protocol (the default with --benchmark; e.g. MathVista: "
                          "1 greedy answer to the published query, 512 tokens); dps: the DPS paper's validation "
                          "protocol (16 samples, temperature 0.6, top-p 1.0, 1024 tokens, think_boxed prompt; the "
                          "default, and the only one, with --task). An explicit flag below overrides it")
    gen.add_argument("--n", type=int, default=None, help="samples per problem (default: the protocol's; dps: 16)")
    gen.add_argument("--ks", type=_int_list, default=None,
                     help="comma-separated k for pass@k (default: powers of two <= n, and n)")
    gen.add_argument("--temperature", type=float, default=None,
                     help="sampling temperature (0 = greedy; default: the protocol's; dps: 0.6)")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling (default: the protocol's; dps: 1.0)")
    gen.add_argument("--top-k", type=int, default=0, help="top-k sampling (default 0: off)")
    gen.add_argument("--max-new-tokens", type=int, default=None,
                     help="completion length limit (default: the protocol's; dps: 1024)")
    gen.add_argument("--seed", type=int, default=0, help="seed of data generation and sampling")

    eng = parser.add_argument_group("engine")
    eng.add_argument("--engine", choices=("hf", "vllm"), default="hf", help="rollout engine (default hf)")
    eng.add_argument("--batch-size", type=int, default=None,
                     help="prompts per generate call (default: 8 for hf, all at once for vllm)")
    eng.add_argument("--dtype", default="auto", choices=DTYPES,
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


def build_engine(name: str, model_path: str, *, dtype: str = "auto", device: str | None = None,
                 max_prompt_length: int = 1024, max_new_tokens: int = 1024, min_pixels: int | None = None,
                 max_pixels: int | None = None, seed: int = 0, max_images: int = 1,
                 gpu_memory_utilization: float = 0.85, tensor_parallel_size: int = 1) -> RolloutEngine:
    """Load ``model_path`` into the ``hf`` or ``vllm`` rollout engine (built by :func:`mmdps.rollout.make_engine`)."""
    from mmdps.models.loading import load_policy
    from mmdps.rollout import make_engine

    pixels: dict[str, Any] = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels))
                              if v is not None}
    if name == "hf":
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else None  # None: stay on the CPU
        model, processor = load_policy(model_path, dtype=dtype, device=device)
        model.eval()
        return make_engine("hf", model, processor, max_prompt_length=max_prompt_length, **pixels)
    if name == "vllm":
        # vLLM reads the checkpoint itself: no HF copy of the weights to load, and nothing to sync.
        from mmdps.models.loading import is_lora_adapter

        if is_lora_adapter(model_path):
            raise ValueError(f"--engine vllm loads full model folders and {model_path} is a LoRA adapter: use "
                             "--engine hf (which merges the adapter on load), or pass a merged copy written by "
                             "mmdps.models.loading.save_merged_adapter(adapter_folder, out_folder)")
        return make_engine("vllm", model_path=model_path, tensor_parallel_size=tensor_parallel_size,
                           gpu_memory_utilization=gpu_memory_utilization, max_prompt_length=max_prompt_length,
                           max_new_tokens=max_new_tokens, seed=seed, max_images=max(1, max_images),
                           dtype=dtype, return_logprobs=False, **pixels)
    raise ValueError(f"unknown engine {name!r}; use 'hf' or 'vllm'")


def _print_summary(report: Mapping[str, Any], paths: Mapping[str, Path]) -> None:
    n = report["n"]
    config = report["config"]
    rows = [["protocol", str(config.get("protocol_setting") or config.get("protocol"))],
            ["problems", str(report["num_problems"])],
            [f"mean@{n} %", f"{percent(report['mean_at_n'])} ± {percent(report['mean_at_n_stderr'])}"],
            *[[f"pass@{k} %", percent(v)] for k, v in report["pass_at_k"].items()],
            ["format errors %", percent(report["format_error_rate"])],
            ["truncated %", percent(report["truncation_rate"])],
            ["mean completion tokens", f"{report['mean_completion_tokens']:.1f}"],
            ["seconds", f"{report['timing']['total_seconds']:.1f}"]]
    for name, groups in _breakdown_tables(report).items():  # mean@n % (problems), the largest groups first
        largest = sorted(groups.items(), key=lambda kv: -kv[1]["num_problems"])[:PRINTED_GROUPS]
        rows += [[f"{name}: {label}", f"{percent(metrics['mean_at_n'])} ({metrics['num_problems']})"]
                 for label, metrics in largest]
        if len(groups) > PRINTED_GROUPS:
            rows.append([f"{name}: {len(groups) - PRINTED_GROUPS} more", "see summary.md"])
    notes = [config["protocol_note"]] if config.get("protocol_note") else []
    print_rich_table(f"{config.get('label') or 'evaluation'}", ["metric", "value"], rows, notes=notes)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


def _setting(chosen: Protocol, args) -> str:
    """The protocol as run: its description, and the flags that overrode it."""
    overrides = [f"--{flag.replace('_', '-')} {getattr(args, flag)}" for flag, value in (
        ("n", chosen.samples), ("temperature", chosen.temperature), ("top_p", chosen.top_p),
        ("max_new_tokens", chosen.max_new_tokens)) if getattr(args, flag) != value]
    template = args.template or (chosen.template if args.benchmark else "the pack's default")
    return chosen.describe(template) + (f" (overridden: {', '.join(overrides)})" if overrides else "")


def _breakdown_tables(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The groups the printout lists (mean@n % and problem count each): a preset's official breakdowns,
    else a task pack's problem types; each concept once."""
    return dict(report.get("breakdowns") or {}) or ({"type": report["by_type"]} if report.get("by_type") else {})


def _protocol(args) -> Protocol:
    """The protocol of this run (``--protocol``, else the benchmark's official one, else the DPS one)."""
    from mmdps import presets
    from mmdps.presets.protocols import DPS, OFFICIAL, protocol

    if not args.benchmark:
        if args.protocol == "official":
            raise ValueError("--protocol official needs --benchmark: task packs have no published protocol and run "
                             "the DPS one (--protocol dps)")
        return DPS
    name = presets.get_class(args.benchmark).name
    return protocol(name, args.protocol or ("official" if name in OFFICIAL else "dps"))


def _item_where(item: Any) -> str:
    source, row = item.metadata.get("source"), item.metadata.get("row")
    return f"item {item.id} ({source} row {row})" if source is not None or row is not None else f"item {item.id}"


def _use_reward_functions(items: list, args) -> list:
    """The items scored by ``--reward-function`` (one verifier registered for them), as training does."""
    import dataclasses

    from mmdps.verifiers.custom import check_reward_settings, register_reward_functions

    check_reward_settings(args.reward_function, args.reward_weights, args.success_threshold)
    name = register_reward_functions(args.reward_function, args.reward_weights, args.success_threshold)
    return [dataclasses.replace(item, verifier=name) for item in items]


def _check_prompts(engine: Any, items: list, *, skip_invalid: bool) -> tuple[list, int]:
    """Measure every prompt with the engine's encoder before generating; an unusable one (too long, an
    image the model cannot take) raises ``ValueError`` naming up to five, or under ``skip_invalid`` is
    left out with a warning. Returns the usable items and how many were left out."""
    encoder = getattr(engine, "encoder", None)
    if encoder is None or not hasattr(encoder, "prompt_problems"):
        return items, 0  # an engine without a prompt encoder (a stand-in) checks nothing here
    problems = encoder.prompt_problems(items)
    if not problems:
        return items, 0
    shown = "; ".join(f"{_item_where(items[i])}: {why}" for i, why in list(problems.items())[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    summary = f"{len(problems)} of {len(items)} prompts cannot be evaluated: {shown}{more}"
    if not skip_invalid:
        raise ValueError(f"{summary}; raise --max-prompt-length, lower --max-pixels, or pass --skip-invalid to "
                         "leave them out (counted in report.json)")
    warnings.warn(f"{summary}; left out (--skip-invalid)", stacklevel=2)
    return [item for i, item in enumerate(items) if i not in problems], len(problems)


def fail(message: str) -> int:
    from mmdps.cli import fail as cli_fail

    return cli_fail("eval", message, cli_flags=True)


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
    if args.task and args.benchmark:
        return fail("give --task or --benchmark, not both")
    missing = [flag for flag, value in (("--model", args.model), ("--task or --benchmark", args.task or args.benchmark),
                                        ("--output", args.output)) if not value]
    if missing:
        return fail(f"{', '.join(missing)} required (or use --compare REPORT ...)")
    try:
        chosen = _protocol(args)
    except (KeyError, ValueError) as error:
        return fail(str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error))
    for flag, value in (("n", chosen.samples), ("temperature", chosen.temperature), ("top_p", chosen.top_p),
                        ("max_new_tokens", chosen.max_new_tokens)):
        if getattr(args, flag) is None:  # an explicit flag wins over the protocol
            setattr(args, flag, value)
    if args.n < 1 or args.max_new_tokens < 1:
        return fail("--n and --max-new-tokens must be >= 1")
    if args.ks and not all(1 <= k <= args.n for k in args.ks):
        return fail(f"every k of --ks must lie in [1, --n={args.n}], got {args.ks}")
    try:
        options = dict(_parse_option(o) for o in args.option)
        columns = _parse_mapping(args.columns, "--columns") if args.columns else None
        if columns and "image" in columns and "images" not in columns:  # the loaders' key is "images"
            columns["images"] = columns.pop("image")
        split, data = args.split or "test", args.data
        with warnings.catch_warnings(record=True) as caught:  # rows --skip-invalid drops go into report.json too
            warnings.simplefilter("always")
            if args.benchmark:
                from mmdps import presets

                preset = presets.get_class(args.benchmark)
                split, data = args.split or preset.default_split, args.data or preset.hub_id
                if columns:
                    options["columns"] = columns
                items = load_benchmark_items(args.benchmark, data, split=split, limit=args.limit,
                                             template=args.template, system_prompt=args.system_prompt,
                                             skip_invalid=args.skip_invalid, protocol=chosen.name, **options)
            else:
                items = load_eval_items(args.task, data, split=split, limit=args.limit,
                                        seed=args.seed, num=args.num, columns=columns, template=args.template,
                                        system_prompt=args.system_prompt, skip_invalid=args.skip_invalid, **options)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:  # TypeError: a third-party pack's loader
        return fail(str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error))
    skipped_rows = 0
    for warning in caught:  # shown as usual; the rows --skip-invalid dropped also go into report.json
        if isinstance(warning.message, SkippedRowsWarning):
            skipped_rows += warning.message.count
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if not items:
        what = f"benchmark {args.benchmark!r}" if args.benchmark else f"task {args.task!r}"
        return fail(f"{what} loaded no problems from {data or 'its generator'} (split {split!r}, limit {args.limit})")
    if args.reward_function or args.reward_weights is not None or args.success_threshold is not None:
        try:
            items = _use_reward_functions(items, args)
        except ValueError as error:  # a missing file or function, weights that do not match
            return fail(str(error))
    seed_everything(args.seed)
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
    try:  # every prompt measured before any generation: a long or broken one fails now, not after hours
        items, skipped_prompts = _check_prompts(engine, items, skip_invalid=args.skip_invalid)
    except ValueError as error:
        engine.close()
        return fail(str(error))
    if not items:
        engine.close()
        return fail("every problem was skipped (see the warning above)")
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              top_k=args.top_k, seed=args.seed)
    config = {"label": args.label or Path(args.output).name, "model": args.model, "task": args.task,
              "benchmark": args.benchmark, "data": data or "procedural", "split": split, "limit": args.limit,
              "engine": args.engine, "batch_size": batch_size, "dtype": args.dtype, "template": args.template,
              "seed": args.seed, "min_pixels": args.min_pixels, "max_pixels": args.max_pixels, "columns": columns,
              "options": options, "skip_invalid": args.skip_invalid, "skipped_invalid_rows": skipped_rows,
              "skipped_prompts": skipped_prompts, "protocol": chosen.name,
              "protocol_setting": _setting(chosen, args), "protocol_note": chosen.note,
              "reward_function": args.reward_function, "reward_weights": args.reward_weights,
              "success_threshold": args.success_threshold}
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
