"""MathVerse testmini (Zhang et al., 2024, "MathVerse: Does Your Multi-modal LLM Truly See the
Diagrams in Visual Math Problems?"), as published on the hub (``AI4Math/MathVerse``) and on GitHub.

Rows: ``sample_index, problem_index, problem_version`` (Text Dominant, Text Lite, Vision Intensive,
Vision Dominant, Vision Only; the ``testmini_text_only`` split has Text Only), ``question`` (multiple
choice questions list their choices as ``A:40°`` lines after ``Choices:``), ``image`` (the image in the
parquet; a path such as ``images_version_1-4/image_685.png`` in the json), ``answer`` (a letter for
multiple choice, a value for free form), ``question_type`` (``multi-choice`` / ``free-form``), ``metadata``
(``split, source, subject, subfield``), ``query_wo`` (direct-answer prompt), ``query_cot`` (reasoning
prompt) and, in later releases, ``question_for_eval``. Local copies: ``testmini.parquet`` or
``testmini.json`` (images unzipped beside it).

Scoring: the official pipeline asks GPT to extract the answer and GPT again to judge it against the
gold (``--quick_match`` compares strings). Here both are rules: the answer is read by
:func:`mmdps.presets.answers.final_answer` (a boxed answer, an answer phrase, a last line holding only the
answer); a multiple-choice answer must name the
gold letter(s) (a value answer counts as the choice it equals, when the question lists choices); a
free-form answer must equal the gold value (units, degree signs, ``$``, ``~`` and ``x =`` stripped,
spaces ignored; numbers within 0.1%).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdps.data.images import load_image
from mmdps.data.item import Item
from mmdps.data.layouts import require
from mmdps.data.readers import Row
from mmdps.presets import register
from mmdps.presets.answers import final_answer
from mmdps.presets.base import BenchmarkPreset, mapping_field, optional_text, row_id
from mmdps.verifiers import register as register_verifier
from mmdps.verifiers.base import (
    DEFAULT_TIME_LIMIT_S,
    GroundTruthError,
    VerdictDict,
    never_raise,
    verdict,
)
from mmdps.verifiers.geometry import (
    FORMAT_SCORE,
    LETTERS,
    clean_value,
    is_correct,
)

VERIFIER = "mathverse"
VERSIONS = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only", "Text Only")
BREAKDOWNS = ("problem_version", "subject", "subfield")
# "A:40°", "(B) 60", "C. 120" after a "Choices:" line
_CHOICE_LINE = re.compile(r"^\s*\(?([A-H])\)?\s*[:：.)]\s*(.+?)\s*$")
# LaTeX spacing and math-mode marks, and the degree sign that some published answers carry mis-decoded
_NOISE = str.maketrans({"$": None, "~": None, "掳": "°"})
_GOLD_LETTERS = re.compile(r"^\(?([A-H])\)?(?:\s*(?:[\n,，、;]|and)\s*\(?([A-H])\)?)*$")


def choices_in_question(question: str) -> list[str] | None:
    """The choice texts a MathVerse question lists after ``Choices:`` (in letter order), or None."""
    _, marker, tail = question.partition("Choices:")
    if not marker:
        return None
    found: dict[str, str] = {}
    for line in tail.splitlines():
        match = _CHOICE_LINE.match(line)
        if match and match.group(1) not in found:
            found[match.group(1)] = match.group(2)
    letters = LETTERS[:len(found)]
    return [found[letter] for letter in letters] if found and set(found) == set(letters) else None


def gold_letters(answer: str) -> list[str] | None:
    """The gold letters of a multiple-choice answer (``"B"``, ``"(C)"``, ``"C\\nD"``), or None for a value."""
    text = answer.strip()
    if not _GOLD_LETTERS.match(text):
        return None
    return sorted(set(re.findall(r"[A-H]", text)))


@never_raise
def verify_mathverse(completion: str, ground_truth: Any, /, *, question_type: str = "free-form",
                     choices: Sequence[str] | None = None, time_limit: float = DEFAULT_TIME_LIMIT_S,
                     **_item: Any) -> VerdictDict:
    """Grade a MathVerse completion (rules in the module docstring). ``format`` is 1 when an answer could be
    read; score: 1 if correct, else 0.1 x format."""
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise GroundTruthError(f"MathVerse ground truth must be the published answer string, got {ground_truth!r:.80}")
    letters = gold_letters(ground_truth) if question_type == "multi-choice" else None
    answer = final_answer(completion, choices=choices, single_choice=bool(letters) and len(letters or ()) == 1)
    if answer is None:
        acc = False
    elif letters and len(letters) > 1:  # several correct choices: name exactly those
        named = re.sub(r"\\text\{([^{}]*)\}", r"\1", answer)
        acc = sorted(set(re.findall(r"\b[A-H]\b", named))) == letters
    elif letters:
        acc = is_correct(answer, letters[0], choices, time_limit=time_limit)
    else:
        gold, answer = ground_truth.translate(_NOISE).strip(), answer.translate(_NOISE).strip()
        acc = (is_correct(answer, gold, time_limit=time_limit)
               or "".join(clean_value(answer).split()) == "".join(clean_value(gold).split()))
    fmt = answer is not None  # format: the rules could read an answer (what GPT extraction would add)
    return verdict(acc=acc, format=fmt, score=1.0 if acc else FORMAT_SCORE * fmt)


register_verifier(VERIFIER, verify_mathverse)


@register
class MathVerse(BenchmarkPreset):
    """MathVerse testmini (788 problems x 5 versions = 3,940 samples), graded by ``mathverse``.

    ``load`` options: ``prompt_field`` (``query_cot``, the official reasoning prompt (default);
    ``query_wo``, the direct-answer prompt of the leaderboard's "w/o" scores; or ``question``).
    The text-only ablation is ``--split testmini_text_only`` (hub config of the same name).
    """

    name = "mathverse"
    title = "MathVerse"
    verifier = VERIFIER
    description = "MathVerse testmini: multiple choice vs free form, five problem versions"
    hub_id = "AI4Math/MathVerse"
    hub_config = "testmini"
    default_split = "testmini"
    breakdowns = BREAKDOWNS
    local_files = ("{split}.parquet", "data/{split}-*.parquet", "{split}-*.parquet", "{split}.json",
                   "data/{split}.json")

    def rows(self, source: str, split: str):
        if split != "testmini" and not Path(source).exists():  # the hub keeps each split in its own config
            from mmdps.presets.base import hub_rows

            return hub_rows(source, split, config=split), None
        return super().rows(source, split)

    def convert(self, row: Row, *, image_dir: Path | None, prompt_field: str = "query_cot") -> Item:
        data = row.data
        if prompt_field not in ("query_cot", "query_wo", "question"):
            raise ValueError(f"mathverse: prompt_field must be 'query_cot', 'query_wo' or 'question', "
                             f"got {prompt_field!r}")
        sample_index = require(data, "sample_index", row.where)
        answer = str(require(data, "answer", row.where)).strip()
        question_type = str(require(data, "question_type", row.where))
        version = str(require(data, "problem_version", row.where))
        question_text = str(data.get("question") or "")
        prompt = str(require(data, prompt_field, row.where))
        image = data.get("image")
        images = [] if image in (None, "") or (isinstance(image, dict) and not any(image.values())) else [
            load_image(image, base_dir=image_dir, where=row.where)]
        if not images and version != "Text Only":
            raise ValueError(f"{row.where}: a {version} row needs its image; fix the row or pass skip_invalid=True")
        meta = mapping_field(data, "metadata", row.where)
        subject, subfield = optional_text(meta.get("subject")), optional_text(meta.get("subfield"))
        metadata = {"sample_index": str(sample_index), "problem_index": str(data.get("problem_index")),
                    "question_type": question_type, "choices": choices_in_question(question_text)}
        # the official script prints subfields per subject ("Plane Geometry-Area" differs from "Solid Geometry-Area")
        breakdowns = {"problem_version": version, "subject": subject,
                      "subfield": f"{subject}-{subfield}" if subject and subfield else subfield}
        item_id = row_id(sample_index, row)
        return self.benchmark_item(row, id=item_id, question=prompt, ground_truth=answer, images=images,
                                   metadata=metadata, breakdowns=breakdowns)


__all__ = ["VERSIONS", "MathVerse", "choices_in_question", "gold_letters", "verify_mathverse"]
