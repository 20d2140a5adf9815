"""A complete third-party task pack: modular arithmetic, with its own verifier.

docs/adding_a_task.md includes this file verbatim; tests/test_adding_a_task.py checks that they
agree and that the pack works.
"""

from __future__ import annotations

import random
import re

from mmdps.data.loaders import Row, build_items, read_rows
from mmdps.tasks import TaskPack, register
from mmdps.verifiers import register as register_verifier

ANSWER = re.compile(r"<answer>\s*(-?\d{1,12})\s*</answer>")


@register_verifier("modmath")
def verify_modmath(completion: str, ground_truth: int, /, **item) -> dict[str, float]:
    """1.0 for the right residue in the last <answer></answer>, 0.1 for a wrong one, 0.0 for none.

    Model output is untrusted: a bounded regular expression reads it; nothing is evaluated.
    """
    found = ANSWER.findall(completion[-10_000:])
    if not found:
        return {"score": 0.0, "acc": 0.0, "format": 0.0}
    correct = int(found[-1]) == int(ground_truth)
    return {"score": 1.0 if correct else 0.1, "acc": float(correct), "format": 1.0}


@register
class ModMathPack(TaskPack):
    """Compute a * b mod m: generated (seeded) or read from rows {"a", "b", "m"}."""

    name = "modmath"
    verifier = "modmath"
    description = "a * b mod m, generated or from JSON/JSONL/parquet rows"
    templates = {"answer": "{question}\nReply with the number only, inside <answer></answer>."}
    default_template = "answer"

    def load(self, source=None, *, split="train", limit=None, skip_invalid=False, seed=0, **options):
        # call_loader checks the options against the loader's keywords: a typo (nmu=5) is a clear
        # UnknownOptionError naming the valid options, not a TypeError from deep inside.
        if source is None:
            rows = self.call_loader(self._generate, options, mode="generator, source=None", split=split, seed=seed)
        else:  # JSON, JSONL, parquet, datasets folders
            rows = self.call_loader(read_rows, options, mode="files", source=source, split=split)
        return build_items(rows, self._to_item, source=source or "generator", limit=limit,
                           skip_invalid=skip_invalid)

    def _generate(self, *, split, seed, num=100):
        rng = random.Random(f"modmath:{split}:{seed}")  # the split is part of the seed: train and test differ
        return [Row({"a": rng.randint(2, 99), "b": rng.randint(2, 99), "m": rng.randint(2, 20)},
                    index, f"generated row {index}") for index in range(num)]

    def _to_item(self, row: Row):
        try:
            a, b, m = (int(row.data[key]) for key in ("a", "b", "m"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{row.where}: need integer fields a, b and m ({exc!r}); "
                             "fix the row or pass skip_invalid=True") from exc
        if m < 2:
            raise ValueError(f"{row.where}: the modulus m must be at least 2, got {m}")
        return self.make_item(id=row.index, question=f"What is {a} * {b} mod {m}?", ground_truth=a * b % m,
                              metadata={"row": row.index, "difficulty": len(str(m))})
