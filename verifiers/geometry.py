"""Geometry answers: a boxed value or a multiple-choice letter, against a gold letter or value.

What the model may answer (the last ``\\boxed{}``; without one, the last ``Answer: ...``):

* a letter: ``B``, ``(B)``, ``B.``, ``B: 12``, ``\\text{B}``;
* a value: ``12.5``, ``\\frac{5}{2}``, ``3\\sqrt{2}``, ``60^\\circ``, ``60°``, ``12 cm``, ``x = 4``
  (units, degree signs and a leading ``name =`` are stripped; symbolic values are evaluated with
  math-verify/sympy under the time limit).

What the gold may be: a letter together with ``choices=[...]`` item metadata (Geometry3K), or a
value (a string or number); with choices a gold value is also mapped to its letter.

Matching: letters compare as letters; a value answer to a multiple-choice item maps to the nearest
choice when within ``choice_rel_tol`` (default 2%) of it; a value against a gold value must be within
``rel_tol`` (default 1e-3, so 4.24 passes for 3\\sqrt{2}).

Score rule (the paper's Geo3K reward): 1.0 when correct, else 0.1 x format, where format is 1 for
``<think>...</think>`` followed by a ``\\boxed{}`` answer.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

from mmdps.verifiers.base import (
    DEFAULT_TIME_LIMIT_S,
    GroundTruthError,
    TimeLimitExceeded,
    VerdictDict,
    call_with_time_limit,
    never_raise,
    verdict,
)
from mmdps.verifiers.format import has_think_boxed
from mmdps.verifiers.math import MAX_ANSWER_CHARS, equation_value, extract_last_boxed, too_complex, warm_up

FORMAT_SCORE = 0.1
LETTERS = "ABCDEFGH"

_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\circ|\bdegrees?\b|\bdeg\b")
_UNITS = re.compile(r"\b(?:square|sq\.?|cubic|units?|centimeters?|millimeters?|meters?|kilometers?|inch(?:es)?|"
                    r"feet|foot|ft|yards?|yd|miles?|mi|cm|mm|km|m|in)\b(?:\s*\^\s*\{?\s*[23]\s*\}?)?")
# "(B)" or "(B) 12"; "B", "B.", "B:", "B)" or "B. 12" (a bare letter needs punctuation before more text)
_LETTER = re.compile(r"^(?:\(\s*([A-H])\s*\)(?:\s.*)?|([A-H])(?:\s*[.:)](?:\s*.*)?)?)$", re.S)
_ANSWER_LINE = re.compile(r"answer\s*(?:is)?\s*[:：]?\s*(.{1,200})", re.I)


# ------------------------------------------------------------------------------- parsing answers
def clean_value(text: str) -> str:
    """Strip ``$``, text wrappers, a leading ``name =``, degree signs, units and trailing punctuation.

    An equation whose left side is not a name (``1 = 2``) states no value and cleans to ``""``.
    """
    text = text.strip().strip("$").strip()
    for _ in range(3):  # nested wrappers such as \text{\textbf{12}}
        text = _TEXT_WRAPPERS.sub(r"\1", text)
    value = equation_value(text)
    if value is None:
        return ""
    text = _DEGREES.sub("", value)
    text = _UNITS.sub("", text)
    return text.replace("\\!", "").replace("\\,", "").replace("\\ ", " ").strip().rstrip(".").strip()


def parse_letter(text: str, allowed: str = LETTERS) -> str | None:
    """The choice letter of an answer such as ``B``, ``(B)``, ``B.``, ``B: 12``, ``\\text{B}``, else None."""
    text = _TEXT_WRAPPERS.sub(r"\1", text.strip().strip("$")).strip()
    match = _LETTER.match(text)
    letter = match and (match.group(1) or match.group(2))
    return letter if letter and letter in allowed else None


def _symbolic_value(text: str) -> float | None:
    """Numeric value of a LaTeX/plain expression via math-verify (unguarded; see :func:`to_number`)."""
    from mmdps.verifiers.math import _math_verify

    math_verify, config = _math_verify()
    for parsed in math_verify.parse("\\boxed{" + text + "}", extraction_config=config, parsing_timeout=None):
        if hasattr(parsed, "is_number") and parsed.is_number and not getattr(parsed, "free_symbols", None):
            value = complex(parsed.evalf(15))
            if abs(value.imag) < 1e-12 and math.isfinite(value.real):
                return value.real
    return None


@functools.lru_cache(maxsize=4096)
def to_number(text: str, time_limit: float = DEFAULT_TIME_LIMIT_S) -> float | None:
    """The value of an answer (``12.5``, ``1,000``, ``\\frac{5}{2}``, ``3\\sqrt{2}``, ``60^\\circ``) or None."""
    cleaned = clean_value(text)
    if not cleaned or too_complex(cleaned):
        return None
    try:
        value = float(cleaned.replace(",", "") if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?", cleaned)
                      else cleaned)
        return value if math.isfinite(value) else None
    except ValueError:
        pass
    warm_up()  # first use loads the LaTeX grammar: not on this answer's clock
    try:
        return call_with_time_limit(_symbolic_value, (cleaned,), time_limit)
    except TimeLimitExceeded:
        return None


def extract_answer(completion: str) -> str | None:
    """The last boxed answer, else the text after the last ``Answer:``/``answer is``, else None."""
    boxed = extract_last_boxed(completion)
    if boxed is not None:
        return boxed
    tail = completion[-4000:]  # an "Answer: X" line sits at the end
    matches = list(_ANSWER_LINE.finditer(tail))
    if not matches:
        return None
    return matches[-1].group(1).strip().splitlines()[0].strip()


# ------------------------------------------------------------------------------- gold
def _close(a: float, b: float, rel_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def _resolve_gold(ground_truth: Any, choices: Sequence[Any] | None) -> tuple[str | None, str | None]:
    """``(gold_letter, gold_value_text)``: the gold letter if known, and the gold value if known."""
    if hasattr(ground_truth, "tolist") and not isinstance(ground_truth, str):
        ground_truth = ground_truth.tolist()  # a numpy scalar from a parquet row
    if isinstance(ground_truth, float) and not math.isfinite(ground_truth):
        raise GroundTruthError(f"geometry ground truth {ground_truth!r} is not a finite number (a missing value "
                               "read as NaN?); fix or drop the row")
    if isinstance(ground_truth, bool) or not isinstance(ground_truth, (str, int, float)):
        raise GroundTruthError(f"geometry ground truth must be a choice letter or a value, got "
                               f"{type(ground_truth).__name__}: {ground_truth!r:.80}")
    gold = str(ground_truth).strip()
    if not gold:
        raise GroundTruthError("geometry ground truth is empty")
    letter = parse_letter(gold, LETTERS[:len(choices)] if choices else LETTERS) if len(gold) <= 3 else None
    if letter is not None:
        if choices:
            return letter, str(choices[LETTERS.index(letter)])
        return letter, None
    if choices:  # a gold value: which choice is it?
        gold_number = to_number(gold)
        for i, choice in enumerate(choices):
            choice_number = to_number(str(choice))
            same = clean_value(str(choice)) == clean_value(gold) or (
                gold_number is not None and choice_number is not None and _close(gold_number, choice_number, 1e-6))
            if same:
                return LETTERS[i], gold
    return None, gold


def _nearest_choice(value: float, choices: Sequence[Any], rel_tol: float) -> str | None:
    best, best_err = None, math.inf
    for i, choice in enumerate(choices):
        number = to_number(str(choice))
        if number is None:
            continue
        err = abs(value - number) / max(abs(number), 1e-9)
        if err < best_err:
            best, best_err = LETTERS[i], err
    return best if best_err <= rel_tol else None


def choice_list(choices: Any) -> list[Any] | None:
    """``choices`` as a list: any sequence (list, tuple, numpy array, pandas Series), None or empty -> None."""
    if choices is None:
        return None
    if isinstance(choices, (str, bytes)) or not hasattr(choices, "__iter__"):
        raise GroundTruthError(f"geometry choices must be a list of options, got {choices!r:.80}")
    values = choices.tolist() if hasattr(choices, "tolist") else list(choices)  # numpy / pandas: python values
    return values or None


# ------------------------------------------------------------------------------- verifier
def is_correct(answer: str, ground_truth: Any, choices: Sequence[Any] | None = None, *, rel_tol: float = 1e-3,
               choice_rel_tol: float = 0.02, time_limit: float = DEFAULT_TIME_LIMIT_S) -> bool:
    """True when the extracted ``answer`` matches the gold (see the module docstring for the rules)."""
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return False
    choices = choice_list(choices)
    choices = choices[:len(LETTERS)] if choices else None
    gold_letter, gold_value = _resolve_gold(ground_truth, choices)
    letter = parse_letter(answer, LETTERS[:len(choices)] if choices else LETTERS)
    if letter is not None:
        if gold_letter is not None:
            return letter == gold_letter
        if choices is None or gold_value is None:
            return False
        answer = str(choices[LETTERS.index(letter)])
    if gold_value is not None and clean_value(answer) and clean_value(answer) == clean_value(gold_value):
        return True
    value = to_number(answer, time_limit)
    if value is None:
        return False
    if choices and gold_letter is not None:
        return _nearest_choice(value, choices, choice_rel_tol) == gold_letter
    gold_number = to_number(gold_value) if gold_value is not None else None
    return gold_number is not None and _close(value, gold_number, rel_tol)


@never_raise
def verify_geometry(completion: str, ground_truth: Any, /, *, choices: Sequence[Any] | None = None,
                    rel_tol: float = 1e-3, choice_rel_tol: float = 0.02, time_limit: float = DEFAULT_TIME_LIMIT_S,
                    **_item: Any) -> VerdictDict:
    """Grade a geometry answer against a gold letter (with ``choices``) or a gold value.

    Args:
        choices: the item's answer options in letter order (``A`` first), if multiple choice: any
            sequence (a list, a tuple, a numpy array from a parquet row).
        rel_tol: relative tolerance of a value against a gold value.
        choice_rel_tol: how close a value must be to a choice to count as choosing it.
        time_limit: seconds allowed for evaluating a symbolic answer with sympy.
        **_item: other item metadata, ignored.
    """
    choices = choice_list(choices)  # rows from pandas / parquet / verl's extra_info hold numpy arrays
    answer = extract_answer(completion)
    acc = answer is not None and is_correct(answer, ground_truth, choices, rel_tol=rel_tol,
                                            choice_rel_tol=choice_rel_tol, time_limit=time_limit)
    fmt = has_think_boxed(completion)
    return verdict(acc=acc, format=fmt, score=1.0 if acc else FORMAT_SCORE * fmt)
