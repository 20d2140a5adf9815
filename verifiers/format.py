"""Format checks and format-only rewards.

* ``think_boxed``:  ``<think>...</think>`` then, after it, a complete ``\\boxed{...}`` answer;
* ``think_answer``: ``<think>...</think>`` then, after it, ``<answer>...</answer>``.

Leading whitespace is allowed, and so is a missing opening ``<think>`` when the prompt already ends
with it (the Countdown "base" template opens the think block for the model; chat templates such as
DeepSeek-R1's do too). Checks are linear-time string searches, safe on megabyte inputs.
"""

from __future__ import annotations

from typing import Any

from mmdps.verifiers.base import VerdictDict, never_raise, verdict
from mmdps.verifiers.math import extract_last_boxed


def _after_think(completion: str) -> str | None:
    """Text after a well-formed think block, or None when there is none."""
    close = completion.find("</think>")
    if close < 0:
        return None
    head = completion[:close]
    opened = head.lstrip()
    if opened.startswith("<think>"):
        opened = opened[len("<think>"):]
    # exactly one think block: no second opening inside it, no second block after it
    if "<think>" in opened or "<think>" in completion[close:]:
        return None
    return completion[close + len("</think>"):]


def has_think_boxed(completion: str) -> bool:
    """True for ``<think>...</think> ... \\boxed{...}`` (the boxed answer after the think block)."""
    tail = _after_think(completion)
    return tail is not None and extract_last_boxed(tail) is not None


def has_think_answer(completion: str) -> bool:
    """True for ``<think>...</think> <answer>...</answer>`` (answer after the think block, closed)."""
    tail = _after_think(completion)
    if tail is None:
        return False
    start = tail.find("<answer>")
    return start >= 0 and tail.find("</answer>", start) > start


@never_raise
def verify_think_boxed(completion: str, ground_truth: Any = None, /, **_item: Any) -> VerdictDict:
    """Format reward: 1 for ``<think>...</think>`` then ``\\boxed{}``, else 0 (ground truth unused)."""
    ok = has_think_boxed(completion)
    return verdict(acc=ok, format=ok)


@never_raise
def verify_think_answer(completion: str, ground_truth: Any = None, /, **_item: Any) -> VerdictDict:
    """Format reward: 1 for ``<think>...</think>`` then ``<answer>...</answer>``, else 0."""
    ok = has_think_answer(completion)
    return verdict(acc=ok, format=ok)
