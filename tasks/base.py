"""The task-pack contract.

A pack turns a data source (a file, a folder, or a seeded generator) into :class:`~mmdps.data.Item`
objects with chat messages, a ground truth and the name of the verifier that scores them::

    pack = mmdps.tasks.get("countdown")
    items = pack.load(None, split="cd34", num=2000, seed=0)   # generated
    items = pack.load("data/countdown.jsonl")                  # from a file
    verdict = pack.reward(items[0], "<think>...</think><answer>(1+2)*3</answer>")   # a Verdict
    verdict.score, verdict.correct
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from mmdps.data.item import Item
from mmdps.verifiers import Verdict, score_completion

T = TypeVar("T")
# Verifiers that read the last \boxed{} of a completion (the default reference_completion writes one).
BOXED_VERIFIERS = ("math", "geometry")
# Keywords every pack's ``load`` takes itself; they are never "options".
LOAD_KEYWORDS = ("split", "limit", "skip_invalid", "seed")


# Words of prose (not LaTeX commands): real final answers have at most 8 (MATH, the DeepScaleR test sets,
# GSM8K); solutions have dozens.
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
_MAX_ANSWER_WORDS = 12


def _reads_like_a_solution(text: str) -> bool:
    return ("\\boxed" in text or "\\fbox" in text or "####" in text or "\n" in text.strip() or len(text) > 500
            or len(_PROSE_WORD.findall(text)) > _MAX_ANSWER_WORDS)


class UnknownOptionError(ValueError):
    """A pack's ``load`` got options its loader does not take. The message names the pack, the bad
    options with close matches, and the valid ones; ``pack``, ``unknown`` and ``valid`` hold them."""

    def __init__(self, pack: str, unknown: Sequence[str], valid: Sequence[str], mode: str = ""):
        self.pack, self.unknown, self.valid = pack, list(unknown), list(valid)
        where = f" ({mode})" if mode else ""
        plural = "s" if len(self.unknown) > 1 else ""
        hints = []
        for name in self.unknown:
            close = difflib.get_close_matches(name, self.valid, n=2, cutoff=0.6)
            if close:
                hints.append(f"{name!r}: did you mean {' or '.join(repr(c) for c in close)}?")
        message = (f"task pack {pack!r}{where}: unknown load option{plural} "
                   f"{', '.join(repr(name) for name in self.unknown)}; valid options: "
                   f"{', '.join(self.valid) or 'none'} (plus {', '.join(LOAD_KEYWORDS)})")
        super().__init__(message + (". " + " ".join(hints) if hints else ""))


def loader_options(loader: Callable[..., Any], exclude: Iterable[str] = ()) -> list[str]:
    """The keyword parameters of ``loader`` other than ``exclude`` (its positional-only and ``*args`` /
    ``**kwargs`` parameters are never options)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    skip = set(exclude) | {"self"}
    return [name for name, param in inspect.signature(loader).parameters.items()
            if param.kind in kinds and name not in skip]


def check_options(pack: str, options: Mapping[str, Any], valid: Iterable[str], *, mode: str = "") -> None:
    """Raise :class:`UnknownOptionError` when ``options`` has a key outside ``valid``."""
    valid = sorted(set(valid))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnknownOptionError(pack, unknown, valid, mode)


class TaskPack(ABC):
    """Base class of task packs.

    Subclasses set ``name``, ``verifier`` and ``templates`` (name -> format string with a
    ``{question}`` field) and implement :meth:`load`. Everything else has a working default.

    Args:
        template: name of one of ``templates`` or a literal format string containing ``{question}``.
        system_prompt: optional system message put before the user message.
    """

    name: ClassVar[str] = ""
    verifier: ClassVar[str] = ""
    description: ClassVar[str] = ""
    templates: ClassVar[dict[str, str]] = {"plain": "{question}"}
    default_template: ClassVar[str] = "plain"

    def __init__(self, template: str | None = None, system_prompt: str | None = None):
        template = template or self.default_template
        if template in self.templates:
            template = self.templates[template]
        elif "{question}" not in template:
            raise ValueError(f"{self.name}: template {template!r} is neither one of {sorted(self.templates)} "
                             "nor a format string with a {question} field")
        self.template = template
        self.system_prompt = system_prompt

    # ------------------------------------------------------------------ loading
    @abstractmethod
    def load(self, source: str | os.PathLike | None = None, *, split: str = "train", limit: int | None = None,
             skip_invalid: bool = False, seed: int | str = 0, **options: Any) -> list[Item]:
        """Load (``source`` given) or generate (``source=None``, for packs with a generator) items.

        A bad row raises ``ValueError`` naming the file and row; with ``skip_invalid=True`` it is
        skipped and the number skipped is reported in one warning. An option the chosen loader does
        not take raises :class:`UnknownOptionError` (a ``ValueError``): dispatch through
        :meth:`call_loader` to get that for free.
        """

    def call_loader(self, loader: Callable[..., T], options: Mapping[str, Any], *, mode: str = "",
                    extra_options: Iterable[str] = (), **arguments: Any) -> T:
        """Call ``loader(**arguments, **options)`` once ``options`` are known to fit it.

        The valid options are the keyword parameters of ``loader`` not given in ``arguments``, plus
        ``extra_options`` (names a ``**kwargs`` loader accepts). ``mode`` says which loader it is in the
        error (e.g. ``"generator, source=None"``), since a pack takes different options for each.
        """
        check_options(self.name, options, [*loader_options(loader, exclude=arguments), *extra_options], mode=mode)
        return loader(**arguments, **options)

    # ------------------------------------------------------------------ prompts
    def format_prompt(self, question: str) -> str:
        return self.template.replace("{question}", question.strip())

    def make_item(self, *, id: int, question: str, ground_truth: Any, images: Sequence[Any] = (),
                  metadata: dict[str, Any] | None = None) -> Item:
        """Build an :class:`Item` with the pack's template: images first, then the formatted text."""
        text = self.format_prompt(question)
        if images:
            content: Any = [{"type": "image", "image": image} for image in images]
            content.append({"type": "text", "text": text})
        else:
            content = text
        messages = [{"role": "user", "content": content}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return Item(id=int(id), messages=messages, ground_truth=ground_truth, verifier=self.verifier,
                    task=self.name, metadata=dict(metadata or {}))

    # ------------------------------------------------------------------ scoring
    def reward(self, item: Item, completion: str) -> Verdict:
        """Score one completion with the item's verifier (the pack's when the item names none)."""
        if not item.verifier:
            item = dataclasses.replace(item, verifier=self.verifier)
        return score_completion(item, completion)

    def evaluate(self, item: Item, completion: str) -> bool:
        """True when the completion is correct (:attr:`~mmdps.verifiers.Verdict.correct`)."""
        return self.reward(item, completion).correct

    def reference_completion(self, item: Item) -> str | None:
        """A completion stating ``item``'s own ground truth in the form the pack's verifier accepts, or
        ``None`` when the pack cannot write one. :func:`mmdps.data.sanity.check_reward_on_ground_truth`
        scores these to catch a wrong column mapping before training.

        The default knows the built-in answer formats: ``\\boxed{}`` (``math``, ``geometry``) and a bare
        integer (``integer``); a pack with another verifier overrides it. A ground truth that reads like
        a worked solution rather than a final answer (it has a ``\\boxed{}``, a ``####`` line, several
        lines, or a dozen words of prose: the solution column mapped as the answer) raises ``ValueError``
        saying so, since a lenient verifier would match it against itself.
        """
        verifier = item.verifier or self.verifier
        truth = item.ground_truth
        if isinstance(truth, (list, tuple)):  # equivalent forms (Minerva): any one is right
            truth = truth[0] if truth else None
        if truth is None or isinstance(truth, dict):
            return None
        if verifier in BOXED_VERIFIERS and _reads_like_a_solution(str(truth)):
            raise ValueError("the ground truth reads like a worked solution, not a final answer (is the solution "
                             "column mapped as the answer?)")
        if verifier in BOXED_VERIFIERS:
            return f"<think>The reference answer.</think> The answer is \\boxed{{{truth}}}."
        if verifier == "integer":
            return str(truth)
        return None
