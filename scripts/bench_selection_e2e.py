"""End-to-end selector benchmark on a real (tiny) model, with the power to decide between selectors.

``--task countdown`` (default): Countdown, the demo's 1.1M-parameter Qwen2 and GRPO recipe (``mmdps.demo``);
``--task visual``: the visual pack, the VL demo's 1.4M-parameter Qwen2-VL and recipe (``mmdps.demo_vl``).
One shared SFT warm start per task; everything after the data and the warm start is the same harness
(:class:`Recipe` holds what differs). Three regimes, each with its own training pool and rollout budget
(B=32 prompts x k=8 rollouts per step):

* ``a``: 1,000 prompts, ~2 passes (16,000 rollouts);
* ``b``: |D| = 8 B = 256 prompts, ~15 passes (30,720 rollouts): the DPS paper's B/|D| and length;
* ``c``: 1,000 prompts, ~2.5 passes, a realistic difficulty mix: 15% problems the warm start always
  solves (16/16 at screening), 65% it never solves (0/16), 20% learnable (mixed at screening), so
  uniform's informative share starts far below 35%. Countdown: "too easy" from 2- and 3-number SFT
  problems, "too hard" from 4 numbers in 1-25. Visual: "too easy" from SFT items of the levels the tiny
  VL model reads best (digit, max), "too hard" from angle levels at 1-degree steps (it trained on
  multiples of 10) and the levels it does not learn (number, sum, third).
  (The warm start solves few problems every time, so "too easy" can only be a minority; if a kind runs
  short the pool shrinks with the shares kept, and ``summary.json`` records the composition.)

Every run is scored on a held-out TEST set (default 2,000 prompts) and a separate VALIDATION set (1,000)
at the start and at ``--evals`` points along the budget: greedy accuracy and mean accuracy of
``--eval-samples`` samples at T=1, plus greedy accuracy on the run's own training pool (over-fitting a
re-selected working set shows as a growing pool-minus-test gap). Settings are chosen on validation only.

Runs go to worker processes (``--workers``, one torch thread each), all on ``--device``; they are
launched seed-major (every selector and regime of seed 0, then seed 1, ...), so a partial result is
balanced; each run's JSON is written the moment it finishes. After ``--time-limit`` seconds no run is
launched; runs still going at ``--hard-limit`` are stopped and left out. Then (or with
``--summarize-only DIR``) the summary is built from the per-run JSONs: ``summary.json``, ``table.md``,
``curves.png`` (test accuracy vs rollouts), ``diagnostics.png`` (informative share, repeat share,
distinct prompts, pool-minus-test gap, update size) and, with ``--archive``, ``runs.tar.gz``.

Commands (docs/benchmarks.md)::

    python scripts/bench_selection_e2e.py --device cuda --workers 14 --time-limit 300 --hard-limit 390 \\
        --work /tmp/bench --out "$OUT" --archive
    python scripts/bench_selection_e2e.py --summarize-only outputs/bench    # tables/plots from run JSONs
    python scripts/bench_selection_e2e.py --tiny --workers 2 --work /tmp/t --out /tmp/t/out   # smoke test
    python scripts/bench_selection_e2e.py --task visual --device cuda ...   # the same on the VL task

Nothing here imports math-verify, qwen-vl-utils or datasets.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import pickle
import sys
import tarfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

# name -> (selector, selector_kwargs, candidate_ratio). "dps" is the paper-faithful setting (top-B over the
# whole pool, Countdown's lambda 0.5); the rest are the variants under test.
RUNS: dict[str, tuple[str, dict, float | None]] = {
    "uniform": ("uniform", {}, None),
    "ds": ("ds", {"oversample": 1.0, "max_rounds": 10}, None),  # the DPS paper's DS runs (Countdown: 10 rounds)
    "mopps": ("mopps", {"decay": 0.5}, 8.0),  # the official Countdown script: ts_ratio 8, lambda 0.5
    "dps": ("dps", {"decay": 0.5}, None),
    "dps-c2": ("dps", {"decay": 0.5}, 2.0),
    "dps-c4": ("dps", {"decay": 0.5}, 4.0),
    "dps-c8": ("dps", {"decay": 0.5}, 8.0),
    "dps-d0.7": ("dps", {"decay": 0.7}, None),
    "dps-d0.9": ("dps", {"decay": 0.9}, None),
    "dps-sample": ("dps", {"decay": 0.5, "strategy": "sample"}, None),
    "dps-sample-t0.25": ("dps", {"decay": 0.5, "strategy": "sample", "temperature": 0.25}, None),
    "dps-cap1": ("dps", {"decay": 0.5, "max_consecutive": 1}, None),
}
OPTIONAL_RUNS = ("dps-sample-t0.25",)  # not run by default: the device time buys a 4th seed instead
BASELINES = ("uniform", "ds", "mopps")
REGIME_TEXT = {"a": "1,000 prompts, ~2 passes", "b": "|D| = 8 B, ~15 passes",
               "c": "realistic mix: mostly always / never solved"}
MIX_C = (0.15, 0.65, 0.20)  # regime c: always solved, never solved, learnable
SCREEN_SAMPLES = 16
MIX_NOT_MET = ("Regime c's designed mix was not met: the warm start solved too few candidates every time (or "
               "never), so its pool was filled up unscreened and is not the realistic mix. Leave c out "
               "(--regimes a b) or start from a stronger warm start (--sft-steps).")


# ---------------------------------------------------------------------- settings
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/bench", help="summary, table, plots (and runs.tar.gz)")
    p.add_argument("--work", default=None, help="warm start, data and per-run JSONs (default: --out)")
    p.add_argument("--task", choices=sorted(RECIPES), default="countdown",
                   help="countdown: the demo's tiny Qwen2; visual: the VL demo's tiny Qwen2-VL")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--workers", type=int, default=2, help="parallel runs (processes, one torch thread each)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds after which no run is launched")
    p.add_argument("--hard-limit", type=float, default=None, help="seconds after which running runs are stopped")
    p.add_argument("--summarize-only", metavar="DIR", default=None,
                   help="build summary/table/plots from DIR/runs/*.json (or DIR/runs.tar.gz) and exit")
    p.add_argument("--archive", action="store_true", help="also write the per-run JSONs as --out/runs.tar.gz")
    p.add_argument("--regimes", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    p.add_argument("--runs", nargs="+", default=[n for n in RUNS if n not in OPTIONAL_RUNS], choices=list(RUNS),
                   help=f"default: all but {', '.join(OPTIONAL_RUNS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--pool", nargs=3, type=int, default=[1000, 256, 1000], metavar=("A", "B", "C"))
    p.add_argument("--passes", nargs=3, type=float, default=[2.0, 15.0, 2.5], metavar=("A", "B", "C"))
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--evals", type=int, default=3, help="evaluations along the budget (plus the shared start)")
    p.add_argument("--eval-samples", type=int, default=4)
    p.add_argument("--eval-batch", type=int, default=4096, help="sequences per generate call in evaluation")
    p.add_argument("--sft-steps", type=int, default=None, help="default: the task's demo recipe (900 / 2,400)")
    p.add_argument("--prep-threads", type=int, default=1,
                   help="torch threads of the warm start on CPU (more than the free cores is much slower)")
    p.add_argument("--tiny", action="store_true", help="minute-long smoke test sizes")
    args = p.parse_args(argv)
    args.sft_steps = RECIPES[args.task].settings().sft_steps if args.sft_steps is None else args.sft_steps
    if args.tiny:
        args.batch_size, args.num_generations, args.pool = 4, 4, [24, 16, 24]
        args.passes, args.test_size, args.val_size = [1.0, 2.0, 1.0], 24, 16
        args.evals, args.eval_samples, args.sft_steps = 1, 2, 10
    args.work = args.work or args.out
    return args


@dataclasses.dataclass
class Regime:
    name: str
    pool_size: int
    budget: int  # rollouts per run


def regimes(args) -> dict[str, Regime]:
    out = {}
    for index, name in enumerate("abc"):
        size, passes = args.pool[index], args.passes[index]
        out[name] = Regime(name, size, int(round(passes * size * args.num_generations)))
    return out


def run_plan(args) -> list[dict[str, Any]]:
    """Every (seed, regime, run) job, seed-major so that any prefix is balanced over selectors; within a
    seed the longest regime first, so that the last runs to finish are short ones."""
    plan = []
    budgets = regimes(args)
    for seed in args.seeds:
        for regime in sorted(args.regimes, key=lambda name: -budgets[name].budget):
            pool = args.pool["abc".index(regime)]
            for name in args.runs:
                ratio = RUNS[name][2]
                if ratio is not None and name.startswith("dps-c") and ratio * args.batch_size >= pool:
                    continue  # the candidate batch covers the pool: the same run as "dps"
                plan.append({"seed": seed, "regime": regime, "run": name})
    return plan


# ---------------------------------------------------------------------- data and warm start
def _key(problem: dict) -> tuple:
    return int(problem["target"]), tuple(sorted(problem["numbers"]))


def _items(problems: list[dict], levels: list[int], source: str) -> list:
    from mmdps import tasks
    from mmdps.demo import LEVELS
    from mmdps.tasks.countdown import countdown_question

    pack = tasks.get("countdown", template="compact")
    out = []
    for index, (p, level) in enumerate(zip(problems, levels, strict=True)):
        name = LEVELS[level].split(":")[0] if level < len(LEVELS) else "hard"
        out.append(pack.make_item(id=index, question=countdown_question(p["target"], p["numbers"]),
                                  ground_truth={"target": p["target"], "numbers": p["numbers"]},
                                  metadata={"solution": p["solution"], "difficulty": level, "problem_type": name,
                                            "source": source}))
    return out


class ProblemSource:
    """Distinct Countdown problems, never one twice across the sets it hands out."""

    def __init__(self) -> None:
        self.seen: set = set()

    def take(self, configs: tuple, level_ids: list[int], n: int, seed: str) -> tuple[list[dict], list[int]]:
        from mmdps.tasks.countdown import generate_problems

        ask = n
        while True:
            try:
                problems = generate_problems(ask + len(self.seen) // 4, levels=configs, seed=seed)
            except ValueError:  # a small level space is exhausted: take what exists
                problems = generate_problems(ask, levels=configs, seed=seed)
            fresh = [p for p in problems if _key(p) not in self.seen][:n]
            if len(fresh) == n or ask > 8 * n:
                break
            ask *= 2
        if len(fresh) < n:
            raise RuntimeError(f"only {len(fresh)} distinct problems left for {seed!r}, need {n}")
        self.seen |= {_key(p) for p in fresh}
        return fresh, [level_ids[p["level"]] for p in fresh]


def build_countdown_data(args) -> dict[str, list]:
    """SFT problems first (the demo's recipe), then test, validation and the pools from what is left."""
    from mmdps.demo import SFT_PROBLEMS_PER_LEVEL
    from mmdps.tasks.countdown import TINY_LEVELS, CountdownConfig

    source = ProblemSource()
    sft_problems, sft_levels = [], []
    scale = 0.02 if args.tiny else 1.0
    for level, num in enumerate(SFT_PROBLEMS_PER_LEVEL):
        count = max(8, int(num * scale))
        try:
            problems, levels = source.take((TINY_LEVELS[level],), [level], count, f"sft-{level}")
        except RuntimeError:  # L0/L1 hold only a few hundred / thousand problems
            problems, levels = source.take((TINY_LEVELS[level],), [level], count * 2 // 3, f"sft-{level}")
        sft_problems += problems
        sft_levels += levels
    mixed = (tuple(TINY_LEVELS), [0, 1, 2, 3])
    data = {"sft": _items(sft_problems, sft_levels, "sft"),
            "test": _items(*source.take(*mixed, args.test_size, "test"), "test"),
            "validation": _items(*source.take(*mixed, args.val_size, "validation"), "validation")}
    for index, name in enumerate("ab"):
        data[f"pool_{name}"] = _items(*source.take(*mixed, args.pool[index], f"pool-{name}"), f"pool-{name}")
    # Regime c's candidates: SFT problems (the "too easy" ones are found among them by screening), a level
    # harder than any the warm start saw, and fresh problems of levels 1-3 ("learnable" ones, by screening).
    hard = CountdownConfig(min_numbers=4, max_numbers=4, max_number=25, max_target=999, ops="+-*")
    size = args.pool[2]
    data["c_hard"] = _items(*source.take((hard,), [4], int(size * MIX_C[1] * 1.5), "pool-c-hard"), "pool-c-hard")
    data["c_mid"] = _items(*source.take(tuple(TINY_LEVELS[1:]), [1, 2, 3], int(size * MIX_C[2] * 3), "pool-c-mid"),
                           "pool-c-mid")
    return data


def build_visual_data(args) -> dict[str, list]:
    """Every set from its own random stream of the visual pack (the split name seeds it; images are
    random, so no two sets share an item); regime c's "too hard" candidates are angle questions at
    1-degree steps and the levels the tiny model does not learn."""
    from mmdps import tasks
    from mmdps.demo_vl import LEVEL_NAMES

    pack = tasks.get("visual")
    per_level = 8 if args.tiny else RECIPES["visual"].settings().sft_per_level

    def load(split: str, num: int, **options) -> list:
        return pack.load(None, split=f"bench-{split}", seed=0, num=num, **options)

    size = args.pool[2]
    hard = int(size * MIX_C[1] * 1.5)
    return {"sft": load("sft", per_level * len(LEVEL_NAMES)),
            "test": load("test", args.test_size), "validation": load("validation", args.val_size),
            "pool_a": load("pool-a", args.pool[0]), "pool_b": load("pool-b", args.pool[1]),
            "c_hard": load("pool-c-fine-angles", hard // 2, levels=["angle", "complement", "third"], angle_step=1)
            + load("pool-c-unlearned", hard - hard // 2, levels=["number", "sum", "third"]),
            "c_mid": load("pool-c-mid", int(size * MIX_C[2] * 3))}


class Recipe:
    """What differs between tasks: the data, the demo module that builds the model, its SFT examples, the
    engine and the trainer configuration (``mmdps.demo`` and ``mmdps.demo_vl`` share those signatures),
    and which SFT levels are regime c's "too easy" candidates."""

    def __init__(self, title: str, demo: str, settings: str, processor: str, build_data, easy_levels: tuple) -> None:
        self.title, self._demo, self._settings, self._processor = title, demo, settings, processor
        self.build_data, self.easy_levels = build_data, easy_levels

    @property
    def demo(self):
        return importlib.import_module(self._demo)

    def settings(self, **kwargs):
        """The demo's settings dataclass (its recipe's defaults) with ``kwargs``."""
        return getattr(self.demo, self._settings)(**kwargs)

    def processor(self) -> tuple[Any, Any]:
        """(processor, tokenizer): the same object for a text model."""
        processor = getattr(self.demo, self._processor)()
        return processor, getattr(processor, "tokenizer", processor)


RECIPES = {
    "countdown": Recipe("Countdown, tiny Qwen2", "mmdps.demo", "DemoSettings", "build_tokenizer",
                        build_countdown_data, easy_levels=(0, 1)),
    "visual": Recipe("Visual pack (digits, angles), tiny Qwen2-VL", "mmdps.demo_vl", "VLDemoSettings",
                     "build_processor", build_visual_data, easy_levels=(0, 3)),  # digit, max
}


def _renumber(items: list) -> list:
    return [dataclasses.replace(item, id=index) for index, item in enumerate(items)]


def prepare(args) -> dict[str, Any]:
    """Data, the SFT warm start, regime c's screened pool and the shared start evaluation (cached in --work)."""
    import torch

    from mmdps.models.loading import load_policy
    from mmdps.sft import supervised_warmup

    recipe = RECIPES[args.task]
    work = Path(args.work)
    prep_path = work / "prep.pkl"
    key = {k: getattr(args, k) for k in ("task", "pool", "test_size", "val_size", "sft_steps", "batch_size",
                                         "num_generations", "tiny")}
    if prep_path.is_file():
        prep = pickle.loads(prep_path.read_bytes())
        if prep["key"] == key:
            print(f"reusing the prepared data and warm start in {work}", flush=True)
            return prep
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = recipe.build_data(args)
    print(f"data: {len(data['sft'])} SFT problems, test {len(data['test'])}, validation {len(data['validation'])} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    settings = recipe.settings(seed=0, threads=1, sft_steps=args.sft_steps, progress=False)
    device = torch.device(args.device)
    processor, tokenizer = recipe.processor()
    model = recipe.demo.build_model(tokenizer, settings).to(device)
    prompts, targets = recipe.demo.sft_examples(data["sft"], processor)
    t0 = time.perf_counter()
    result = supervised_warmup(model, prompts, targets, pad_token_id=tokenizer.pad_token_id,
                               max_steps=settings.sft_steps, batch_size=settings.sft_batch_size, lr=settings.sft_lr,
                               seed=0)
    model_dir = work / "warm-start"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    print(f"warm start: {result.steps} SFT steps in {time.perf_counter() - t0:.0f} s, loss {result.final_loss:.3f}",
          flush=True)

    model, processor = load_policy(model_dir, dtype="float32")
    engine = recipe.demo.make_engine(model.to(device), processor)
    t0 = time.perf_counter()
    pool_c, composition = screen_pool_c(args, engine, data)
    print(f"regime c pool: {composition} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not composition["mix_met"]:
        print(f"WARNING: {MIX_NOT_MET}", flush=True)
    pools = {"a": _renumber(data["pool_a"]), "b": _renumber(data["pool_b"]), "c": _renumber(pool_c)}
    start = {name: evaluate(engine, data["test"], data["validation"], pools[name], args, seed=0) for name in pools}
    prep = {"key": key, "model_dir": str(model_dir), "test": _renumber(data["test"]),
            "validation": _renumber(data["validation"]), "pools": pools, "start": start,
            "pool_c_composition": composition, "sft_steps": result.steps, "sft_loss": result.final_loss}
    prep_path.write_bytes(pickle.dumps(prep))
    return prep


def screen_pool_c(args, engine, data) -> tuple[list, dict]:
    """Regime c's pool: always-solved SFT problems of the two easiest levels, never-solved hard ones, mixed
    fresh ones (MIX_C shares)."""
    size = args.pool[2]
    want = [int(round(size * share)) for share in MIX_C]
    rng = np.random.default_rng(0)
    easy = [item for item in data["sft"] if item.metadata["difficulty"] in RECIPES[args.task].easy_levels]
    easy_cand = [easy[i] for i in rng.permutation(len(easy))]  # Countdown: ~2,000, 8% solved 16/16 (H100 run)
    picked = []
    samples = 2 if args.tiny else SCREEN_SAMPLES
    rates = sample_success(engine, easy_cand + data["c_hard"] + data["c_mid"], samples, args, seed=12345)
    n1, n2 = len(easy_cand), len(easy_cand) + len(data["c_hard"])
    groups = ((easy_cand, rates[:n1], lambda r: r == 1.0), (data["c_hard"], rates[n1:n2], lambda r: r == 0.0),
              (data["c_mid"], rates[n2:], lambda r: (r > 0.0) & (r < 1.0)))
    found = [[item for item, ok in zip(items, test(r), strict=True) if ok] for items, r, test in groups]
    # If a kind runs short, shrink the whole pool so that the shares stay as designed; if that leaves too
    # few prompts to train on (a warm start that solves nothing, as in --tiny), fill up unscreened.
    factor = min(1.0, *(len(f) / w for f, w in zip(found, want, strict=True) if w))
    counts = [int(w * factor) for w in want]
    for items, count in zip(found, counts, strict=True):
        picked += items[:count]
    mix_met = len(picked) >= 4 * args.batch_size
    if not mix_met:
        chosen = {id(item) for item in picked}
        rest = [item for items, _, _ in groups for item in items if id(item) not in chosen]
        picked += rest[: size - len(picked)]
    order = rng.permutation(len(picked))
    composition = {"always_solved": counts[0], "never_solved": counts[1], "learnable": counts[2],
                   "screen_samples": samples, "shrunk_by": factor, "mix_met": mix_met, "size": len(picked),
                   "candidates": [len(easy_cand), len(data["c_hard"]), len(data["c_mid"])],
                   "found": [len(f) for f in found]}
    return [picked[i] for i in order], composition


# ---------------------------------------------------------------------- evaluation
def sample_success(engine, items: list, k: int, args, *, seed: int, temperature: float = 1.0) -> np.ndarray:
    """Per item, the share of ``k`` completions the verifier scores correct (acc >= 1), batched."""
    from mmdps import verifiers
    from mmdps.rollout.base import SamplingParams

    max_new_tokens = RECIPES[args.task].settings().max_new_tokens
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    chunk = max(1, args.eval_batch // k)
    out = np.empty(len(items))
    verify = {}
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        rows = engine.generate(part, k, sampling)
        for offset, (item, row) in enumerate(zip(part, rows, strict=True)):
            fn = verify.setdefault(item.verifier, verifiers.get(item.verifier))
            out[start + offset] = np.mean([fn(c.text, item.ground_truth)["acc"] >= 1.0 for c in row])
    return out


def evaluate(engine, test: list, validation: list, pool: list, args, *, seed: int) -> dict[str, Any]:
    """Greedy accuracy on test, validation and the training pool; sampled accuracy on test and validation."""
    t0 = time.perf_counter()
    greedy = sample_success(engine, test + validation + pool, 1, args, seed=seed, temperature=0.0)
    sampled = sample_success(engine, test + validation, args.eval_samples, args, seed=seed)
    nt, nv = len(test), len(validation)
    levels = np.array([item.metadata["difficulty"] for item in test])
    return {"test_greedy": float(greedy[:nt].mean()), "val_greedy": float(greedy[nt:nt + nv].mean()),
            "pool_greedy": float(greedy[nt + nv:].mean()), "test_sampled": float(sampled[:nt].mean()),
            "val_sampled": float(sampled[nt:].mean()),
            "test_mixed": float(np.mean((sampled[:nt] > 0) & (sampled[:nt] < 1))),
            "test_greedy_by_level": {str(level): float(greedy[:nt][levels == level].mean())
                                     for level in np.unique(levels)},
            "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------- one run (in a worker process)
_PREP: dict[str, Any] | None = None


def _init_worker(device: str) -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    import logging

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.set_num_threads(1)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("mmdps").setLevel(logging.ERROR)


def run_one(job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train one (regime, run, seed) until its rollout budget; evaluate along the way; write its JSON."""
    global _PREP
    import torch

    from mmdps.trainer import GRPOTrainer, RolloutBudget

    if _PREP is None:
        _PREP = pickle.loads((Path(args.work) / "prep.pkl").read_bytes())
    prep = _PREP
    regime = regimes(args)[job["regime"]]
    selector, kwargs, ratio = RUNS[job["run"]]
    seed = job["seed"]
    pool = prep["pools"][job["regime"]]
    tag = f"{job['regime']}-{job['run']}-s{seed}"
    recipe = RECIPES[args.task]
    settings = recipe.settings(seed=seed, threads=1, batch_size=args.batch_size,
                               num_generations=args.num_generations, pool_size=len(pool), progress=False)
    config = recipe.demo.grpo_config(settings, Path(prep["model_dir"]), Path(args.work) / "scratch" / tag,
                                     selector=selector, selector_kwargs=kwargs, max_steps=10**6)
    config = dataclasses.replace(config, candidate_ratio=ratio, bf16=False, log_completions_steps=0)
    torch.manual_seed(seed)
    trainer = GRPOTrainer(config, items=pool)
    recorder = _Recorder(trainer, [regime.budget * (i + 1) / args.evals for i in range(args.evals)],
                         lambda: evaluate(trainer.engine, prep["test"], prep["validation"], pool, args,
                                          seed=1000 + len(recorder.curve)))
    recorder.curve.append({**prep["start"][job["regime"]], "rollouts": 0, "step": 0, "train_seconds": 0.0})
    started = time.perf_counter()
    trainer.train(stop=RolloutBudget(regime.budget), callbacks=[recorder])
    steps, curve, train_seconds = recorder.steps, recorder.curve, recorder.train_seconds
    result = {**job, "task": args.task, "selector": selector, "selector_kwargs": kwargs, "candidate_ratio": ratio,
              "budget": regime.budget, "pool_size": len(pool), "curve": curve, "steps": steps,
              "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - started,
              "device": args.device}
    path = Path(args.work) / "runs" / f"{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=float))
    tmp.replace(path)
    return {"tag": tag, "seconds": result["wall_seconds"], "steps": len(steps)}


class _Recorder:
    """A ``GRPOTrainer.train`` callback: per-step records (with the norm of the parameter update) and the
    evaluations due once the run's rollouts pass each point of ``eval_at``."""

    def __init__(self, trainer, eval_at: list[float], evaluate_now) -> None:
        self.params = [p for p in trainer.unwrapped_model.parameters() if p.requires_grad]
        self.before = self._flat()
        self.eval_at, self.evaluate_now = list(eval_at), evaluate_now
        self.steps: list[dict[str, Any]] = []
        self.curve: list[dict[str, Any]] = []
        self.train_seconds = 0.0

    def _flat(self):
        import torch

        return torch.cat([p.detach().flatten() for p in self.params])

    def on_step_end(self, trainer, metrics: dict[str, Any]) -> None:
        after = self._flat()
        self.steps.append(_step_record(metrics, float((after - self.before).norm())))
        self.before = after
        self.train_seconds += metrics["time/step"]
        while self.eval_at and trainer.rollouts_total >= self.eval_at[0] - 1e-9:
            self.eval_at.pop(0)
            point = self.evaluate_now()
            self.curve.append({**point, "rollouts": trainer.rollouts_total, "step": trainer.step,
                               "train_seconds": self.train_seconds})


def _step_record(metrics: dict[str, Any], update_norm: float) -> dict[str, Any]:
    keep = ("rollouts", "rollouts_total", "rollout_rounds", "acc_mean", "effective_ratio", "zero_variance_share",
            "informative_token_share", "completion_tokens", "grad_norm", "selector/prediction_accuracy",
            "prompts/distinct_total", "prompts/repeat_share", "prompts/mean_visits", "time/step")
    record = {key: metrics[key] for key in keep if key in metrics}
    record["update_norm"] = update_norm
    return record


# ---------------------------------------------------------------------- orchestration
def run_all(args) -> bool:
    """Prepare, then run the plan in worker processes; True when runs were stopped at the hard limit."""
    started = time.perf_counter()
    others = {run.get("task", "countdown") for run in load_runs(Path(args.work))} - {args.task}
    if others:
        raise SystemExit(f"--work {args.work} holds runs of task {', '.join(sorted(others))}; "
                         f"give --task {args.task} its own --work folder")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _init_worker(args.device)
    import torch

    torch.set_num_threads(args.prep_threads)
    prep = prepare(args)
    print(f"prepared in {time.perf_counter() - started:.0f} s; start (test greedy / sampled): "
          + ", ".join(f"{k} {v['test_greedy']:.3f} / {v['test_sampled']:.3f}" for k, v in prep["start"].items()),
          flush=True)
    done = {p.stem for p in (Path(args.work) / "runs").glob("*.json")}
    plan = [job for job in run_plan(args) if f"{job['regime']}-{job['run']}-s{job['seed']}" not in done]
    print(f"{len(plan)} runs to do ({len(done)} already done), {args.workers} workers on {args.device}", flush=True)
    import multiprocessing

    context = multiprocessing.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=args.workers, mp_context=context, initializer=_init_worker,
                                   initargs=(args.device,))

    pool = new_pool()
    running: dict[Any, dict] = {}
    finished = 0
    try:
        while plan or running:
            elapsed = time.perf_counter() - started
            launch = args.time_limit is None or elapsed < args.time_limit
            while plan and launch and len(running) < args.workers:
                try:
                    future = pool.submit(run_one, plan[0], args)
                except BrokenProcessPool:  # a worker died (e.g. killed for memory): start a fresh pool
                    print("worker pool broken: starting a new one", flush=True)
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                    continue
                running[future] = plan.pop(0)
            if not launch and plan:
                print(f"time limit: {len(plan)} runs not launched", flush=True)
                plan = []
            if not running:
                break
            ready, _ = wait(running, timeout=5.0, return_when=FIRST_COMPLETED)  # then check the limits again
            for future in ready:
                job = running.pop(future)
                try:
                    info = future.result()
                    finished += 1
                    print(f"[{time.perf_counter() - started:5.0f} s] done {info['tag']}: {info['steps']} steps in "
                          f"{info['seconds']:.0f} s ({finished} finished)", flush=True)
                except Exception as error:  # one broken run must not lose the others
                    print(f"run {job} failed: {error!r}", flush=True)
            if args.hard_limit is not None and time.perf_counter() - started >= args.hard_limit and running:
                print(f"hard limit: stopping {len(running)} running runs", flush=True)
                break
    finally:
        for process in list(getattr(pool, "_processes", {}).values()):
            if running and process.is_alive():
                process.terminate()
        pool.shutdown(wait=not running, cancel_futures=True)
    print(f"{finished} runs finished in {time.perf_counter() - started:.0f} s", flush=True)
    return bool(running)


# ---------------------------------------------------------------------- summary
def load_runs(folder: Path) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]
    if not runs and (folder / "runs.tar.gz").is_file():
        with tarfile.open(folder / "runs.tar.gz") as tar:
            runs = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    return runs


def area(curve: list[dict], key: str, budget: float) -> float:
    """Mean accuracy over [0, budget] rollouts (trapezoid area / budget); the last point extends to the budget."""
    x = [p["rollouts"] for p in curve]
    y = [p[key] for p in curve]
    if x[-1] < budget:
        x, y = x + [budget], y + [y[-1]]
    return float(np.trapezoid(y, x) / budget) if hasattr(np, "trapezoid") else float(np.trapz(y, x) / budget)


def rollouts_to_reach(curve: list[dict], target: float, key: str) -> float | None:
    """Rollouts at which ``curve[key]`` first reaches ``target`` (linear interpolation), or None."""
    previous = None
    for point in curve:
        if point[key] >= target:
            if previous is None:
                return float(point["rollouts"])
            span = point[key] - previous[key]
            share = (target - previous[key]) / span if span > 0 else 1.0
            return previous["rollouts"] + share * (point["rollouts"] - previous["rollouts"])
        previous = point
    return None


def _mean_se(values: list[float]) -> tuple[float, float, int]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan"), 0
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else float("nan")
    return float(arr.mean()), se, int(arr.size)


def _early(steps: list[dict], key: str, n: int = 5) -> float:
    vals = [s[key] for s in steps[:n] if key in s and s[key] is not None]
    return float(np.mean(vals)) if vals else float("nan")


def balanced(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """Per regime, only the seeds that every run name of that regime finished (so that means compare like
    with like); returns the kept runs and the tags of those left out."""
    kept, dropped = [], []
    for regime in sorted({r["regime"] for r in runs}):
        mine = [r for r in runs if r["regime"] == regime]
        names = {r["run"] for r in mine}
        seeds = {s for s in {r["seed"] for r in mine} if {r["run"] for r in mine if r["seed"] == s} == names}
        kept += [r for r in mine if r["seed"] in seeds]
        dropped += [f"{regime}-{r['run']}-s{r['seed']}" for r in mine if r["seed"] not in seeds]
    return kept, dropped


def summarize(runs: list[dict]) -> dict[str, Any]:
    """Per regime and run name: mean +- standard error over seeds of every figure; the DPS setting chosen on
    validation; its test comparison with uniform and DS."""
    out: dict[str, Any] = {}
    for regime in sorted({r["regime"] for r in runs}):
        rows: dict[str, Any] = {}
        by_name: dict[str, list[dict]] = {}
        for run in runs:
            if run["regime"] == regime:
                by_name.setdefault(run["run"], []).append(run)
        for name in [n for n in RUNS if n in by_name]:
            group = sorted(by_name[name], key=lambda r: r["seed"])
            budget = group[0]["budget"]
            fig: dict[str, Any] = {"seeds": [r["seed"] for r in group], "budget": budget}
            for split in ("test", "val"):
                for kind in ("sampled", "greedy"):
                    key = f"{split}_{kind}"
                    fig[f"final_{key}"] = _mean_se([r["curve"][-1][key] for r in group])
                    fig[f"auc_{key}"] = _mean_se([area(r["curve"], key, budget) for r in group])
            fig["final_pool_greedy"] = _mean_se([r["curve"][-1]["pool_greedy"] for r in group])
            fig["final_gap_pool_minus_test"] = _mean_se([r["curve"][-1]["pool_greedy"] - r["curve"][-1]["test_greedy"]
                                                         for r in group])
            steps = [s for r in group for s in r["steps"]]

            def avg(key, source=steps):
                vals = [s[key] for s in source if s.get(key) is not None and np.isfinite(s[key])]
                return float(np.mean(vals)) if vals else float("nan")

            fig["informative_share"] = avg("effective_ratio")
            fig["informative_share_first5"] = float(np.mean([_early(r["steps"], "effective_ratio") for r in group]))
            fig["informative_token_share"] = avg("informative_token_share")
            fig["repeat_share"] = avg("prompts/repeat_share")
            fig["distinct_total"] = _mean_se([r["steps"][-1]["prompts/distinct_total"] for r in group])
            fig["mean_visits"] = _mean_se([r["steps"][-1]["prompts/mean_visits"] for r in group])
            fig["update_norm"] = avg("update_norm")
            fig["grad_norm"] = avg("grad_norm")
            fig["steps"] = float(np.mean([len(r["steps"]) for r in group]))
            fig["rollouts"] = float(np.mean([r["steps"][-1]["rollouts_total"] for r in group]))
            fig["train_seconds"] = float(np.mean([r["train_seconds"] for r in group]))
            fig["prediction_accuracy"] = avg("selector/prediction_accuracy")
            rows[name] = fig
        out[regime] = {"rows": rows, "choice": _choose_and_compare(by_name, rows)}
    return out


def _paired(by_name: dict, a: str, b: str, key) -> tuple[float, float, int]:
    """Mean +- SE over the seeds both runs have of key(run_a) - key(run_b)."""
    sa = {r["seed"]: r for r in by_name.get(a, [])}
    sb = {r["seed"]: r for r in by_name.get(b, [])}
    return _mean_se([key(sa[s]) - key(sb[s]) for s in sorted(set(sa) & set(sb))])


def _choose_and_compare(by_name: dict, rows: dict) -> dict[str, Any]:
    dps = [n for n in rows if n.startswith("dps")]
    if not dps:
        return {}
    # Chosen on VALIDATION: the largest area under the validation sampled-accuracy curve.
    chosen = max(dps, key=lambda n: rows[n]["auc_val_sampled"][0])
    out: dict[str, Any] = {"chosen_on_validation": chosen, "criterion": "auc_val_sampled"}
    budget = rows[chosen]["budget"]
    for base in ("uniform", "ds"):
        if base in rows:
            for name in (chosen, "dps"):
                if name in rows:
                    out[f"{name}_minus_{base}_final_test_sampled"] = _paired(
                        by_name, name, base, lambda r: r["curve"][-1]["test_sampled"])
                    out[f"{name}_minus_{base}_auc_test_sampled"] = _paired(
                        by_name, name, base, lambda r: area(r["curve"], "test_sampled", budget))
    if "ds" in by_name:
        for name in (chosen, "uniform"):
            share = []
            for run in by_name.get(name, []):
                ds = [r for r in by_name["ds"] if r["seed"] == run["seed"]]
                if ds:
                    need = rollouts_to_reach(run["curve"], ds[0]["curve"][-1]["test_sampled"], "test_sampled")
                    share.append(None if need is None else need / ds[0]["steps"][-1]["rollouts_total"])
            out[f"{name}_share_of_ds_rollouts_to_ds_final"] = share
    return out


def _fmt(ms, digits=3) -> str:
    mean, se, n = ms
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if np.isfinite(se) else f"{mean:.{digits}f}"


def markdown(summary: dict, meta: dict) -> str:
    title = " / ".join(RECIPES[task].title for task in meta.get("task", ["countdown"]))
    lines = [f"{title} from one SFT warm start; device {meta.get('device')}; "
             f"mean ± standard error over seeds. `sampled` = mean accuracy of the eval samples at T=1, "
             "`greedy` = greedy accuracy; AUC = mean accuracy over the rollout budget. TEST and VALIDATION are "
             "disjoint held-out splits; settings are chosen on validation.", ""]
    if meta.get("left_out_unbalanced_seeds"):
        lines += [f"Left out (a seed not every run of its regime finished): "
                  f"{', '.join(meta['left_out_unbalanced_seeds'])}.", ""]
    for regime, block in summary.items():
        rows = block["rows"]
        if not rows:
            continue
        first = next(iter(rows.values()))
        lines += [f"### Regime {regime}: {REGIME_TEXT.get(regime, '')} (budget {first['budget']:,} rollouts)", ""]
        composition = meta.get("pool_c_composition") or {}
        if regime == "c" and composition.get("mix_met") is False:
            lines += [f"**{MIX_NOT_MET}** Found (always / never / mixed): {composition.get('found')}.", ""]
        lines += ["| run | seeds | test sampled, final | test sampled, AUC | test greedy, final | val sampled, AUC "
                  "| pool greedy − test greedy | informative share (first 5 steps) | repeat share | distinct "
                  "prompts | mean visits | update norm | steps |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, f in rows.items():
            lines.append(
                f"| {name} | {len(f['seeds'])} | {_fmt(f['final_test_sampled'])} | {_fmt(f['auc_test_sampled'])} | "
                f"{_fmt(f['final_test_greedy'])} | {_fmt(f['auc_val_sampled'])} | "
                f"{_fmt(f['final_gap_pool_minus_test'])} | {f['informative_share']:.2f} "
                f"({f['informative_share_first5']:.2f}) | {f['repeat_share']:.2f} | "
                f"{_fmt(f['distinct_total'], 0)} | {_fmt(f['mean_visits'], 1)} | {f['update_norm']:.3f} | "
                f"{f['steps']:.0f} |")
        choice = block["choice"]
        if choice:
            lines += ["", "DPS setting chosen on validation (largest validation AUC): "
                          f"**{choice['chosen_on_validation']}**."]
            for key, value in choice.items():
                if key.endswith(("_final_test_sampled", "_auc_test_sampled")):
                    lines.append(f"- {key.replace('_', ' ')} (paired by seed, test): {_fmt(value)}")
                elif key.endswith("to_ds_final"):
                    shares = ", ".join("not reached" if s is None else f"{s:.2f}" for s in value)
                    lines.append(f"- {key.replace('_', ' ')} (test sampled, per seed): {shares or '-'}")
        lines.append("")
    return "\n".join(lines)


def plot(runs: list[dict], summary: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes_ = sorted({r["regime"] for r in runs})
    names = [n for n in RUNS if any(r["run"] == n for r in runs)]
    colors = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(names)}
    style = {n: ("-" if n in BASELINES or n == "dps" else "--") for n in names}
    paths = []

    def mean_curve(group, key):
        xs = np.array([[p["rollouts"] for p in r["curve"]] for r in group if len(r["curve"]) == len(group[0]["curve"])])
        ys = np.array([[p[key] for p in r["curve"]] for r in group if len(r["curve"]) == len(group[0]["curve"])])
        return xs.mean(0), ys.mean(0), (ys.std(0, ddof=1) / math.sqrt(len(ys)) if len(ys) > 1 else 0 * ys[0])

    fig, axes = plt.subplots(2, len(regimes_), figsize=(6 * len(regimes_), 8), squeeze=False)
    for col, regime in enumerate(regimes_):
        for row, key in enumerate(("test_sampled", "test_greedy")):
            ax = axes[row][col]
            for name in names:
                group = [r for r in runs if r["regime"] == regime and r["run"] == name]
                if group:
                    x, y, se = mean_curve(group, key)
                    ax.plot(x, y, style[name], color=colors[name], marker="o", markersize=3, label=name)
                    ax.fill_between(x, y - se, y + se, color=colors[name], alpha=0.12)
            ax.set_title(f"regime {regime}: {REGIME_TEXT.get(regime, '')}")
            ax.set_xlabel("cumulative rollouts")
            ax.set_ylabel(f"{key.replace('_', ' ')} accuracy (mean ± SE over seeds)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out / "curves.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    panels = (("effective_ratio", "informative share of trained groups"),
              ("prompts/repeat_share", "repeat share (trained in previous 5 steps)"),
              ("prompts/distinct_total", "distinct prompts trained so far"),
              ("update_norm", "parameter update norm per step"))
    fig, axes = plt.subplots(len(regimes_), len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.6 * len(regimes_)),
                             squeeze=False)
    for row, regime in enumerate(regimes_):
        for name in names:
            group = [r for r in runs if r["regime"] == regime and r["run"] == name]
            if not group:
                continue
            for col, (key, label) in enumerate(panels):
                length = min(len(r["steps"]) for r in group)
                x = np.mean([[s["rollouts_total"] for s in r["steps"][:length]] for r in group], axis=0)
                y = np.mean([[s.get(key, np.nan) for s in r["steps"][:length]] for r in group], axis=0)
                if key in ("effective_ratio", "prompts/repeat_share", "update_norm") and length >= 5:
                    y = np.convolve(y, np.ones(5) / 5, mode="valid")  # 5-step means, no padded edges
                    x = x[2:-2]
                axes[row][col].plot(x, y, style[name], color=colors[name], linewidth=1, label=name)
                axes[row][col].set_title(f"{regime}: {label}", fontsize=9)
            x, _, _ = mean_curve(group, "test_greedy")
            gap = np.mean([[p["pool_greedy"] - p["test_greedy"] for p in r["curve"]] for r in group
                           if len(r["curve"]) == len(group[0]["curve"])], axis=0)
            axes[row][-1].plot(x, gap, style[name], color=colors[name], marker="o", markersize=3)
            axes[row][-1].set_title(f"{regime}: training-pool minus test greedy accuracy", fontsize=9)
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            ax.set_xlabel("cumulative rollouts", fontsize=8)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths.append(out / "diagnostics.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_summary(work: Path, out: Path, archive: bool) -> dict:
    every = load_runs(work)
    if not every:
        raise SystemExit(f"no run JSONs under {work / 'runs'}")
    out.mkdir(parents=True, exist_ok=True)
    runs, dropped = balanced(every)
    summary = summarize(runs)
    meta = {"task": sorted({r.get("task", "countdown") for r in runs}),
            "device": sorted({r.get("device") for r in runs}), "runs": len(runs),
            "left_out_unbalanced_seeds": dropped}
    prep_path = work / "prep.pkl"
    if prep_path.is_file():
        prep = pickle.loads(prep_path.read_bytes())
        meta.update(start=prep["start"], pool_c_composition=prep["pool_c_composition"], sft_steps=prep["sft_steps"],
                    test_size=len(prep["test"]), val_size=len(prep["validation"]),
                    pool_sizes={k: len(v) for k, v in prep["pools"].items()})
    (out / "summary.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=1, default=float))
    (out / "table.md").write_text(markdown(summary, meta))
    if archive:
        with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:  # every run, balanced or not
            for path in sorted((work / "runs").glob("*.json")):
                tar.add(path, arcname=f"runs/{path.name}")
    try:
        plot(runs, summary, out)
    except Exception as error:  # e.g. no matplotlib on the machine: the JSONs and the table still stand
        print(f"plots skipped: {error!r}", flush=True)
    print(markdown(summary, meta))
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.summarize_only:
        folder = Path(args.summarize_only)
        write_summary(folder, Path(args.out) if args.out != "outputs/bench" else folder, archive=False)
        return 0
    started = time.perf_counter()
    stopped = run_all(args)
    write_summary(Path(args.work), Path(args.out), args.archive)
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)
    if stopped:  # do not wait at exit for the executor of the runs stopped at the hard limit
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
