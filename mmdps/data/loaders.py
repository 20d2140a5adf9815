"""Reading dataset rows in the layouts people already have, with row numbers for error messages.

Two steps, both usable on their own (modules :mod:`mmdps.data.readers` and :mod:`mmdps.data.layouts`):

1. :func:`read_rows` reads a local source into :class:`Row` objects (the row dict, its position, and a
   ``where`` string such as ``"train.jsonl line 4"`` for error messages). Sources: a JSON list, JSONL,
   parquet, a folder written by ``datasets``' ``save_to_disk``, a folder of split files
   (``train.jsonl``, ``data/test-00000-of-00001.parquet``, ...), or any other file ``datasets.load_dataset``
   reads (csv, arrow, ...). A source that does not exist locally is read as a hub dataset id
   (``owner/name[@split]``, :mod:`mmdps.data.hub`).
2. :func:`normalize_row` turns one row into a :class:`Record` (question text, answer, image sources in
   order, the row's own chat messages when it has them, and its id), whatever the layout:

   * **verl** parquet rows: ``prompt`` (chat messages, ``<image>`` placeholders in the text),
     ``reward_model.ground_truth``, ``extra_info.index``, ``images``;
   * **conversational** (TRL / OpenRLHF) rows: ``prompt`` chat messages (string contents or content
     blocks with ``{"type": "image"}``), ``image`` or ``images``, and ``solution`` / ``answer`` / ``label``;
   * **flat** rows (EasyR1 / hiyouga geometry3k, MATH, MathVista, GeoQA, ...): a question column
     (``problem``, ``question``, ...), an answer column and an image column, renamed with ``columns``.

Task packs then load the images (:func:`load_record_images`) and build items with :func:`build_items`,
which applies ``limit`` and ``skip_invalid`` and checks that ids are unique.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mmdps.data.images import load_image
from mmdps.data.item import Item
from mmdps.data.layouts import (
    CONVERSATIONAL_ANSWER_KEYS,
    DEFAULT_COLUMNS,
    IMAGE_PLACEHOLDER,
    SKIP_HINT,
    Record,
    detect_layout,
    messages_with_images,
    normalize_row,
    require,
    split_placeholders,
)
from mmdps.data.readers import Row, read_rows


def load_record_images(record: Record, image_dir: str | os.PathLike | None = None
                       ) -> tuple[list[Any], list[dict[str, Any]] | None]:
    """Load the record's images as RGB PIL images (relative paths resolve against ``image_dir``).

    Returns ``(images, messages)``: the loaded images in order, and the record's messages (or ``None``)
    with their image parts holding the loaded images. Raises ``ImageError`` (a ``ValueError``) naming
    the row when an image is missing or unreadable.
    """
    loaded = [load_image(source, base_dir=image_dir, where=record.where) for source in record.images]
    if record.messages is None:
        return loaded, None

    def loaded_part(source: Any) -> Any:
        # Placeholder parts hold the very objects of ``record.images``; parts that came with their own
        # image (a content block with an ``image``) are loaded here.
        for original, image in zip(record.images, loaded, strict=True):
            if original is source:
                return image
        return load_image(source, base_dir=image_dir, where=record.where)

    messages = []
    for message in record.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image", "image": loaded_part(part["image"])} if part["type"] == "image"
                       else dict(part) for part in content]
        messages.append({"role": message["role"], "content": content})
    return loaded, messages


def default_image_dir(source: str | os.PathLike) -> Path:
    """The folder relative image paths of ``source`` resolve against: its own folder (or itself)."""
    path = Path(source)
    return path if path.is_dir() else path.parent


def record_to_item(record: Record, pack: Any, *, ground_truth: Any, metadata: Mapping[str, Any],
                   question: str | None = None, raw_prompt: bool | None = None,
                   image_dir: str | os.PathLike | None = None) -> Item:
    """Build ``pack``'s item for ``record``, loading its images.

    With ``raw_prompt`` (default: True for verl / conversational rows, whose prompt is already
    final) the row's own messages are used as they are; otherwise the pack's template is applied to
    ``question`` (default ``record.question``) and the images go before the text.
    """
    images, messages = load_record_images(record, image_dir)
    item_id = record.id if record.id is not None else record.index
    if raw_prompt is None:
        raw_prompt = record.messages is not None
    if not raw_prompt or messages is None:
        return pack.make_item(id=item_id, question=question if question is not None else record.question,
                              ground_truth=ground_truth, images=images, metadata=dict(metadata))
    if pack.system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": pack.system_prompt})
    return Item(id=int(item_id), messages=messages, ground_truth=ground_truth, verifier=pack.verifier,
                task=pack.name, metadata=dict(metadata))


def source_name(path: str | os.PathLike) -> str:
    """A short name for reports: ``math500`` for ``.../math500.json``, ``gsm8k/test`` for ``gsm8k/test.jsonl``."""
    path = Path(path)
    stem = path.stem if path.suffix else path.name
    if stem.split("-")[0] in ("train", "test", "validation", "val", "dev") and path.parent.name:
        return f"{path.parent.name}/{stem}"
    return stem


def build_items(rows: Iterable[Row], convert: Callable[[Row], Item], *, source: Any, limit: int | None = None,
                skip_invalid: bool = False) -> list[Item]:
    """Convert rows to items, stopping after ``limit`` items.

    A row whose conversion raises (any exception but ``MemoryError``: a hostile row can raise
    ``TypeError``, ``OverflowError``, ``RecursionError``, ...) or that the reader could not parse stops
    loading with a ``ValueError`` naming the file and row, or with ``skip_invalid=True`` is skipped; the
    skipped rows are counted in one :class:`SkippedRowsWarning`. Ids must be unique.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    items: list[Item] = []
    skipped: list[str] = []
    seen: dict[int, str] = {}
    for row in rows:
        if limit is not None and len(items) >= limit:
            break
        try:
            if row.error is not None:  # a line the reader could not turn into a row
                raise ValueError(f"{row.error}; or {SKIP_HINT}")
            item = convert(row)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any bad row is named and skippable, whatever it raises
            error = row_error(exc, row.where)
            if not skip_invalid:
                if error is exc:
                    raise
                raise error from exc
            skipped.append(str(error))
            continue
        if item.id in seen:
            raise ValueError(f"{row.where}: item id {item.id} is already used by {seen[item.id]}; ids must be "
                             "unique within a dataset (fix the id column or drop it to number rows by position)")
        seen[item.id] = row.where
        items.append(item)
    if skipped:
        warnings.warn(SkippedRowsWarning(source, skipped), stacklevel=3)
    return items


def row_error(exc: BaseException, where: str) -> ValueError:
    """``exc`` itself when it is a ``ValueError`` that names ``where``; else a ``ValueError`` that does."""
    if isinstance(exc, ValueError) and where in str(exc):
        return exc
    detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    return ValueError(f"{where}: {type(exc).__name__}: {detail}; fix the row or {SKIP_HINT}")


class SkippedRowsWarning(UserWarning):
    """``skip_invalid`` left rows out: ``count`` of them from ``source``; ``first`` is the first reason.

    Reports catch it (``warnings.catch_warnings(record=True)``) to record how many rows were dropped.
    """

    def __init__(self, source: Any, reasons: list[str]):
        self.source, self.count, self.first = source, len(reasons), reasons[0]
        super().__init__(f"{source}: skipped {self.count} invalid row(s); first: {self.first}")


__all__ = [
    "Row", "Record", "read_rows", "detect_layout", "normalize_row", "messages_with_images", "split_placeholders",
    "load_record_images", "default_image_dir", "record_to_item", "source_name", "build_items", "require",
    "SkippedRowsWarning", "row_error",
    "IMAGE_PLACEHOLDER", "DEFAULT_COLUMNS", "CONVERSATIONAL_ANSWER_KEYS", "SKIP_HINT",
]
