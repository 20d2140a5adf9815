"""Time select + update per step and measure selector memory, for 10^5..10^7 prompts, on one core.

Each (selector, pool size, phase) runs in a fresh subprocess so RSS figures are not polluted:
* ``start``: a new selector, nothing observed yet;
* ``late``: after ``--observed`` distinct prompts (default 10^6, capped by the pool) were observed.
Memory is reported two ways: the selector's array bytes (``memory_bytes()``) and the process RSS
growth from before the selector was built to the end of the timed steps.

    python scripts/bench_selectors.py                       # DPS at 1e5, 1e6, 1e7 (the goal is DPS at 1e7)
    python scripts/bench_selectors.py --selectors all --sizes 100000 1000000
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goal says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def all_selectors() -> list[str]:
    """Every selector of the registry once (an alias such as ``dapo`` = ``ds`` is timed under its first name)."""
    from mmdps.selection import SELECTORS

    names: dict[type, str] = {}
    for name, cls in SELECTORS.items():
        names.setdefault(cls, name)
    return list(names.values())


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def one(name: str, n: int, phase: str, observed: int, batch: int, steps: int, k: int, seed: int) -> dict:
    from mmdps.selection import make_selector

    rng = np.random.default_rng(seed)
    rss0 = rss_bytes()
    extra = {"warmup_epochs": 0} if name == "cdas" else {}  # time CDAS's own selection, not its uniform warm-up
    if name == "mopps":
        extra["candidate_ratio"] = 16.0  # the official MATH scripts' ts_ratio (the table in docs was made with it)
    sel = make_selector(name, n, seed=seed, rollouts_per_prompt=k, **extra)
    warm_s = 0.0
    if phase == "late":
        t0 = time.perf_counter()
        ids = rng.permutation(n)[: min(observed, n)]
        for chunk in np.array_split(ids, max(1, ids.size // 250_000)):
            sel.update(chunk, rng.integers(0, k + 1, chunk.size) / k)
        warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        ids = sel.select(batch)
        rates = rng.integers(0, k + 1, ids.size) / k  # outside the timed region would hide nothing: it is O(B)
        sel.update(ids, rates)
        times.append(time.perf_counter() - t0)
    rss1 = rss_bytes()
    times_arr = np.array(times)
    return {
        "selector": name, "num_prompts": n, "phase": phase,
        "observed_before": int(min(observed, n)) if phase == "late" else 0,
        "batch_size": batch, "steps": steps, "mean_step_s": float(times_arr.mean()),
        "median_step_s": float(np.median(times_arr)),
        "max_step_s": float(times_arr.max()), "array_bytes": sel.memory_bytes(), "rss_delta_bytes": rss1 - rss0,
        "warmup_s": warm_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selectors", nargs="+", default=["dps"],
                        help="selector names, or 'all' for every registered selector (default dps)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--phases", nargs="+", default=["start", "late"], choices=["start", "late"])
    parser.add_argument("--observed", type=int, default=1_000_000, help="distinct prompts observed before 'late'")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--k", type=int, default=8, help="rollouts per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/bench_selectors.json")
    parser.add_argument("--one", nargs=3, metavar=("NAME", "N", "PHASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        name, n, phase = args.one
        res = one(name, int(n), phase, args.observed, args.batch_size, args.steps, args.k, args.seed)
        print(json.dumps(res))
        return 0

    names = all_selectors() if args.selectors == ["all"] else args.selectors
    from mmdps.selection import SELECTORS

    unknown = [name for name in names if name.lower() not in SELECTORS]
    if unknown:
        parser.error(f"unknown selector(s) {unknown}; choose from {sorted(SELECTORS)} or 'all'")
    results = []
    header = (f"{'selector':<8} {'prompts':>10} {'phase':<5} {'mean s/step':>11} {'max s/step':>10} "
              f"{'arrays GiB':>10} {'RSS+ GiB':>9}")
    print(header)
    print("-" * len(header))
    for name in names:
        for n in args.sizes:
            for phase in args.phases:
                cmd = [sys.executable, __file__, "--one", name, str(n), phase, "--observed", str(args.observed),
                       "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--k", str(args.k),
                       "--seed", str(args.seed)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(f"{name} {n} {phase} failed:\n{proc.stderr}", file=sys.stderr)
                    return 1
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(res)
                print(f"{name:<8} {n:>10,} {phase:<5} {res['mean_step_s']:>11.4f} {res['max_step_s']:>10.4f} "
                      f"{res['array_bytes'] / 2**30:>10.3f} {res['rss_delta_bytes'] / 2**30:>9.3f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "numpy": np.__version__, "cpu_count": os.cpu_count()}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
