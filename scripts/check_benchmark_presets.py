"""Check the benchmark presets' scoring against the real released annotations (no model involved).

For every published problem, the gold answer written the way a model would (``\\boxed{<answer>}``, and
for multiple choice also ``\\boxed{<letter>}``) must be graded correct; for MathVista the rebuilt
zero-shot query must equal the published one. Prints the counts and writes them as JSON.

    python scripts/check_benchmark_presets.py --mathvista MathVista/data/testmini.json \\
        --mathvista-queries MathVista/data/query.json --mathverse MathVerse/data/testmini_text_only.json \\
        --output runs/check_presets.json

The files are the GitHub releases (lupantech/MathVista, ZrrSkywalker/MathVerse); images are not needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmdps.presets.mathverse import choices_in_question, gold_letters, verify_mathverse
from mmdps.presets.mathvista import official_query, verify_mathvista
from mmdps.verifiers.geometry import LETTERS


def boxed(text: str) -> str:
    return f"<think>known</think> \\boxed{{{text}}}"


def check_mathvista(rows: dict, queries: dict | None) -> dict:
    value_ok, letter_ok, letter_total, query_ok, misses = 0, 0, 0, 0, []
    for pid, row in rows.items():
        fields = {k: row[k] for k in ("question_type", "answer_type", "precision", "unit", "choices")}
        if verify_mathvista(boxed(row["answer"]), row["answer"], **fields)["acc"] == 1.0:
            value_ok += 1
        else:
            misses.append(pid)
        if row["choices"]:
            letter_total += 1
            letter = LETTERS[row["choices"].index(row["answer"])]
            letter_ok += verify_mathvista(boxed(letter), row["answer"], **fields)["acc"] == 1.0
        if queries is not None:
            query_ok += official_query(row["question"], question_type=row["question_type"],
                                       answer_type=row["answer_type"], precision=row["precision"], unit=row["unit"],
                                       choices=row["choices"]) == queries[pid]
    return {"problems": len(rows), "gold_value_accepted": value_ok, "gold_letter_accepted": letter_ok,
            "multiple_choice": letter_total, "queries_reproduced": query_ok if queries is not None else None,
            "value_not_accepted_pids": misses}


def check_mathverse(rows: list) -> dict:
    ok, misses, letters_parsed, multi = 0, [], 0, 0
    for row in rows:
        choices = choices_in_question(row["question"])
        if row["question_type"] == "multi-choice":
            multi += 1
            letters_parsed += gold_letters(row["answer"]) is not None
        verdict = verify_mathverse(boxed(row["answer"]), row["answer"], question_type=row["question_type"],
                                   choices=choices)
        if verdict["acc"] == 1.0:
            ok += 1
        else:
            misses.append(row["sample_index"])
    return {"samples": len(rows), "gold_accepted": ok, "multi_choice": multi, "gold_is_letters": letters_parsed,
            "not_accepted_sample_indices": misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mathvista", type=Path, help="MathVista data/testmini.json (rows keyed by pid)")
    parser.add_argument("--mathvista-queries", type=Path, help="MathVista data/query.json")
    parser.add_argument("--mathverse", type=Path, help="MathVerse testmini.json or testmini_text_only.json")
    parser.add_argument("--output", type=Path, help="write the counts here as JSON")
    args = parser.parse_args()
    results = {}
    if args.mathvista:
        queries = json.loads(args.mathvista_queries.read_text()) if args.mathvista_queries else None
        results["mathvista"] = check_mathvista(json.loads(args.mathvista.read_text()), queries)
    if args.mathverse:
        results["mathverse"] = check_mathverse(json.loads(args.mathverse.read_text()))
    print(json.dumps(results, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
