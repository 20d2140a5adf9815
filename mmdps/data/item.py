"""The unit of data every part of mmdps passes around: one prompt with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ``metadata[BREAKDOWNS_KEY]``: ``{breakdown name: [labels]}``, the groups a benchmark officially reports
#: accuracy by (e.g. MathVista's ``{"task": ["geometry problem solving"], "skills": [...]}``).
BREAKDOWNS_KEY = "breakdowns"


@dataclass
class Item:
    """One prompt of a task.

    Attributes:
        id: stable integer id of the prompt (e.g. verl's ``extra_info.index``, or the row index). The
            trainer keys selector state by the item's position in the training set and stores the
            ``id`` list in checkpoints, so ids must be unique within a dataset.
        messages: chat messages in the HF / TRL conversational layout. ``content`` is a string or a list
            of parts ``{"type": "text", "text": ...}`` and ``{"type": "image", "image": PIL.Image}``.
            Images come before the text they belong to, as the Qwen2-VL processors expect.
        ground_truth: whatever the pack's verifier takes as ``ground_truth`` (a string, a dict, ...).
        verifier: name of the verifier in ``mmdps.verifiers`` that scores completions of this item.
        task: name of the task pack the item came from.
        metadata: extra fields passed to the verifier as keyword arguments (e.g. ``choices``) and kept
            in reports (e.g. ``problem_type``, ``difficulty``, ``source``, ``row``, and
            ``breakdowns``: see :data:`BREAKDOWNS_KEY`).
    """

    id: int
    messages: list[dict[str, Any]]
    ground_truth: Any
    verifier: str
    task: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> list[Any]:
        """The images of all messages, in order (usually PIL images)."""
        found: list[Any] = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image":
                        found.append(part.get("image"))
        return found

    @property
    def text(self) -> str:
        """The concatenated text of the user messages (for logs and reports)."""
        chunks: list[str] = []
        for message in self.messages:
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                chunks.append(content)
            elif isinstance(content, list):
                chunks.extend(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return "\n".join(chunks)
