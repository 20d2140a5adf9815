"""A raw row of a dataset source, as the readers (local files and the hub) yield it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Row:
    """One raw row of a source.

    Attributes:
        data: the row as a dict.
        index: 0-based position of the row in its source (used as the default item id).
        where: the file and the row, for error messages: ``"data.jsonl line 4"`` (1-based line numbers
            for JSONL, as editors show them) or ``"data.parquet row 3"`` (0-based, as pandas shows them).
        error: why this line is not a row (the message names ``where``); ``data`` is then empty.
    """

    data: dict[str, Any]
    index: int
    where: str
    error: str | None = None
