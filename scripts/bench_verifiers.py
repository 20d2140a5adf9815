"""Answers per second of each verifier on correct, wrong and adversarial mixes (table + JSON).

    python scripts/bench_verifiers.py                       # main thread (in-process SIGALRM guard)
                                                            #   -> outputs/bench_verifiers.json
    python scripts/bench_verifiers.py --threads 2           # from worker threads (worker processes)
    python scripts/bench_verifiers.py --golds data   # + how many benchmark golds math-verify parses
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mmdps import verifiers

MATH_CORRECT = [(r"\boxed{\frac12}", "0.5"), (r"\boxed{2}", "x=2"), (r"\boxed{\dfrac{3}{4}}", r"\frac34"),
                (r"\boxed{(1,2]}", r"\left(1,2\right]"), (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"), (r"\boxed{42}", "42")]
MATH_WRONG = [(r"\boxed{0.51}", "0.5"), (r"\boxed{3}", "x=2"), (r"\boxed{[1,2]}", "(1,2]"), ("no box", "1")]
ADVERSARIAL = [r"\boxed{9^{9^{9}}}", r"\boxed{" + "(" * 300 + "1" + ")" * 300 + "}", "x" * 1_000_000,
               "<answer>__import__('os')</answer>", r"\boxed{__import__('os')}"]
CD_GT = {"target": 24, "numbers": [2, 3, 4, 1]}
GEO_CHOICES = ["12", "13", "14", "15"]

MIXES = {
    "math": {
        "correct": [(f"<think>..</think> so {c}", g, {}) for c, g in MATH_CORRECT],
        "wrong": [(f"<think>..</think> so {c}", g, {}) for c, g in MATH_WRONG],
        "adversarial": [(a, "5", {}) for a in ADVERSARIAL],
    },
    "countdown": {
        "correct": [("<answer>(2+3+1)*4</answer>", CD_GT, {}), ("<answer>2*3*4*1</answer>", CD_GT, {})],
        "wrong": [("<answer>2*3*4</answer>", CD_GT, {}), ("<answer>2+3+4+1</answer>", CD_GT, {}), ("none", CD_GT, {})],
        "adversarial": [(a, CD_GT, {}) for a in ADVERSARIAL]
                       + [("<answer>" + "1+" * 100_000 + "1</answer>", CD_GT, {})],
    },
    "geometry": {
        "correct": [(r"<think>.</think>\boxed{B}", "B", {"choices": GEO_CHOICES}),
                    (r"<think>.</think>\boxed{13}", "B", {"choices": GEO_CHOICES}),
                    (r"<think>.</think>\boxed{4.243}", r"3\sqrt{2}", {}), (r"\boxed{60^\circ}", "60", {})],
        "wrong": [(r"<think>.</think>\boxed{C}", "B", {"choices": GEO_CHOICES}),
                  (r"<think>.</think>\boxed{4.2}", r"3\sqrt{2}", {}), ("none", "60", {})],
        "adversarial": [(a, "B", {"choices": GEO_CHOICES}) for a in ADVERSARIAL],
    },
}


def bench(name: str, cases: list, n: int, threads: int, time_limit: float) -> dict:
    verifier = verifiers.get(name)
    batch = [cases[i % len(cases)] for i in range(n)]
    random.Random(0).shuffle(batch)

    def one(case):
        completion, gold, item = case
        return verifier(completion, gold, time_limit=time_limit, **item)["acc"]

    verifier(*batch[0][:2], **batch[0][2])  # warm-up: imports, grammar, worker start
    start = time.perf_counter()
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            accs = list(pool.map(one, batch))
    else:
        accs = [one(c) for c in batch]
    elapsed = time.perf_counter() - start
    return {"answers": n, "seconds": round(elapsed, 4), "answers_per_s": round(n / elapsed, 1),
            "mean_acc": round(sum(accs) / n, 3)}


def gold_parse_report(data: Path) -> dict:
    """How many benchmark golds math-verify turns into sympy objects (the rest match by string only)."""
    from mmdps.verifiers.math import _parse_gold, gold_answers

    golds = []
    for name in ("math500", "aime", "amc", "minerva", "olympiad_bench"):
        for i, row in enumerate(json.loads((data / "math" / "test" / f"{name}.json").read_text())):
            golds += [(name, i, g) for g in gold_answers(row["answer"])]
    with open(data / "gsm8k" / "test.jsonl") as f:
        golds += [("gsm8k", i, json.loads(line)["answer"].split("####")[-1].strip()) for i, line in enumerate(f)]
    start, unparsed = time.perf_counter(), []
    for name, i, gold in golds:
        parsed = _parse_gold(gold)
        if not parsed or isinstance(parsed[0], str):
            unparsed.append(f"{name}[{i}]: {gold}")
    return {"golds": len(golds), "parsed": len(golds) - len(unparsed), "unparsed": unparsed,
            "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="answers per (verifier, mix); adversarial uses n/10")
    parser.add_argument("--threads", type=int, default=1, help=">1: call from a thread pool (worker processes)")
    parser.add_argument("--time-limit", type=float, default=2.0, help="per-answer limit passed to the verifiers")
    parser.add_argument("--golds", type=Path, default=None, help="shared data folder: also check gold parsing")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_verifiers.json"),
                        help="JSON report (default outputs/bench_verifiers.json; the folder is created)")
    args = parser.parse_args()

    rows = []
    for name, mixes in MIXES.items():
        for mix, cases in mixes.items():
            n = max(len(cases), args.n // 10 if mix == "adversarial" else args.n)
            rows.append({"verifier": name, "mix": mix, **bench(name, cases, n, args.threads, args.time_limit)})
    print(f"{'verifier':<10} {'mix':<12} {'answers':>8} {'seconds':>9} {'answers/s':>10} {'mean acc':>9}")
    for r in rows:
        print(f"{r['verifier']:<10} {r['mix']:<12} {r['answers']:>8} {r['seconds']:>9.3f} {r['answers_per_s']:>10.1f} "
              f"{r['mean_acc']:>9.3f}")
    report = {"threads": args.threads, "time_limit_s": args.time_limit, "rows": rows}
    if args.golds:
        report["gold_parsing"] = gold_parse_report(args.golds)
        g = report["gold_parsing"]
        print(f"\nmath-verify parses {g['parsed']}/{g['golds']} golds ({g['seconds']} s); by string only:")
        for line in g["unparsed"]:
            print("  " + re.sub(r"\s+", " ", line))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
