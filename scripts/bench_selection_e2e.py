"""End-to-end selector benchmark on a real (tiny) model, with the power to decide between selectors.

``--task countdown`` (default): Countdown, the demo's 1.1M-parameter Qwen2 and GRPO recipe
(``mmdps.demos.RECIPES["countdown"]``); ``--task visual``: the visual pack, the VL demo's 1.4M-parameter
Qwen2-VL and recipe (``RECIPES["vl"]``). One shared SFT warm start per work folder, seeded by
``--data-seed`` with the data draw and regime c's screening (default 0: the draws of the runs in
docs/benchmarks.md); everything after the data and the warm start is the same harness (:class:`BenchTask`
holds what differs). Three regimes, each with its own training pool and rollout budget
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
launched; runs still going at ``--hard-limit`` are stopped and left out. Then the summary is built from the
per-run JSONs (``summarize_selection_e2e.py``, which also reports over several warm starts' work folders):
``summary.json``, ``table.md``, ``curves.png``, ``diagnostics.png`` and, with ``--archive``, ``runs.tar.gz``.

Commands (docs/benchmarks.md)::

    python scripts/bench_selection_e2e.py --device cuda --workers 14 --time-limit 300 --hard-limit 390 \\
        --work /tmp/bench --out "$OUT" --archive
    python scripts/summarize_selection_e2e.py outputs/bench    # tables/plots from run JSONs
    python scripts/bench_selection_e2e.py --data-seed 1 --work /tmp/bench-d1 ...   # another warm start
    python scripts/bench_selection_e2e.py --tiny --workers 2 --work /tmp/t --out /tmp/t/out   # smoke test
    python scripts/bench_selection_e2e.py --task visual --device cuda ...   # the same on the VL task

Nothing here imports math-verify, qwen-vl-utils or datasets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from mmdps.demos import RECIPES, EvalCallback, Recipe, renumber, step_record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_e2e_runs import MIX_NOT_MET, OPTIONAL_RUNS, RUNS, TASK_RECIPES, load_runs  # noqa: E402
from summarize_selection_e2e import write_summary  # noqa: E402

MIX_C = (0.15, 0.65, 0.20)  # regime c: always solved, never solved, learnable
SCREEN_SAMPLES = 16
SCREEN_SEED = 12345  # + the data seed
# What a run keeps of the trainer's per-step metrics (with the parameter update's norm).
STEP_KEYS = ("rollouts", "rollouts_total", "rollout_rounds", "acc_mean", "effective_ratio", "zero_variance_share",
             "informative_token_share", "completion_tokens", "grad_norm", "selector/prediction_accuracy",
             "prompts/distinct_total", "prompts/repeat_share", "prompts/mean_visits", "time/step")


# ---------------------------------------------------------------------- settings
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/bench", help="summary, table, plots (and runs.tar.gz)")
    p.add_argument("--work", default=None, help="warm start, data and per-run JSONs (default: --out)")
    p.add_argument("--task", choices=sorted(TASKS), default="countdown",
                   help="countdown: the demo's tiny Qwen2; visual: the VL demo's tiny Qwen2-VL")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--workers", type=int, default=2, help="parallel runs (processes, one torch thread each)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds after which no run is launched")
    p.add_argument("--hard-limit", type=float, default=None, help="seconds after which running runs are stopped")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seeds the SFT warm start, the data draw and regime c's screening: one warm start per "
                        "work folder (default 0: the draws of the runs in docs/benchmarks.md)")
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
    args.sft_steps = TASKS[args.task].recipe.settings().sft_steps if args.sft_steps is None else args.sft_steps
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
def stream(name: str, data_seed: int) -> str:
    """The random stream of one set: its name, suffixed by a non-zero data seed (data seed 0 draws exactly
    what the benchmark drew before the option existed)."""
    return name if data_seed == 0 else f"{name}@{data_seed}"


def _items(problems: list[dict], levels: list[int], source: str) -> list:
    from mmdps import tasks
    from mmdps.demos.countdown import make_item

    pack = tasks.get("countdown", template="compact")
    return [make_item(pack, problem, level, id=index, source=source)
            for index, (problem, level) in enumerate(zip(problems, levels, strict=True))]


class ProblemSource:
    """Distinct Countdown problems, never one twice across the sets it hands out."""

    def __init__(self, data_seed: int = 0) -> None:
        self.seen: set = set()
        self.data_seed = data_seed

    def take(self, configs: tuple, level_ids: list[int], n: int, seed: str) -> tuple[list[dict], list[int]]:
        from mmdps.demos.countdown import problem_key
        from mmdps.tasks.countdown import generate_problems

        seed = stream(seed, self.data_seed)
        ask = n
        while True:
            try:
                problems = generate_problems(ask + len(self.seen) // 4, levels=configs, seed=seed)
            except ValueError:  # a small level space is exhausted: take what exists
                problems = generate_problems(ask, levels=configs, seed=seed)
            fresh = [p for p in problems if problem_key(p) not in self.seen][:n]
            if len(fresh) == n or ask > 8 * n:
                break
            ask *= 2
        if len(fresh) < n:
            raise RuntimeError(f"only {len(fresh)} distinct problems left for {seed!r}, need {n}")
        self.seen |= {problem_key(p) for p in fresh}
        return fresh, [level_ids[p["level"]] for p in fresh]


def build_countdown_data(args) -> dict[str, list]:
    """SFT problems first (the demo's recipe), then test, validation and the pools from what is left."""
    from mmdps.demos.countdown import SFT_PROBLEMS_PER_LEVEL
    from mmdps.tasks.countdown import TINY_LEVELS, CountdownConfig

    source = ProblemSource(args.data_seed)
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
    from mmdps.demos.vl import LEVEL_NAMES, VLDemoSettings

    pack = tasks.get("visual")
    per_level = 8 if args.tiny else VLDemoSettings().sft_per_level

    def load(split: str, num: int, **options) -> list:
        return pack.load(None, split=f"bench-{split}", seed=args.data_seed, num=num, **options)

    size = args.pool[2]
    hard = int(size * MIX_C[1] * 1.5)
    return {"sft": load("sft", per_level * len(LEVEL_NAMES)),
            "test": load("test", args.test_size), "validation": load("validation", args.val_size),
            "pool_a": load("pool-a", args.pool[0]), "pool_b": load("pool-b", args.pool[1]),
            "c_hard": load("pool-c-fine-angles", hard // 2, levels=["angle", "complement", "third"], angle_step=1)
            + load("pool-c-unlearned", hard - hard // 2, levels=["number", "sum", "third"]),
            "c_mid": load("pool-c-mid", int(size * MIX_C[2] * 3))}


@dataclasses.dataclass(frozen=True)
class BenchTask:
    """What differs between the benchmark's tasks: the demo recipe (model, SFT examples, engine, trainer
    configuration), the benchmark's data and which SFT levels are regime c's "too easy" candidates."""

    recipe: Recipe
    build_data: Callable[[argparse.Namespace], dict[str, list]]
    easy_levels: tuple[int, ...]


TASKS = {
    "countdown": BenchTask(RECIPES[TASK_RECIPES["countdown"]], build_countdown_data, easy_levels=(0, 1)),
    "visual": BenchTask(RECIPES[TASK_RECIPES["visual"]], build_visual_data, easy_levels=(0, 3)),  # digit, max
}


def prepare(args) -> dict[str, Any]:
    """Data, the SFT warm start, regime c's screened pool and the shared start evaluation (cached in --work)."""
    import torch

    from mmdps.demos import warm_start
    from mmdps.models.loading import load_policy

    task = TASKS[args.task]
    work = Path(args.work)
    prep_path = work / "prep.pkl"
    key = {k: getattr(args, k) for k in ("task", "pool", "test_size", "val_size", "sft_steps", "batch_size",
                                         "num_generations", "tiny", "data_seed")}
    if prep_path.is_file():
        prep = pickle.loads(prep_path.read_bytes())
        if {"data_seed": 0, **prep["key"]} == key:  # caches from before --data-seed are data seed 0
            print(f"reusing the prepared data and warm start in {work}", flush=True)
            return prep
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = task.build_data(args)
    print(f"data: {len(data['sft'])} SFT problems, test {len(data['test'])}, validation {len(data['validation'])} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    settings = task.recipe.settings(seed=args.data_seed, threads=1, sft_steps=args.sft_steps, progress=False)
    device = torch.device(args.device)
    model_dir = work / "warm-start"
    t0 = time.perf_counter()
    sft = warm_start(task.recipe, settings, data["sft"], model_dir, device=device,
                     log=lambda line: print(line, flush=True))
    print(f"warm start (data seed {args.data_seed}): {sft['steps']} SFT steps in {time.perf_counter() - t0:.0f} s, "
          f"loss {sft['final_loss']:.3f}", flush=True)

    model, processor = load_policy(model_dir, dtype="float32")
    engine = task.recipe.make_engine(model.to(device), processor)
    t0 = time.perf_counter()
    pool_c, composition = screen_pool_c(args, engine, data)
    print(f"regime c pool: {composition} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not composition["mix_met"]:
        print(f"WARNING: {MIX_NOT_MET}", flush=True)
    pools = {"a": renumber(data["pool_a"]), "b": renumber(data["pool_b"]), "c": renumber(pool_c)}
    start = {name: evaluate(engine, data["test"], data["validation"], pools[name], args, seed=0) for name in pools}
    prep = {"key": key, "model_dir": str(model_dir), "test": renumber(data["test"]),
            "validation": renumber(data["validation"]), "pools": pools, "start": start,
            "pool_c_composition": composition, "sft_steps": sft["steps"], "sft_loss": sft["final_loss"]}
    prep_path.write_bytes(pickle.dumps(prep))
    return prep


def screen_pool_c(args, engine, data) -> tuple[list, dict]:
    """Regime c's pool: always-solved SFT problems of the two easiest levels, never-solved hard ones, mixed
    fresh ones (MIX_C shares)."""
    size = args.pool[2]
    want = [int(round(size * share)) for share in MIX_C]
    rng = np.random.default_rng(args.data_seed)
    easy = [item for item in data["sft"] if item.metadata["difficulty"] in TASKS[args.task].easy_levels]
    easy_cand = [easy[i] for i in rng.permutation(len(easy))]  # Countdown: ~2,000, 8% solved 16/16 (H100 run)
    picked = []
    samples = 2 if args.tiny else SCREEN_SAMPLES
    rates = sample_success(engine, easy_cand + data["c_hard"] + data["c_mid"], samples, args,
                           seed=SCREEN_SEED + args.data_seed)
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
    """Per item, the success rate of ``k`` completions (the groups of :func:`mmdps.rollout.scoring.rollout_and_score`,
    each scored with the item's verifier and metadata), ``--eval-batch`` sequences per generate call."""
    from mmdps.rollout.base import SamplingParams
    from mmdps.rollout.scoring import rollout_and_score

    max_new_tokens = TASKS[args.task].recipe.settings().max_new_tokens
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    chunk = max(1, args.eval_batch // k)
    rates: list[float] = []
    for start in range(0, len(items), chunk):
        scored = rollout_and_score(engine, items[start:start + chunk], k, sampling)
        rates += [group.success_rate for group in scored.groups]
    return np.asarray(rates, dtype=float)


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
    recipe = TASKS[args.task].recipe
    settings = recipe.settings(seed=seed, threads=1, batch_size=args.batch_size,
                               num_generations=args.num_generations, pool_size=len(pool), progress=False)
    config = recipe.grpo_config(settings, Path(prep["model_dir"]), Path(args.work) / "scratch" / tag,
                                selector=selector, selector_kwargs=kwargs, max_steps=10**6)
    config = dataclasses.replace(config, candidate_ratio=ratio, bf16=False, log_completions_steps=0)
    torch.manual_seed(seed)
    trainer = GRPOTrainer(config, items=pool)
    update_norm = UpdateNorm(trainer.unwrapped_model)
    recorder = EvalCallback(lambda trainer: evaluate(trainer.engine, prep["test"], prep["validation"], pool, args,
                                                     seed=1000 + len(recorder.curve)),
                            at=[regime.budget * (i + 1) / args.evals for i in range(args.evals)],
                            record=lambda metrics, seconds: step_record(metrics, STEP_KEYS, update_norm=update_norm()))
    recorder.curve.append({**prep["start"][job["regime"]], "rollouts": 0, "step": 0, "train_seconds": 0.0})
    started = time.perf_counter()
    trainer.train(stop=RolloutBudget(regime.budget), callbacks=[recorder])
    result = {**job, "task": args.task, "data_seed": args.data_seed, "selector": selector, "selector_kwargs": kwargs,
              "candidate_ratio": ratio, "budget": regime.budget, "pool_size": len(pool), "curve": recorder.curve,
              "steps": recorder.steps, "train_seconds": recorder.train_seconds,
              "wall_seconds": time.perf_counter() - started, "device": args.device}
    path = Path(args.work) / "runs" / f"{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=float))
    tmp.replace(path)
    return {"tag": tag, "seconds": result["wall_seconds"], "steps": len(recorder.steps)}


class UpdateNorm:
    """Called after each optimizer step: the norm of the change of ``model``'s trainable parameters since the
    previous call (the first: since construction)."""

    def __init__(self, model) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.before = self._flat()

    def _flat(self):
        import torch

        return torch.cat([p.detach().flatten() for p in self.params])

    def __call__(self) -> float:
        after = self._flat()
        norm = float((after - self.before).norm())
        self.before = after
        return norm


# ---------------------------------------------------------------------- orchestration
def run_all(args) -> bool:
    """Prepare, then run the plan in worker processes; True when runs were stopped at the hard limit."""
    started = time.perf_counter()
    existing = load_runs(Path(args.work))
    others = {run.get("task", "countdown") for run in existing} - {args.task}
    if others:
        raise SystemExit(f"--work {args.work} holds runs of task {', '.join(sorted(others))}; "
                         f"give --task {args.task} its own --work folder")
    seeds = {int(run.get("data_seed", 0)) for run in existing} - {args.data_seed}
    if seeds:
        raise SystemExit(f"--work {args.work} holds runs of data seed {', '.join(map(str, sorted(seeds)))} (another "
                         f"warm start); give --data-seed {args.data_seed} its own --work folder")
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


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    stopped = run_all(args)
    write_summary([Path(args.work)], Path(args.out), args.archive)
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)
    if stopped:  # do not wait at exit for the executor of the runs stopped at the hard limit
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
