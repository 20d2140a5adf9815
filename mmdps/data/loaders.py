"""Reading dataset rows in the layouts people already have, with row numbers for error messages.

Two steps, both usable on their own:

1. :func:`read_rows` reads a local source into :class:`Row` objects (the row dict, its position, and a
   ``where`` string such as ``"train.jsonl line 4"`` for error messages). Sources: a JSON list, JSONL,
   parquet, a folder written by ``datasets``' ``save_to_disk``, a folder of split files
   (``train.jsonl``, ``data/test-00000-of-00001.parquet``, ...), or any other file ``datasets.load_dataset``
   reads (csv, arrow, ...). Nothing is downloaded: sources must be local.
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

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from mmdps.data.images import load_image
from mmdps.data.item import Item

IMAGE_PLACEHOLDER = "<image>"
SKIP_HINT = "pass skip_invalid=True to skip bad rows"

# Default column names of the flat layout, first match wins. ``columns={"question": "query"}`` overrides.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "question": ("problem", "question", "query", "prompt", "input"),
    "answer": ("answer", "ground_truth", "label", "solution", "output"),
    "images": ("images", "image", "decoded_image", "image_path"),
}
# Answer columns of conversational (TRL / OpenRLHF) rows.
CONVERSATIONAL_ANSWER_KEYS = ("solution", "answer", "label", "ground_truth")

_READERS_VIA_DATASETS = {".csv": "csv", ".tsv": "csv", ".arrow": "arrow", ".txt": "text"}
_SPLIT_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")


@dataclass
class Row:
    """One raw row of a source.

    Attributes:
        data: the row as a dict.
        index: 0-based position of the row in its source (used as the default item id).
        where: the file and the row, for error messages: ``"data.jsonl line 4"`` (1-based line numbers
            for JSONL, as editors show them) or ``"data.parquet row 3"`` (0-based, as pandas shows them).
    """

    data: dict[str, Any]
    index: int
    where: str


@dataclass
class Record:
    """A row in a layout-independent form.

    Attributes:
        question: the user text with ``<image>`` placeholders removed.
        answer: the answer / ground truth as stored in the row (``None`` if the row has none).
        images: image sources in the order they appear (paths, bytes, HF dicts or PIL images; not loaded).
        messages: the row's own chat messages (verl / conversational layouts), with image parts
            ``{"type": "image", "image": source}`` where the placeholders were; ``None`` for flat rows.
        id: the id the row carries (verl's ``extra_info.index`` or the ``columns["id"]`` column) as an
            int, or ``None`` (packs then use the row position).
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


# ---------------------------------------------------------------------------------------------- reading
def read_rows(source: str | os.PathLike, *, split: str = "train") -> Iterator[Row]:
    """Yield the rows of a local file or folder (see the module docstring for what is accepted).

    ``split`` picks the split of a ``save_to_disk`` ``DatasetDict`` or of a folder of split files; a
    single file is one split and ignores it.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"data source not found: {path} (mmdps reads local files only; "
                                "download the dataset first and pass its path)")
    if path.is_dir():
        yield from _read_dir(path, split)
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from _read_json(path)
    elif suffix == ".parquet":
        yield from _read_parquet(path)
    elif suffix in _READERS_VIA_DATASETS:
        yield from _read_with_datasets(path, _READERS_VIA_DATASETS[suffix])
    else:
        raise ValueError(f"{path}: unknown data file type {suffix!r}; use .json, .jsonl, .parquet, .csv, "
                         ".arrow or a folder written by datasets' save_to_disk")


def _as_row_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a JSON object (a dict of fields), got {type(value).__name__}")
    return value


def _read_jsonl(path: Path) -> Iterator[Row]:
    index = 0
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
            yield Row(_as_row_dict(value, where), index, where)
            index += 1


def _read_json(path: Path) -> Iterator[Row]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # Many ".json" files are really JSON lines (one object per line).
        yield from _read_jsonl(path)
        return
    if isinstance(value, dict):
        # {"data": [...]} / {"train": [...], "test": [...]} wrappers, or one column-oriented table.
        lists = {k: v for k, v in value.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
            value = next(iter(lists.values()))
        elif lists and len(lists) == len(value) and len({len(v) for v in lists.values()}) == 1:
            value = [dict(zip(lists, values)) for values in zip(*lists.values())]
        else:
            raise ValueError(f"{path}: a JSON object at the top level must hold one list of rows; "
                             "write a JSON list of objects or JSON lines instead")
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(value).__name__}")
    for index, item in enumerate(value):
        where = f"{path} row {index}"
        yield Row(_as_row_dict(item, where), index, where)


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for data in batch.to_pylist():
            yield Row(data, index, f"{path} row {index}")
            index += 1


def _read_with_datasets(path: Path, builder: str) -> Iterator[Row]:
    import datasets

    dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    for index, data in enumerate(dataset):
        yield Row(dict(data), index, f"{path} row {index}")


def _read_dir(path: Path, split: str) -> Iterator[Row]:
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        yield from _read_saved_dataset(path, split)
        return
    files = _split_files(path, split)
    if not files:
        raise ValueError(f"{path}: folder has no data for split {split!r}; expected a datasets save_to_disk "
                         f"folder or files named like '{split}.jsonl' / 'data/{split}-00000-of-00001.parquet'")
    for file in files:
        yield from read_rows(file, split=split)


def _split_files(path: Path, split: str) -> list[Path]:
    """Files of ``split`` inside ``path`` (``train.jsonl``, ``data/train-00000-of-00002.parquet``, ...)."""
    pattern = re.compile(rf"^{re.escape(split)}([-_.].*)?$")
    found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SPLIT_FILE_SUFFIXES
             and pattern.match(p.name) and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    return sorted(found)


def _read_saved_dataset(path: Path, split: str) -> Iterator[Row]:
    import datasets

    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"{path}: no split {split!r}; the dataset has splits {sorted(dataset)}")
        dataset = dataset[split]
        where_prefix = f"{path} [{split}]"
    else:
        where_prefix = str(path)
    for index, data in enumerate(dataset):
        yield Row(dict(data), index, f"{where_prefix} row {index}")


# ---------------------------------------------------------------------------------------------- layouts
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


def _first_present(data: Mapping[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for key in keys:
        value = _lookup(data, key)
        if value is not None:
            return key, value
    return None, None


def _as_int_id(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
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
        else:
            chunks.extend(p["text"] for p in content if p.get("type") == "text")
    return "\n".join(c.strip() for c in chunks if c.strip())


def normalize_row(row: Row, *, columns: Mapping[str, str] | None = None, layout: str = "auto") -> Record:
    """Turn a raw :class:`Row` into a :class:`Record` (see the module docstring for the layouts).

    Args:
        columns: column names for the flat layout, e.g. ``{"question": "query", "answer": "gt",
            "images": "image", "id": "pid"}``. Keys may be dotted paths into nested dicts. ``"answer"``,
            ``"images"`` and ``"id"`` also apply to the verl and conversational layouts. Without an
            ``"id"`` column only verl's ``extra_info.index`` is read as an id.
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
    # Ids: verl's extra_info.index, a column the user names, else (in the pack) the row position.
    # Other id-like columns are not trusted by default: many datasets repeat them.
    raw_id = _lookup(data, columns["id"] if "id" in columns else "extra_info.index")

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
    return Record(question=question, answer=answer, images=images, messages=messages, id=_as_int_id(raw_id),
                  layout=layout, data=data, index=row.index, where=row.where)


# ---------------------------------------------------------------------------------------------- images
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
        for original, image in zip(record.images, loaded):
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


# ---------------------------------------------------------------------------------------------- items
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

    A row whose conversion raises ``ValueError`` stops loading (the error names the file and row), or
    with ``skip_invalid=True`` is skipped; the skipped rows are counted in one warning. Ids must be
    unique.
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
            item = convert(row)
        except ValueError as exc:
            if not skip_invalid:
                raise
            skipped.append(str(exc))
            continue
        if item.id in seen:
            raise ValueError(f"{row.where}: item id {item.id} is already used by {seen[item.id]}; ids must be "
                             "unique within a dataset (fix the id column or drop it to number rows by position)")
        seen[item.id] = row.where
        items.append(item)
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} invalid row(s); first: {skipped[0]}", stacklevel=3)
    return items


def require(data: Mapping[str, Any], key: str, where: str, hint: str = "") -> Any:
    """``data[key]`` (dotted paths allowed), or a ``ValueError`` naming the row and the fields it has."""
    value = _lookup(data, key)
    if value is None or (isinstance(value, str) and not value.strip()):
        state = "empty" if key in data else "missing"
        fix = hint or SKIP_HINT
        raise ValueError(f"{where}: field {key!r} is {state} (row has: {', '.join(sorted(data)) or 'no fields'}); "
                         f"{fix}")
    return value


__all__ = [
    "Row", "Record", "read_rows", "detect_layout", "normalize_row", "messages_with_images", "split_placeholders",
    "load_record_images", "default_image_dir", "record_to_item", "source_name", "build_items", "require",
    "IMAGE_PLACEHOLDER", "DEFAULT_COLUMNS",
]
