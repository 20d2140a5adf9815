"""``integer``: the whole completion is one integer, equal to the ground truth (short-answer tasks
such as the visual pack's ``digit=`` or ``third=`` questions).

Surrounding whitespace is ignored; anything else (a second number, a unit, a sign of thought) is a
format error. ``score`` = ``acc``. The completion is matched with an anchored regular expression on at
most the first 64 characters of its stripped text, so the work is bounded for any input.
"""

from __future__ import annotations

import re
from typing import Any

from mmdps.verifiers.base import GroundTruthError, VerdictDict, never_raise, verdict

_INTEGER = re.compile(r"[+-]?\d{1,18}")
#: Longest completion (after stripping) that can still be an integer answer.
MAX_CHARS = 64


def parse_integer(text: str) -> int | None:
    """The integer that ``text`` is (whitespace aside), or None."""
    text = text.strip()
    if len(text) > MAX_CHARS or not _INTEGER.fullmatch(text):
        return None
    return int(text)


def _ground_truth(ground_truth: Any) -> int:
    if isinstance(ground_truth, bool) or not isinstance(ground_truth, (int, str)):
        raise GroundTruthError(f"integer verifier: ground truth must be an int, got {ground_truth!r}")
    value = parse_integer(str(ground_truth))
    if value is None:
        raise GroundTruthError(f"integer verifier: ground truth {ground_truth!r} is not an integer")
    return value


@never_raise
def verify_integer(completion: str, ground_truth: Any, /, **item: Any) -> VerdictDict:
    """1.0 when the completion is exactly the integer ``ground_truth``; ``format`` 1.0 for any integer."""
    expected = _ground_truth(ground_truth)
    value = parse_integer(completion)
    return verdict(acc=value is not None and value == expected, format=value is not None)
