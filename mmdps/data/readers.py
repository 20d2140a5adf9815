"""Reading the rows of a local dataset source, with row numbers for error messages.

:func:`read_rows` reads a local source into :class:`Row` objects (the row dict, its position, and a
``where`` string such as ``"train.jsonl line 4"`` for error messages). Sources: a JSON list, JSONL,
parquet, a folder written by ``datasets``' ``save_to_disk``, a folder of split files
(``train.jsonl``, ``data/test-00000-of-00001.parquet``, ...), or any other file ``datasets.load_dataset``
reads (csv, arrow, ...). A source that does not exist locally is read as a hub dataset id
(``owner/name``, optionally ``owner/name@split``; :mod:`mmdps.data.hub`), and when that fails too the
error names both readings.

A line that cannot be a row (bad JSON, nested too deeply to parse, an integer over 4,300 digits, not an
object, not UTF-8) raises ``ValueError`` naming the file and line; with ``keep_bad_rows=True`` it comes
as a :class:`Row` whose ``error`` says why instead, so that a loader can skip it under ``skip_invalid``
and still read the lines after it. A UTF-8 byte-order mark at the start of a file is accepted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmdps.data.row import Row

_READERS_VIA_DATASETS = {".csv": "csv", ".tsv": "csv", ".arrow": "arrow", ".txt": "text"}
_SPLIT_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")
_BOM = b"\xef\xbb\xbf"


def read_rows(source: str | os.PathLike, *, split: str = "train", keep_bad_rows: bool = False) -> Iterator[Row]:
    """Yield the rows of a local file or folder (see the module docstring for what is accepted).

    ``split`` picks the split of a ``save_to_disk`` ``DatasetDict`` or of a folder of split files; a
    single file is one split and ignores it. ``keep_bad_rows``: yield unparsable lines as rows with an
    ``error`` instead of raising.
    """
    for row in _read_source(Path(source), split):
        if row.error is not None and not keep_bad_rows:
            raise ValueError(row.error)
        yield row


def _read_source(path: Path, split: str) -> Iterator[Row]:
    if not path.exists():
        from mmdps.data.hub import missing_source_rows

        yield from missing_source_rows(path, split)
        return
    if path.is_dir():
        yield from _read_dir(path, split)
        return
    if not path.is_file():  # a FIFO or device would block the reader forever
        raise ValueError(f"{path}: not a regular file (a pipe, socket or device); pass a data file or folder")
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


def _row(value: Any, index: int, where: str) -> Row:
    if not isinstance(value, dict):
        return Row({}, index, where, f"{where}: expected a JSON object (a dict of fields), got {type(value).__name__}")
    huge = _huge_int_in(value)
    if huge is not None:
        return Row({}, index, where, f"{where}: an integer of {huge.digits} digits (Python reads at most 4,300); "
                                     "fix or drop the row")
    return Row(value, index, where)


def _not_utf8(where: str, exc: UnicodeDecodeError, line: bytes) -> str:
    return (f"{where}: not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); save the file as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8)")


class _HugeInt:
    """An integer literal too long for ``int()`` (Python refuses over 4,300 digits): a bad row, not a crash."""

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(text: str) -> int | _HugeInt:
    return int(text) if len(text.lstrip("-")) <= 4300 else _HugeInt(len(text))


def _huge_int_in(value: Any) -> _HugeInt | None:
    stack = [value]
    while stack:  # iterative: rows are already parsed, but a deep one must not recurse here either
        current = stack.pop()
        if isinstance(current, _HugeInt):
            return current
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return None


def _loads(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int)


def _read_jsonl(path: Path) -> Iterator[Row]:
    index = 0
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if not raw.strip():
                continue
            where = f"{path} line {line_number}"
            try:
                value = _loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield Row({}, index, where, _not_utf8(where, exc, raw))
            except json.JSONDecodeError as exc:
                yield Row({}, index, where, f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line "
                                            "must be one JSON object")
            except RecursionError:
                yield Row({}, index, where, f"{where}: JSON nested too deeply to parse; fix or drop the line")
            else:
                yield _row(value, index, where)
            index += 1


def _decode_file(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(_BOM):  # Windows editors save UTF-8 with a byte-order mark
        data = data[len(_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line_end = data.find(b"\n", exc.start)
        line = data[line_start:line_end if line_end >= 0 else len(data)]
        moved = UnicodeDecodeError(exc.encoding, line, exc.start - line_start, exc.end - line_start, exc.reason)
        line_number = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(_not_utf8(f"{path} line {line_number}", moved, line)) from exc


def _is_json_lines(text: str) -> bool:
    """True when the text's first non-blank line is a whole JSON object (JSON lines saved as .json)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(_loads(first), dict) and first.strip() != text.strip()
    except (json.JSONDecodeError, RecursionError):
        return False


def _read_json(path: Path) -> Iterator[Row]:
    text = _decode_file(path)
    try:
        value = _loads(text)
    except RecursionError as exc:
        raise ValueError(f"{path}: JSON nested too deeply to parse; fix the file") from exc
    except json.JSONDecodeError as exc:
        if _is_json_lines(text):  # many ".json" files are really JSON lines (one object per line)
            yield from _read_jsonl(path)
            return
        raise ValueError(f"{path} line {exc.lineno} column {exc.colno}: JSON syntax error ({exc.msg}); fix the file "
                         "(a missing comma, bracket or quote?) or validate it with python -m json.tool") from exc
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        value = list(value.values())  # rows keyed by their id (MathVista's {"1": {...}, "2": {...}})
    if isinstance(value, dict):
        # {"data": [...]} / {"train": [...], "test": [...]} wrappers, or one column-oriented table.
        lists = {k: v for k, v in value.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
            value = next(iter(lists.values()))
        elif lists and len(lists) == len(value) and len({len(v) for v in lists.values()}) == 1:
            value = [dict(zip(lists, values, strict=True)) for values in zip(*lists.values(), strict=True)]
        else:
            raise ValueError(f"{path}: a JSON object at the top level must hold one list of rows; "
                             "write a JSON list of objects or JSON lines instead")
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(value).__name__}")
    for index, item in enumerate(value):
        yield _row(item, index, f"{path} row {index}")


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
    files = split_files(path, split)
    if not files:
        raise ValueError(f"{path}: folder has no data for split {split!r}; expected a datasets save_to_disk "
                         f"folder or files named like '{split}.jsonl' / 'data/{split}-00000-of-00001.parquet'")
    for file in files:
        yield from _read_source(file, split)


def split_files(path: Path, split: str) -> list[Path]:
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
