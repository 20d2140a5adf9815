"""The task-pack contract.

A pack turns a data source (a file, a folder, or a seeded generator) into :class:`~mmdps.data.Item`
objects with chat messages, a ground truth and the name of the verifier that scores them::

    pack = mmdps.tasks.get("countdown")
    items = pack.load(None, split="cd34", num=2000, seed=0)   # generated
    items = pack.load("data/countdown.jsonl")                  # from a file
    verdict = pack.reward(items[0], "<think>...</think><answer>(1+2)*3</answer>")
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from mmdps.data.item import Item


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
             skip_invalid: bool = False, seed: int = 0, **options: Any) -> list[Item]:
        """Load (``source`` given) or generate (``source=None``, for packs with a generator) items.

        A bad row raises ``ValueError`` naming the file and row; with ``skip_invalid=True`` it is
        skipped and the number skipped is reported in one warning.
        """

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
    def reward(self, item: Item, completion: str) -> dict[str, float]:
        """Score one completion with the pack's verifier: ``{"score", "acc", "format"}``."""
        from mmdps import verifiers

        return verifiers.get(item.verifier or self.verifier)(completion, item.ground_truth, **item.metadata)

    def evaluate(self, item: Item, completion: str) -> bool:
        """True when the completion is correct."""
        return self.reward(item, completion)["acc"] >= 1.0
