"""Reading the final answer out of a completion by rules, where MathVista's and MathVerse's official
pipelines ask GPT-4 to extract it.

:func:`final_answer` looks, in this order, for

1. the last ``\\boxed{...}`` of the completion;
2. the answer part's (after ``</think>`` when there is one) last line, when it is only a choice letter
   (``C``, ``(C)``, ``C.``), only a number or a list (``41``, ``0.73``, ``[2014, 2016]``), the text of
   exactly one choice (``145°``), or a letter with its own choice's text (``D: 140°``, ``(C) 145°``);
3. the last answer phrase of the answer part: ``Answer: (C)``, ``The answer is C``, ``The final answer
   is 41``, ``The correct option is C``, ``the correct choice is (B)``, and ``Option C is correct``.

Bold marks (``**``) and a final full stop are ignored. It refuses (returns None): a completion with none of
these (``I think it is C``, reasoning that trails off), an answer naming several choice letters when one is
asked for (``C or D``), a negated one (``The answer is not C``), and a last line matching the text of
several choices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mmdps.verifiers.geometry import LETTERS
from mmdps.verifiers.math import extract_last_boxed

TAIL_CHARS = 4000  # an answer sits at the end of the completion
_PHRASE = re.compile(r"\b(?:(?:final|correct)\s+)?(?:answer|option|choice)\s*(?:is|should be|would be|[:：=])"
                     r"\s*[:：]?[ \t]*([^\n]+)", re.I)
_OPTION_IS_CORRECT = re.compile(r"\b(?:option|choice)\s*(\(?[A-H]\)?)\s+is\s+(?:the\s+)?(?:correct|right)\b", re.I)
_LONE_LETTER = re.compile(r"^\(?([A-H])\)?[.:]?$")
_LONE_VALUE = re.compile(r"^\$?\s*[-+]?\d[\d,]*(?:\.\d+)?\s*(?:%|°|\\%)?\s*\$?$|^\[[^\[\]\n]*\]$")
_LETTERED_CHOICE = re.compile(r"^\(?([A-H])\)?\s*[.:)]?\s*(.+)$")
_LETTER_TOKEN = re.compile(r"(?<![A-Za-z])\(?([A-H])\)?(?![A-Za-z])")


def answer_part(completion: str) -> str:
    """The text after the last ``</think>`` (the whole completion without one), its last
    :data:`TAIL_CHARS` characters."""
    _, closed, after = completion.rpartition("</think>")
    return (after if closed else completion)[-TAIL_CHARS:]


def _clean(text: str) -> str:
    text = text.replace("**", "").strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _last_phrase(tail: str) -> str | None:
    """The answer of the last answer phrase in ``tail``, or None."""
    matches = [(m.start(), m.group(1)) for m in _PHRASE.finditer(tail)]
    matches += [(m.start(), m.group(1)) for m in _OPTION_IS_CORRECT.finditer(tail)]
    return _clean(max(matches)[1]) if matches else None


def _last_line(tail: str, choices: Sequence[str] | None) -> str | None:
    """The last line when it is a lone letter, value or list, or one choice's text; else None."""
    lines = [line for line in (_clean(raw) for raw in tail.splitlines()) if line]
    if not lines:
        return None
    line = lines[-1]
    if _LONE_LETTER.match(line) or _LONE_VALUE.match(line):
        return line
    lettered = _LETTERED_CHOICE.match(line)  # "D: 140°", "(C) 145°": the letter and its own choice's text
    if lettered and choices and LETTERS.index(lettered.group(1)) < len(choices) \
            and _same(lettered.group(2), choices[LETTERS.index(lettered.group(1))]):
        return line
    matching = [choice for choice in choices or () if _same(line, choice)]
    return matching[0] if len(matching) == 1 else None


def final_answer(completion: str, *, choices: Sequence[str] | None = None, single_choice: bool = False) -> str | None:
    """The answer a completion states (rules in the module docstring), or None when it states none.

    ``choices``: the choice texts (for the last-line rule); ``single_choice``: the question asks for
    one choice, so an answer naming several letters is refused.
    """
    boxed = extract_last_boxed(completion)
    tail = answer_part(completion)
    # a last line holding only the answer comes after any phrase: "Let's find the answer: ...\nC" answers C
    answer = _clean(boxed) if boxed is not None else (_last_line(tail, choices) or _last_phrase(tail))
    if not answer or answer.lower().startswith("not "):
        return None
    if single_choice and len({m.group(1) for m in _LETTER_TOKEN.finditer(answer)}) > 1 \
            and not any(_same(answer, choice) for choice in choices or ()):
        return None
    return answer


__all__ = ["answer_part", "final_answer"]
