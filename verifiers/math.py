"""Math answers: the last ``\\boxed{}`` of the completion, graded against the gold with math-verify.

Score rule: ``score = acc`` (1 when the boxed answer equals any acceptable gold, else 0), as in the
paper's MATH reward. ``format`` is 1 when a complete ``\\boxed{...}``/``\\fbox{...}`` answer is found
(and, with ``require_think_close=True``, it comes after ``</think>``).

Equivalence is math-verify's (numbers, fractions, LaTeX, sets/intervals, tuples, equations such as
gold ``x=2`` against ``2``); nothing LaTeX-specific is hand-written here, except one guard: an
equation answers a plain gold only when its left side is a name (``x = 2``, ``m\\angle B = 60``),
since math-verify compares an equation's right side alone and would pass ``1 = 2`` for gold ``2``. An exact match after
whitespace normalisation short-cuts sympy. The sympy work runs under
:func:`~mmdps.verifiers.base.call_with_time_limit` in a worker process, so a pathological answer
(``9^{9^{9}}``) costs at most ``time_limit`` seconds (plus a kill grace) and scores 0, from any thread.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterable
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

#: Longest boxed answer that is graded; longer ones are scored wrong without parsing (no real
#: benchmark answer comes close: the longest gold in MATH500/OlympiadBench is a few hundred chars).
MAX_ANSWER_CHARS = 1000

#: Deepest bracket nesting graded: the LaTeX parser is slow on deep nesting and real answers stay shallow.
MAX_NESTING = 32

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- extraction
def extract_last_boxed(text: str, max_chars: int = MAX_ANSWER_CHARS) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (also ``\\boxed 5``), or None.

    Braces are matched (nested braces are kept); an unclosed box, or one whose content is longer
    than ``max_chars``, gives None. Linear in the length of the tail after the last box.
    """
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    i = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    if text.startswith("{", i):
        depth, j, end = 0, i, min(len(text), i + max_chars + 2)
        while j < end:
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1:j].strip()
            elif ch == "\\":
                j += 1  # skip escaped braces such as \{ and \}
            j += 1
        return None
    if text.startswith(" ", i):  # "\boxed 5": up to the next whitespace or "$"
        match = re.match(rf" +([^\s$]{{1,{max_chars}}})", text[i:i + max_chars + 64])
        return match.group(1) if match else None
    return None


def too_complex(answer: str) -> bool:
    """True for answers longer than :data:`MAX_ANSWER_CHARS` or nested deeper than :data:`MAX_NESTING`."""
    if len(answer) > MAX_ANSWER_CHARS:
        return True
    depth = deepest = 0
    for ch in answer:
        if ch in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")}]":
            depth -= 1
    return deepest > MAX_NESTING


#: ``#### 1,234`` (GSM8K's own layout; verl's gsm8k prompt asks for it): the last one, to the line's end.
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
#: ``Answer: 42`` on a line (the DAPO / Minerva layout; verl's ``math_dapo`` reward reads it): the last one.
_ANSWER_LINE = re.compile(r"(?i)(?<![A-Za-z])Answer[ \t]*:[ \t]*([^\n]*)")

#: Where each answer style finds the final answer; every style also accepts a ``\boxed{}`` answer
#: when the asked layout is absent (the answer is graded, ``format`` is 0).
ANSWER_STYLES = ("boxed", "hashes", "answer_line")


def extract_final_answer(text: str, style: str = "boxed", max_chars: int = MAX_ANSWER_CHARS) -> str | None:
    """The final answer of ``text`` in layout ``style`` (see :data:`ANSWER_STYLES`), or None.

    ``hashes`` and ``answer_line`` take the rest of the line after the last marker, without thousands
    separators (``1,234``), a trailing full stop or ``$...$`` around it.
    """
    if style == "boxed":
        return extract_last_boxed(text, max_chars)
    pattern = {"hashes": _HASHES, "answer_line": _ANSWER_LINE}.get(style)
    if pattern is None:
        raise ValueError(f"answer_style must be one of {ANSWER_STYLES}, got {style!r}")
    matches = pattern.findall(text[-(max_chars * 4):])  # the answer ends the completion; bounded regex work
    if not matches:
        return None
    answer = matches[-1].strip().rstrip(".").strip()
    if len(answer) > 1 and answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    if re.fullmatch(r"-?[\d,]+(?:\.\d+)?", answer):
        answer = answer.replace(",", "")
    return answer if answer and len(answer) <= max_chars else None


def answer_region(completion: str, require_think_close: bool) -> str | None:
    """The part of the completion that is graded: all of it, or what follows the last ``</think>``."""
    if not require_think_close:
        return completion
    cut = completion.rfind("</think>")
    return None if cut < 0 else completion[cut + len("</think>"):]


# ------------------------------------------------------------------------------- equations
_GREEK = ("alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|rho|sigma|"
          "tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Sigma|Phi|Psi|Omega")
# Decorations a named quantity may carry (\angle ABC, \overline{AB}, x_{1}, y', \text{area}) and the
# command-free name left once they are removed.
_NAME_DECORATIONS = re.compile(r"\\(?:angle|measuredangle|overline|overarc|widehat|arc|triangle|text|mathrm|mathit|"
                               r"operatorname|prime|left|right)(?![a-zA-Z])|[{}\s'_^$]|\\[,;:! ]")
_NAME = re.compile(rf"(?:[A-Za-z]|\\(?:{_GREEK})(?![a-zA-Z]))(?:[A-Za-z0-9]|\\(?:{_GREEK})(?![a-zA-Z]))*")


def top_level_equals(text: str) -> list[int]:
    """Positions of the ``=`` signs of ``text`` outside brackets (not ``<=``, ``>=``, ``!=``, ``==``)."""
    positions, depth = [], 0
    for i, ch in enumerate(text):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif (ch == "=" and depth == 0 and (i == 0 or text[i - 1] not in "<>!=:")
              and (i + 1 == len(text) or text[i + 1] != "=")):
            positions.append(i)
    return positions


def is_name(text: str) -> bool:
    """True for a named quantity: ``x``, ``AB``, ``x_1``, ``\\theta``, ``m\\angle ABC``, ``\\overline{CD}``,
    or one applied to arguments (``f(3)``, ``P(A)``)."""
    text = text.strip()
    applied = re.fullmatch(r"([^()]+)\\?(?:left)?\((.*)\\?(?:right)?\)", text, re.S)
    if applied:
        text = applied.group(1)
    return bool(_NAME.fullmatch(_NAME_DECORATIONS.sub("", text)))


def equation_value(answer: str) -> str | None:
    """The value an answer states: ``answer`` itself without a top-level ``=``, the right side of
    ``name = value`` (``x = 4`` -> ``4``; a chain ``x = 2 + 2 = 4`` -> ``4``), and None for an equation
    whose left side is not a name (``1 = 2``), which states no value."""
    equals = top_level_equals(answer)
    if not equals:
        return answer
    if not is_name(answer[:equals[0]]):
        return None
    return answer[equals[-1] + 1:].strip()


# ------------------------------------------------------------------------------- equivalence
_SPACES = re.compile(r"\s+|\\[,;:! ]|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?=[^a-zA-Z])")


def _normalise(answer: str) -> str:
    """Cheap normalisation for the exact-match shortcut only (math-verify does the real work)."""
    answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    answer = _LEFT_RIGHT.sub("", answer)
    return _SPACES.sub("", answer).strip("$.")


def gold_answers(ground_truth: Any) -> tuple[str, ...]:
    """Acceptable gold answers as strings: a string, a number, or a sequence of them (numpy arrays and
    scalars from parquet rows included). A NaN or infinite number is no answer."""
    if hasattr(ground_truth, "tolist") and not isinstance(ground_truth, str):
        ground_truth = ground_truth.tolist()  # numpy scalar -> python scalar, array -> list
    if isinstance(ground_truth, (str, int, float)) and not isinstance(ground_truth, bool):
        answers: Iterable[Any] = [ground_truth]
    elif isinstance(ground_truth, (list, tuple)) and ground_truth:
        answers = ground_truth
    else:
        raise GroundTruthError(f"math ground truth must be a string, a number or a non-empty list of them, "
                               f"got {type(ground_truth).__name__}: {ground_truth!r:.80}")
    out = []
    for answer in answers:
        if isinstance(answer, float) and not math.isfinite(answer):
            raise GroundTruthError(f"math ground truth {ground_truth!r:.80} is not a finite number (a missing "
                                   "value read as NaN?); fix or drop the row")
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)  # AMC stores 142.0
        text = str(answer).strip()
        if text:
            out.append(text)
    if not out:
        raise GroundTruthError(f"math ground truth {ground_truth!r:.80} has no non-empty answer")
    return tuple(out)


@functools.cache
def _math_verify():
    import math_verify
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    # We pass parsing_timeout=None / timeout_seconds=None (their SIGALRM would clobber ours and fails
    # off the main thread) and guard the call ourselves; silence the "timeout is disabled" warning.
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(lambda record: not str(record.msg).startswith("Timeout is disabled"))
    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return math_verify, config


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    math_verify, config = _math_verify()
    return math_verify.parse("\\boxed{" + gold + "}", extraction_config=config, parsing_timeout=None)


def is_equivalent(answer: str, golds: tuple[str, ...]) -> bool:
    """math-verify's verdict on ``answer`` (a boxed answer's content) against any of ``golds``.

    Unguarded: call it through :func:`call_with_time_limit` (as :func:`verify_math` does).
    """
    math_verify, config = _math_verify()
    predicted = math_verify.parse("\\boxed{" + answer + "}", extraction_config=config, parsing_timeout=None)
    if not predicted:
        return False
    return any(math_verify.verify(_parse_gold(g), predicted, timeout_seconds=None) for g in golds)


@functools.cache
def warm_up() -> None:
    """Import math-verify and grade one tiny answer, unguarded and once per process.

    The first parse loads the LaTeX grammar and sympy's lazy modules (0.5-2 s on a busy machine);
    that must not count against the first real answer's time limit.
    """
    is_equivalent(r"\frac{1}{2}", ("0.5",))


def grade_answer(answer: str, golds: tuple[str, ...], *, time_limit: float = DEFAULT_TIME_LIMIT_S,
                 isolate: bool | None = True) -> bool:
    """True when ``answer`` equals one of ``golds``: exact match, else math-verify under a time limit.

    ``isolate=True`` (default) runs sympy in a worker process that is killed when it overruns: an
    alarm in this process is handled only between bytecodes, and one long C call inside sympy (seen:
    11 s on an integral of a power tower, under a 0.5 s limit) would outlast it. ``None`` uses the
    in-process alarm on the main thread (cheaper, not a hard bound).
    """
    if not answer or too_complex(answer):
        return False
    if equation_value(answer) is None and not any(top_level_equals(g) for g in golds):
        return False  # "1 = 2" states no value: math-verify would compare its right side alone
    normalised = _normalise(answer)
    if any(normalised == _normalise(g) for g in golds):
        return True
    if isolate is not True:
        warm_up()  # in-process grading; a worker warms itself up when it starts
    try:
        return bool(call_with_time_limit(is_equivalent, (answer, golds), time_limit, isolate=isolate))
    except TimeLimitExceeded:
        _logger.debug("math-verify hit the %.1fs limit on %r", time_limit, answer[:80])
        return False


# ------------------------------------------------------------------------------- verifier
@never_raise
def verify_math(completion: str, ground_truth: Any, /, *, require_think_close: bool = False,
                answer_style: str = "boxed", time_limit: float = DEFAULT_TIME_LIMIT_S, **_item: Any) -> VerdictDict:
    """Grade the final answer of ``completion`` against ``ground_truth`` (str or list of str).

    Args:
        require_think_close: DeepScaleR-style: only the text after the last ``</think>`` is graded;
            no ``</think>`` means format 0 and acc 0.
        answer_style: where the answer is: ``boxed`` (the last ``\\boxed{}``), ``hashes`` (after the
            last ``####``, GSM8K) or ``answer_line`` (after the last ``Answer:``, DAPO). With the
            latter two, a completion without that layout is graded on its last boxed answer instead,
            with format 0.
        time_limit: seconds allowed for math-verify on this answer.
        **_item: other item metadata, ignored.
    """
    golds = gold_answers(ground_truth)
    region = answer_region(completion, require_think_close)
    if region is None:
        return verdict(acc=False, format=False)
    answer = extract_final_answer(region, answer_style)
    laid_out = answer is not None
    if answer is None and answer_style != "boxed":
        answer = extract_last_boxed(region)
    if answer is None:
        return verdict(acc=False, format=False)
    return verdict(acc=grade_answer(answer, golds, time_limit=time_limit), format=laid_out)


def verify_math_hashes(completion: str, ground_truth: Any, /, **item: Any) -> VerdictDict:
    """:func:`verify_math` reading the answer after the last ``####`` (GSM8K's layout)."""
    item["answer_style"] = "hashes"
    return verify_math(completion, ground_truth, **item)


def verify_math_answer_line(completion: str, ground_truth: Any, /, **item: Any) -> VerdictDict:
    """:func:`verify_math` reading the answer after the last ``Answer:`` (the DAPO layout)."""
    item["answer_style"] = "answer_line"
    return verify_math(completion, ground_truth, **item)


def verify_math_think(completion: str, ground_truth: Any, /, **item: Any) -> VerdictDict:
    """:func:`verify_math` with ``require_think_close=True`` (the DeepScaleR validation reward)."""
    item.setdefault("require_think_close", True)
    return verify_math(completion, ground_truth, **item)
