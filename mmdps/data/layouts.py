"""Row layouts: :func:`normalize_row` turns one row into a :class:`Record` (question text, answer, image
sources in order, the row's own chat messages when it has them, and its id), whatever the layout:

* **verl** parquet rows: ``prompt`` (chat messages, ``<image>`` placeholders in the text),
  ``reward_model.ground_truth``, ``extra_info.index``, ``images``;
* **conversational** (TRL / OpenRLHF) rows: ``prompt`` chat messages (string contents or content
  blocks with ``{"type": "image"}``), ``image`` or ``images``, and ``solution`` / ``answer`` / ``label``;
* **flat** rows (EasyR1 / hiyouga geometry3k, MATH, MathVista, GeoQA, ...): a question column
  (``problem``, ``question``, ...), an answer column and an image column, renamed with ``columns``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmdps.data.readers import Row

IMAGE_PLACEHOLDER = "<image>"
SKIP_HINT = "pass skip_invalid=True to skip bad rows"

# Default column names of the flat layout, first match wins. ``columns={"question": "query"}`` overrides.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "question": ("problem", "question", "query", "prompt", "input"),
    "answer": ("answer", "ground_truth", "label", "solution", "output"),
    "images": ("images", "image", "decoded_image", "image_path"),
}
#: The id column ``mmdps data prepare`` writes (a hash of the row's content, so a re-prepared or reordered
#: file keeps every item's id); read as the item id whenever a row has it.
ID_COLUMN = "item_id"
# Answer columns of conversational (TRL / OpenRLHF) rows.
CONVERSATIONAL_ANSWER_KEYS = ("solution", "answer", "label", "ground_truth")


@dataclass
class Record:
    """A row in a layout-independent form.

    Attributes:
        question: the user text with ``<image>`` placeholders removed.
        answer: the answer / ground truth as stored in the row (``None`` if the row has none).
        images: image sources in the order they appear (paths, bytes, HF dicts or PIL images; not loaded).
        messages: the row's own chat messages (verl / conversational layouts), with image parts
            ``{"type": "image", "image": source}`` where the placeholders were; ``None`` for flat rows.
        id: the id the row carries (the ``columns["id"]`` column, ``item_id`` or verl's
            ``extra_info.index``) as an int, or ``None`` (packs then use the row position).
        layout: ``"verl"``, ``"conversational"`` or ``"flat"``.
        data: the whole row, for pack-specific fields (``choices``, ``difficulty``, ...).
        index, where: as in :class:`Row`.
    """

    question: str
    answer: Any
    images: list[Any]
    messages: list[dict[str, Any]] | None
    id: int | None
    layout: str
    data: dict[str, Any]
    index: int
    where: str


def detect_layout(data: Mapping[str, Any]) -> str:
    """``"verl"`` (chat ``prompt`` + ``reward_model``), ``"conversational"`` (chat ``prompt``) or ``"flat"``."""
    prompt = data.get("prompt")
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(m, dict) and "role" in m for m in prompt):
        return "verl" if isinstance(data.get("reward_model"), dict) else "conversational"
    return "flat"


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    """``data[key]``, where ``key`` may be a dotted path into nested dicts (``"extra_info.index"``)."""
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def is_missing(value: Any) -> bool:
    """None, or a NaN / pandas NA: what parquet and pandas store for a missing value (a NaN answer
    read as text would become the gold ``"nan"``)."""
    if value is None:
        return True
    if isinstance(value, float):  # numpy float64 included
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _first_present(data: Mapping[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for key in keys:
        value = _lookup(data, key)
        if not is_missing(value):
            return key, value
    return None, None


def _has_key(data: Mapping[str, Any], key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    holder = _lookup(data, parent) if parent else data
    return isinstance(holder, Mapping) and leaf in holder


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is one (an int, an integral float, ASCII digits), else ``None``."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars from pandas
        value = value.tolist()
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # ASCII digits only: int() refuses "²" (which str.isdigit accepts) and texts over 4,300 digits.
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,30}\s*", value):
        return int(value)
    return None


def _image_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):  # numpy arrays from pandas
        return list(value.tolist())
    return [value]


def split_placeholders(text: str, images: list[Any], cursor: int, where: str) -> tuple[list[dict[str, Any]], int]:
    """Split ``text`` on ``<image>`` into text and image parts, taking images from ``images[cursor:]``."""
    parts: list[dict[str, Any]] = []
    pieces = text.split(IMAGE_PLACEHOLDER)
    for position, piece in enumerate(pieces):
        if position > 0:
            if cursor >= len(images):
                raise ValueError(f"{where}: the prompt has more {IMAGE_PLACEHOLDER} placeholders than images "
                                 f"({len(images)}); make the counts match or {SKIP_HINT}")
            parts.append({"type": "image", "image": images[cursor]})
            cursor += 1
        if piece.strip():
            parts.append({"type": "text", "text": piece})
    return parts, cursor


def _placeholder_count(messages: Sequence[Mapping[str, Any]]) -> int:
    count = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            count += content.count(IMAGE_PLACEHOLDER)
        elif isinstance(content, (list, tuple)):
            for part in content:
                if isinstance(part, Mapping):
                    if part.get("type") == "image":
                        count += 1
                    elif part.get("type") == "text":
                        count += str(part.get("text") or "").count(IMAGE_PLACEHOLDER)
    return count


def messages_with_images(prompt: Sequence[Mapping[str, Any]], images: list[Any], where: str) -> list[dict[str, Any]]:
    """Chat messages with each ``<image>`` placeholder / bare ``{"type": "image"}`` block replaced, in
    order, by ``{"type": "image", "image": source}``.

    Images without any placeholder go before the first user text (as TRL does). A count mismatch
    raises ``ValueError``.
    """
    placeholders = _placeholder_count(prompt)
    if placeholders and placeholders != len(images):
        raise ValueError(f"{where}: the prompt has {placeholders} image placeholder(s) but the row has "
                         f"{len(images)} image(s); make the counts match or {SKIP_HINT}")
    cursor = 0
    out: list[dict[str, Any]] = []
    for message in prompt:
        content = message.get("content")
        if isinstance(content, str):
            parts, cursor = split_placeholders(content, images, cursor, where)
        elif isinstance(content, (list, tuple)):
            parts = []
            for part in content:
                if not isinstance(part, Mapping):
                    raise ValueError(f"{where}: message content parts must be dicts, got {type(part).__name__}")
                if part.get("type") == "image":
                    if part.get("image") is not None:
                        parts.append({"type": "image", "image": part["image"]})
                    else:
                        parts.append({"type": "image", "image": images[cursor]})
                        cursor += 1
                elif part.get("type") == "text":
                    more, cursor = split_placeholders(str(part.get("text") or ""), images, cursor, where)
                    parts.extend(more)
                else:
                    raise ValueError(f"{where}: unsupported content part type {part.get('type')!r} "
                                     "(text and image parts are supported)")
        elif content is None:
            parts = []
        else:
            raise ValueError(f"{where}: message content must be a string or a list of parts")
        out.append({"role": message.get("role", "user"), "content": parts})
    if not placeholders and images:
        user = next((m for m in out if m["role"] == "user"), None)
        if user is None:
            raise ValueError(f"{where}: the row has images but no user message to attach them to")
        user["content"] = [{"type": "image", "image": image} for image in images] + user["content"]
    # Text-only messages go back to plain strings, the form every chat template accepts.
    for message in out:
        if all(p["type"] == "text" for p in message["content"]):
            message["content"] = "".join(p["text"] for p in message["content"])
    return out


def _user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    chunks = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            chunks.append(content)
        elif content is not None:
            chunks.extend(p["text"] for p in content if p.get("type") == "text")
    return "\n".join(c.strip() for c in chunks if c.strip())


def normalize_row(row: Row, *, columns: Mapping[str, str] | None = None, layout: str = "auto") -> Record:
    """Turn a raw :class:`Row` into a :class:`Record` (see the module docstring for the layouts).

    Args:
        columns: column names for the flat layout, e.g. ``{"question": "query", "answer": "gt",
            "images": "image", "id": "pid"}``. Keys may be dotted paths into nested dicts. ``"answer"``,
            ``"images"`` and ``"id"`` also apply to the verl and conversational layouts. Without an
            ``"id"`` column, ``item_id`` (written by ``mmdps data prepare``) or verl's ``extra_info.index``
            is read as the id.
        layout: ``"auto"`` (detect), ``"verl"``, ``"conversational"`` or ``"flat"``.

    Raises:
        ValueError: the row has no question, or its image placeholders and images do not match.
    """
    columns = dict(columns or {})
    data = row.data
    if layout == "auto":
        layout = detect_layout(data)
    if layout not in ("verl", "conversational", "flat"):
        raise ValueError(f"unknown row layout {layout!r}; use 'auto', 'verl', 'conversational' or 'flat'")

    image_keys = (columns["images"],) if "images" in columns else DEFAULT_COLUMNS["images"]
    _, image_value = _first_present(data, image_keys)
    images = _image_list(image_value)
    # Ids: a column the user names, the prepared item_id, verl's extra_info.index, else (in the pack) the
    # row position. Other id-like columns are not trusted by default: many datasets repeat them.
    id_keys = (columns["id"],) if "id" in columns else (ID_COLUMN, "extra_info.index")
    id_key, raw_id = _first_present(data, id_keys)
    item_id = whole_number(raw_id)
    if id_key is not None and item_id is None:
        raise ValueError(f"{row.where}: id column {id_key!r} holds {raw_id!r}, not a whole number; fix the row or "
                         f"{SKIP_HINT}")

    if layout in ("verl", "conversational"):
        prompt = data.get("prompt")
        if not isinstance(prompt, (list, tuple)) or not prompt:
            raise ValueError(f"{row.where}: 'prompt' must be a non-empty list of chat messages for the "
                             f"{layout} layout")
        messages = messages_with_images(prompt, images, row.where)
        if "answer" in columns:
            answer = _lookup(data, columns["answer"])
        elif layout == "verl":
            answer = _lookup(data, "reward_model.ground_truth")
        else:
            answer = _first_present(data, CONVERSATIONAL_ANSWER_KEYS)[1]
        # verl geo3k rows keep the bare problem in extra_info.question; prefer it over the prompt text,
        # which already has an instruction appended.
        bare = _lookup(data, "extra_info.question")
        question = bare.replace(IMAGE_PLACEHOLDER, "").strip() if isinstance(bare, str) else _user_text(messages)
    else:
        messages = None
        question_keys = (columns["question"],) if "question" in columns else DEFAULT_COLUMNS["question"]
        key, question_value = _first_present(data, question_keys)
        if key is None:
            null = [k for k in question_keys if _has_key(data, k)]
            if null:
                raise ValueError(f"{row.where}: the question column {null[0]!r} is empty (null); fix the row or "
                                 f"{SKIP_HINT}")
            raise ValueError(f"{row.where}: no question column (looked for {', '.join(question_keys)}; row "
                             f"has {', '.join(sorted(data)) or 'no fields'}); name it with "
                             f"columns={{'question': ...}} or {SKIP_HINT}")
        if not isinstance(question_value, str):
            raise ValueError(f"{row.where}: question column {key!r} must be text, got "
                             f"{type(question_value).__name__}")
        placeholders = question_value.count(IMAGE_PLACEHOLDER)
        if placeholders and placeholders != len(images):
            raise ValueError(f"{row.where}: the question has {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) "
                             f"but the row has {len(images)} image(s); make the counts match or {SKIP_HINT}")
        question = question_value.replace(IMAGE_PLACEHOLDER, " ").strip()
        question = re.sub(r"[ \t]{2,}", " ", question)
        answer_keys = (columns["answer"],) if "answer" in columns else DEFAULT_COLUMNS["answer"]
        answer = _first_present(data, answer_keys)[1]
    if not question.strip():
        raise ValueError(f"{row.where}: the problem text is empty; fix the row or {SKIP_HINT}")
    return Record(question=question, answer=None if is_missing(answer) else answer, images=images,
                  messages=messages, id=item_id, layout=layout, data=data, index=row.index,
                  where=row.where)


def require(data: Mapping[str, Any], key: str, where: str, hint: str = "") -> Any:
    """``data[key]`` (dotted paths allowed), or a ``ValueError`` naming the row and the fields it has."""
    value = _lookup(data, key)
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        state = "empty" if _has_key(data, key) else "missing"
        fix = hint or SKIP_HINT
        raise ValueError(f"{where}: field {key!r} is {state} (row has: {', '.join(sorted(data)) or 'no fields'}); "
                         f"{fix}")
    return value
