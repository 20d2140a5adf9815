"""MathVista testmini (Lu et al., 2024, "MathVista: Evaluating Mathematical Reasoning of Foundation
Models in Visual Contexts"), as published on the hub (``AI4Math/MathVista``) and on GitHub.

Rows: ``pid, question, image`` (a path such as ``images/1.jpg``), ``decoded_image`` (the image; hub
parquet only), ``choices`` (None for free-form), ``unit``, ``precision``, ``answer`` (a string: the
choice text for multiple choice), ``question_type`` (``multi_choice`` / ``free_form``), ``answer_type``
(``text`` / ``integer`` / ``float`` / ``list``), ``metadata`` (``task``, ``skills``, ``grade``, ``context``,
``category``, ``source``, ``language``, ...) and ``query`` (the official zero-shot prompt: hint, question,
unit and lettered choices). Local copies: the hub's ``data/testmini-*.parquet`` or the GitHub
``data/testmini.json`` (rows keyed by pid, images beside it under ``images/``).

Scoring follows the official ``calculate_score.py`` after answer extraction: a multiple-choice answer
becomes a choice (a letter picks it, else the choice nearest in edit distance), an integer answer is
``str(int(x))``, a float ``str(round(x, precision))``, a list its Python ``str``; the result must equal
``answer``. Extraction is rule-based (:mod:`mmdps.presets.answers`: a boxed answer, an answer phrase, a
last line holding only the answer), where the official pipeline asks GPT to extract the answer
(docs/evaluation.md says what that changes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdps.data.item import Item
from mmdps.data.layouts import require, whole_number
from mmdps.data.readers import Row
from mmdps.presets import register
from mmdps.presets.answers import final_answer
from mmdps.presets.base import BenchmarkPreset, mapping_field, optional_text, row_id, text_list
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
    parse_letter,
    to_number,
)

VERIFIER = "mathvista"
# official breakdown keys of calculate_score.py, in its order
BREAKDOWNS = ("question_type", "answer_type", "language", "source", "category", "task", "context", "grade",
              "skills")
MAX_EXTRACTION_CHARS = 300  # edit distances stay cheap on any model output


# ------------------------------------------------------------------------------- normalisation
def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _number(text: str, unit: str | None, time_limit: float) -> float | None:
    if unit:
        text = text.replace(unit, " ")
    cleaned = clean_value(text.replace("\\$", "")).replace("$", "").replace(",", "").strip()
    try:
        value: float | None = float(cleaned)
    except ValueError:
        value = to_number(cleaned, time_limit) if cleaned else None
    return value if value is not None and math.isfinite(value) else None


def _list_text(text: str) -> str | None:
    """``"[1, 2.5]"`` as Python prints the list of those numbers (the published list answers' form)."""
    tokens = re.findall(r"-?\d+(?:\.\d+)?", text)
    if not tokens:
        return None
    return str([float(t) if "." in t else int(t) for t in tokens])


def normalize_answer(extraction: str, *, question_type: str, answer_type: str, precision: Any = None,
                     choices: Sequence[str] | None = None, unit: str | None = None,
                     time_limit: float = DEFAULT_TIME_LIMIT_S) -> str | None:
    """The official ``normalize_extracted_answer`` on an extracted answer: a choice text, ``str(int)``,
    ``str(round(x, precision))`` or a list's ``str``; None when it cannot be normalised."""
    extraction = extraction.strip()[:MAX_EXTRACTION_CHARS]
    if not extraction:
        return None
    if question_type == "multi_choice":
        if not choices:
            raise GroundTruthError("a MathVista multi_choice item needs its choices")
        letters = LETTERS[:len(choices)]
        letter = parse_letter(extraction, letters)
        if letter is None:  # "(b) 12" -> b, as the official script reads it
            found = re.findall(r"\(([a-zA-Z])\)", extraction)
            letter = found[0].upper() if found and found[0].upper() in letters else None
        if letter is not None:
            return choices[letters.index(letter)]
        text = clean_value(extraction) if extraction not in choices else extraction
        return min(choices, key=lambda choice: edit_distance(text, choice))
    if answer_type in ("integer", "float"):
        value = _number(extraction, unit, time_limit)
        if value is None:
            return None
        if answer_type == "integer":
            return str(int(value))  # truncation, as the official int(float(x))
        digits = int(precision) if precision is not None and not (isinstance(precision, float) and
                                                                   math.isnan(precision)) else 0
        return str(round(value, digits))
    if answer_type == "list":
        return _list_text(extraction)
    return extraction


@never_raise
def verify_mathvista(completion: str, ground_truth: Any, /, *, question_type: str = "free_form",
                     answer_type: str = "text", precision: Any = None, choices: Sequence[str] | None = None,
                     unit: str | None = None, time_limit: float = DEFAULT_TIME_LIMIT_S, **_item: Any) -> VerdictDict:
    """Grade a MathVista completion: read the answer (:func:`mmdps.presets.answers.final_answer`), normalise
    it as the official script does, compare with the published answer string. ``format`` is 1 when an
    answer could be read; score: 1 if correct, else 0.1 x format."""
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise GroundTruthError(f"MathVista ground truth must be the published answer string, got {ground_truth!r:.80}")
    if completion.strip() in (choices or ()):
        extraction: str | None = completion.strip()  # the official quick path: the response is a choice
    else:
        extraction = final_answer(completion, choices=choices, single_choice=question_type == "multi_choice")
    prediction = None if extraction is None else normalize_answer(
        extraction, question_type=question_type, answer_type=answer_type, precision=precision, choices=choices,
        unit=unit, time_limit=time_limit)
    acc = prediction is not None and prediction == ground_truth.strip()
    fmt = extraction is not None  # format: the rules could read an answer (what GPT extraction would add)
    return verdict(acc=acc, format=fmt, score=1.0 if acc else FORMAT_SCORE * fmt)


register_verifier(VERIFIER, verify_mathvista)


# ------------------------------------------------------------------------------- preset
_HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at "
                    "the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, "
               "3, at the end.",
    1: "Hint: Please answer the question requiring a floating-point number with one decimal place and provide the "
       "final value, e.g., 1.2, 1.3, 1.4, at the end.",
    2: "Hint: Please answer the question requiring a floating-point number with two decimal places and provide the "
       "final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., "
            "[1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def official_query(question: str, *, question_type: str, answer_type: str, precision: float | None,
                   unit: str | None, choices: Sequence[str] | None) -> str:
    """The published zero-shot ``query`` (the hub's column, GitHub's query.json) for rows that lack it:
    hint, question with its unit, lettered choices."""
    key = question_type if question_type == "multi_choice" else (int(precision or 0) if answer_type == "float"
                                                                  else answer_type)
    lines = [_HINTS[key]] if key in _HINTS else []
    lines.append(f"Question: {question}" + (f" (Unit: {unit})" if unit else ""))
    if choices:
        lines += ["Choices:", *[f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices)]]
    return "\n".join(lines).strip()


@register
class MathVista(BenchmarkPreset):
    """MathVista testmini (1,000 problems): the published ``query`` as the question, graded by ``mathvista``.

    ``load`` options: ``prompt_field`` (``query``, the official prompt; or ``question`` for the bare
    question, to which the choices are then added).
    """

    name = "mathvista"
    title = "MathVista"
    verifier = VERIFIER
    description = "MathVista testmini: choice letters, free-form answers with precision and unit"
    hub_id = "AI4Math/MathVista"
    default_split = "testmini"
    breakdowns = BREAKDOWNS
    local_files = ("data/{split}-*.parquet", "{split}-*.parquet", "{split}.parquet", "data/{split}.json",
                   "{split}.json")

    def convert(self, row: Row, *, image_dir: Path | None, prompt_field: str = "query") -> Item:
        data = row.data
        pid = require(data, "pid", row.where)
        answer = str(require(data, "answer", row.where)).strip()
        question_type = str(require(data, "question_type", row.where))
        answer_type = str(require(data, "answer_type", row.where))
        choices = text_list(data.get("choices"), row.where, "choices")
        if question_type == "multi_choice" and (not choices or answer not in choices):
            raise ValueError(f"{row.where}: a multi_choice row needs 'choices' holding its answer {answer!r}; "
                             "fix the row or pass skip_invalid=True")
        if choices and len(choices) > len(LETTERS):
            raise ValueError(f"{row.where}: at most {len(LETTERS)} choices are supported, got {len(choices)}")
        if prompt_field not in ("query", "question"):
            raise ValueError(f"mathvista: prompt_field must be 'query' or 'question', got {prompt_field!r}")
        precision = _precision(data.get("precision"), row.where)
        unit = optional_text(data.get("unit"))
        question = str(require(data, "question", row.where))
        if prompt_field == "question":
            if choices:
                question += "\nChoices:\n" + "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
        else:  # GitHub's testmini.json keeps the queries apart (query.json): rebuild the published one
            published = [str(c) for c in data.get("choices") or []]  # unstripped, as the queries print them
            question = optional_text(data.get("query")) or official_query(
                question, question_type=question_type, answer_type=answer_type, precision=precision, unit=unit,
                choices=published)
        image = data.get("decoded_image") or data.get("image")
        if image is None or image == "":
            raise ValueError(f"{row.where}: the row has no image (decoded_image / image); fix the row or pass "
                             "skip_invalid=True")
        from mmdps.data.images import load_image

        meta = mapping_field(data, "metadata", row.where)
        metadata = {"pid": str(pid), "question_type": question_type, "answer_type": answer_type,
                    "precision": precision, "unit": unit, "choices": choices}
        breakdowns = {"question_type": question_type, "answer_type": answer_type,
                      **{key: meta.get(key) for key in BREAKDOWNS if key in meta}}
        item_id = row_id(pid, row)
        return self.benchmark_item(row, id=item_id, question=question, ground_truth=answer,
                                   images=[load_image(image, base_dir=image_dir, where=row.where)],
                                   metadata=metadata, breakdowns=breakdowns)


def _precision(value: Any, where: str) -> float | None:
    """The decimals a float answer is rounded to: a whole number from 0 to 15, or None when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    number = None if isinstance(value, bool) else value
    if isinstance(number, str):
        number = whole_number(number)
    if not isinstance(number, (int, float)) or not math.isfinite(number) or not 0 <= number <= 15 \
            or number != int(number):
        raise ValueError(f"{where}: 'precision' must be a whole number of decimals from 0 to 15, got {value!r}; fix "
                         "the row or pass skip_invalid=True")
    return float(number)


__all__ = ["MathVista", "edit_distance", "normalize_answer", "verify_mathvista"]
