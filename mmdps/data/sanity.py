"""The ground-truth self-check: score each item's own ground truth before spending any compute on it.

A wrong column mapping (the solution text taken as the answer, ``target`` and ``nums`` swapped, a list
stored as the string ``"['2']"``) makes every reward 0 and the run learns nothing, hours later.
:func:`check_reward_on_ground_truth` writes, for a sample of items, a completion that states the item's
own ground truth in the form its task pack asks for (``TaskPack.reference_completion``: ``\\boxed{gt}``
for math and geometry, the stored or a found expression for Countdown), scores it with the reward the
run uses, and raises when too many of them fail, naming examples. It takes seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mmdps.data.item import Item


class ReferenceWriter(Protocol):
    """Anything with ``reference_completion(item) -> str | None`` (every ``TaskPack``): ``None`` when it
    cannot write one, ``ValueError`` when the item's gold cannot be a final answer."""

    def reference_completion(self, item: Item) -> str | None: ...


class GroundTruthCheckError(ValueError):
    """Too many items' own ground truths are not rewarded as correct (see :func:`check_reward_on_ground_truth`)."""


@dataclass
class GroundTruthCheck:
    """What :func:`check_reward_on_ground_truth` found.

    Attributes:
        checked: items whose reference completion was scored.
        failed: how many of them were not scored correct (or had no reference, or made the reward raise).
        without_reference: sampled items the pack could write no reference for (counted in ``failed``
            unless the pack writes none at all, when nothing can be checked).
        examples: up to five failures, one line each (item id, source row, ground truth, verdict).
    """

    checked: int = 0
    failed: int = 0
    without_reference: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def fail_share(self) -> float:
        return self.failed / self.checked if self.checked else 0.0

    def summary(self) -> str:
        if not self.checked:
            return "ground truth self-check: skipped (the task pack writes no reference answers)"
        return (f"ground truth self-check: {self.checked - self.failed}/{self.checked} sampled items' own ground "
                "truth scored correct")


def _default_score(item: Item, completion: str) -> Any:
    from mmdps.verifiers import score_completion

    return score_completion(item, completion)


def _is_correct(verdict: Any) -> bool:
    if hasattr(verdict, "correct"):
        return bool(verdict.correct)
    if isinstance(verdict, dict):
        return float(verdict.get("acc", verdict.get("score")) or 0.0) >= 1.0
    return float(verdict) >= 1.0


def _where(item: Item) -> str:
    source, row = item.metadata.get("source"), item.metadata.get("row")
    if source is None and row is None:
        return "source row unknown"
    return f"{source or '?'} row {row if row is not None else '?'}"


def check_reward_on_ground_truth(items: Sequence[Item], pack: ReferenceWriter, *,
                                 score_fn: Callable[[Item, str], Any] | None = None, sample: int = 256,
                                 seed: int = 0, max_fail_share: float = 0.5) -> GroundTruthCheck:
    """Score ``sample`` random items' reference completions; raise when more than ``max_fail_share`` fail.

    Args:
        items: the loaded items (a training or eval set).
        pack: the task pack the items came from (it writes the reference completions).
        score_fn: ``(item, completion) -> Verdict`` (or a verifier dict, or a float), the reward the run
            uses; default :func:`mmdps.verifiers.score_completion`, the trainer's own.
        sample: how many items to check (all when there are fewer).
        seed: which items are sampled.
        max_fail_share: largest share of failures accepted (0.5: a few odd gold answers are normal in
            real data; a wrong mapping fails nearly all).

    Raises:
        GroundTruthCheckError: naming up to five failing items (id, source row, ground truth, verdict).
    """
    if not 0 <= max_fail_share <= 1:
        raise ValueError(f"max_fail_share must lie in [0, 1], got {max_fail_share}")
    score = score_fn or _default_score
    chosen = random.Random(seed).sample(range(len(items)), min(max(sample, 0), len(items)))
    result = GroundTruthCheck()
    failures: list[str] = []
    for index in sorted(chosen):
        item = items[index]
        try:
            completion = pack.reference_completion(item)
        except ValueError as error:  # the pack says this gold cannot be a final answer
            result.checked += 1
            failures.append(f"item {item.id} ({_where(item)}): ground truth {item.ground_truth!r:.80}: {error}")
            continue
        if completion is None:
            result.without_reference += 1
            failures.append(f"item {item.id} ({_where(item)}): ground truth {item.ground_truth!r:.80}: no reference "
                            "answer could be written for it (no solution exists?)")
            continue
        result.checked += 1
        try:
            verdict = score(item, completion)
        except Exception as error:  # noqa: BLE001 - a reward raising on its own gold is what we look for
            failures.append(f"item {item.id} ({_where(item)}): ground truth {item.ground_truth!r:.80}: the reward "
                            f"raised {type(error).__name__}: {error}")
            continue
        if not _is_correct(verdict):
            failures.append(f"item {item.id} ({_where(item)}): ground truth {item.ground_truth!r:.80}, answer "
                            f"{completion!r:.100} scored {verdict}")
    if result.without_reference == len(chosen):  # the pack writes no references: nothing to check
        return GroundTruthCheck(without_reference=result.without_reference)
    result.checked += result.without_reference
    result.failed = len(failures)
    result.examples = failures[:5]
    if result.fail_share > max_fail_share:
        shown = "\n  ".join(result.examples)
        raise GroundTruthCheckError(
            f"{result.failed} of {result.checked} sampled items are not rewarded as correct when the answer is "
            f"their own ground truth (more than {max_fail_share:.0%}); the columns are probably mapped wrong (the "
            f"answer column, the task, or the reward). Examples:\n  {shown}")
    return result


__all__ = ["GroundTruthCheck", "GroundTruthCheckError", "ReferenceWriter", "check_reward_on_ground_truth"]
