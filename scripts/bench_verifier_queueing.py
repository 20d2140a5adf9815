"""Latency of verifier calls when many threads verify at once, and whether correct answers queued behind
pathological ones still score correct (table + JSON).

Trainers score completions from ``reward_workers`` threads; off the main thread every math-verify call
goes to a pool of ``MMDPS_VERIFIER_WORKERS`` worker processes (default 2). Each round starts
``--threads`` threads verifying a pathological answer, then ``--correct`` threads verifying correct
answers that need math-verify (no exact match); it measures, per call, the wall time from the call to
its verdict (the queue for the workers included) and counts the correct answers scored correct.

    python scripts/bench_verifier_queueing.py                  # 8 pathological + 8 correct, 2 workers, 2 s
    python scripts/bench_verifier_queueing.py --threads 16 --correct 0 --repeats 3 --out outputs/q.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from mmdps import verifiers
from mmdps.verifiers import base
from mmdps.verifiers.isolation import pool_settings
from mmdps.verifiers.math import warm_up

PATHOLOGICAL = [r"\boxed{9^{9^{9}}}", r"\boxed{10^{10^{10}}}", r"\boxed{(10^{8})!}",
                r"\boxed{\int_0^1 e^{x^{x^{x}}} dx}"]


def one_round(threads: int, correct: int, time_limit: float) -> dict[str, list[float]]:
    """Per-call latencies of the pathological and the correct calls, and the correct calls' acc."""
    out: dict[str, list[float]] = {"slow": [], "correct": [], "acc": []}
    lock = threading.Lock()

    def verify(answer: str, gold: str, kind: str) -> None:
        start = time.perf_counter()
        acc = verifiers.get("math")(answer, gold, time_limit=time_limit)["acc"]
        with lock:
            out[kind].append(time.perf_counter() - start)
            if kind == "correct":
                out["acc"].append(acc)

    jobs = [threading.Thread(target=verify, args=(PATHOLOGICAL[i % len(PATHOLOGICAL)], "5", "slow"))
            for i in range(threads)]
    jobs += [threading.Thread(target=verify, args=(rf"\boxed{{\frac{{{i + 1}}}{{{2 * i + 2}}}}}", "0.5", "correct"))
             for i in range(correct)]
    for index, job in enumerate(jobs):
        job.start()
        if index == threads - 1:
            time.sleep(0.1)  # the pathological answers are queued first
    for job in jobs:
        job.join()
    return out


def _summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    return {"max_s": max(latencies), "median_s": statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8, help="threads verifying a pathological answer")
    parser.add_argument("--correct", type=int, default=8, help="threads verifying a correct answer, started after")
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="outputs/bench_verifier_queueing.json")
    args = parser.parse_args()
    settings = pool_settings()
    warm_up()
    one_round(2, 0, args.time_limit)  # start the worker processes (a one-off cost, not measured)
    before = base.timeout_counts()
    rounds = [one_round(args.threads, args.correct, args.time_limit) for _ in range(args.repeats)]
    after = base.timeout_counts()
    slow = [latency for round_ in rounds for latency in round_["slow"]]
    correct = [latency for round_ in rounds for latency in round_["correct"]]
    accs = [acc for round_ in rounds for acc in round_["acc"]]
    result = {"threads": args.threads, "correct_threads": args.correct, "time_limit_s": args.time_limit,
              "repeats": args.repeats, "workers": settings["size"], "queue_timeout_s": settings["queue_timeout_s"],
              "pathological": _summary(slow), "correct": _summary(correct),
              "correct_scored_correct": f"{int(sum(accs))}/{len(accs)}",
              "timeouts": {kind: after[kind] - before[kind] for kind in after}}
    print(f"{settings['size']} workers, limit {args.time_limit:g} s, {args.repeats} round(s) of {args.threads} "
          f"pathological then {args.correct} correct answers")
    for kind, summary in (("pathological", result["pathological"]), ("correct", result["correct"])):
        if summary:
            print(f"  {kind:>12}: per call max {summary['max_s']:.2f} s, median {summary['median_s']:.2f} s")
    print(f"  correct answers scored correct: {result['correct_scored_correct']}; time-outs: {result['timeouts']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
