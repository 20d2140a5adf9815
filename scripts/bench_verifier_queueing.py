"""Latency of one verifier call when many threads verify pathological answers at once (table + JSON).

Trainers score completions from ``reward_workers`` threads; off the main thread every math-verify call
goes to a pool of ``MMDPS_VERIFIER_WORKERS`` worker processes (default 2). This measures, per call,
the wall time from the call to its verdict when ``--threads`` threads each verify a pathological
answer together, so that the queue for the workers is part of the figure.

    python scripts/bench_verifier_queueing.py                  # 8 threads, 2 workers, 2 s limit
    python scripts/bench_verifier_queueing.py --threads 16 --repeats 3 --out outputs/bench_queueing.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from mmdps import verifiers
from mmdps.verifiers.math import warm_up

PATHOLOGICAL = [r"\boxed{9^{9^{9}}}", r"\boxed{10^{10^{10}}}", r"\boxed{(10^{8})!}",
                r"\boxed{\int_0^1 e^{x^{x^{x}}} dx}"]


def one_round(threads: int, time_limit: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def verify(index: int) -> None:
        start = time.perf_counter()
        verifiers.get("math")(PATHOLOGICAL[index % len(PATHOLOGICAL)], "5", time_limit=time_limit)
        with lock:
            latencies.append(time.perf_counter() - start)

    workers = [threading.Thread(target=verify, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="outputs/bench_verifier_queueing.json")
    args = parser.parse_args()
    warm_up()
    one_round(2, args.time_limit)  # start the worker processes (a one-off cost, not measured)
    rounds = [one_round(args.threads, args.time_limit) for _ in range(args.repeats)]
    every = [latency for round_ in rounds for latency in round_]
    result = {"threads": args.threads, "time_limit_s": args.time_limit, "repeats": args.repeats,
              "max_s": max(every), "median_s": statistics.median(every), "mean_s": statistics.fmean(every),
              "per_round_max_s": [max(round_) for round_ in rounds]}
    print(f"{args.threads} threads x pathological answer, limit {args.time_limit:g} s: per call max "
          f"{result['max_s']:.2f} s, median {result['median_s']:.2f} s (rounds' max: "
          f"{', '.join(f'{m:.2f}' for m in result['per_round_max_s'])})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
