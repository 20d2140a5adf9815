"""The benchmark-preset contract: one published benchmark's rows, prompt, scoring and breakdowns.

A preset is a :class:`~mmdps.tasks.base.TaskPack` for one fixed benchmark. It knows

* where the data lives: a Hugging Face hub id (``hub_id``, read with ``datasets.load_dataset`` when
  online) or a local copy: the published files (``local_files``, globs with ``{split}``), a file, or a
  ``datasets`` ``save_to_disk`` folder;
* its rows exactly as published (:meth:`BenchmarkPreset.convert` turns one into an :class:`Item`);
* its prompt (the published query where there is one, plus the pack template's answer instruction);
* its answer normalisation (the verifier its items name);
* its official breakdowns: every item carries ``metadata["breakdowns"] = {name: [labels]}`` under the
  names of the benchmark's own evaluation script, and ``mmdps eval`` reports accuracy per label.

Adding a benchmark is one module: subclass, set the class attributes, write ``convert``, decorate with
:func:`mmdps.presets.register` and name the module in ``mmdps.presets.BUILTIN`` (docs/evaluation.md).
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from mmdps.data.hub import hub_rows, missing_source_rows, parse_hub_id
from mmdps.data.item import BREAKDOWNS_KEY, Item
from mmdps.data.layouts import whole_number
from mmdps.data.loaders import build_items
from mmdps.data.readers import Row, read_rows
from mmdps.presets.protocols import OFFICIAL, PROTOCOL_NAMES, Protocol
from mmdps.presets.protocols import protocol as get_protocol
from mmdps.tasks.base import TaskPack, check_options, loader_options

# Answer instructions appended to the published query (the query already says what form the answer takes).
ANSWER_TEMPLATES = {
    "think_boxed": ("{question}\n\nFirst reason about the problem as an internal monologue inside <think> "
                    "</think> tags, then give the final answer within \\boxed{}."),
    "boxed": "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "plain": "{question}",
}
# A published answer instruction opening the prompt (MathVista's "Hint: Please answer ... provide the correct
# option letter, e.g., A, B, C, D, at the end.", MathVerse's "Please first conduct reasoning, ... at the end.").
_PUBLISHED_INSTRUCTION_END = re.compile(r"\A((?:Hint: )?Please [^\n]*?),? at the end\.")


class BenchmarkPreset(TaskPack):
    """Base class of benchmark presets (see the module docstring).

    Subclasses set ``name``, ``title``, ``verifier``, ``hub_id``, ``default_split``, ``breakdowns`` and
    ``local_files``, and implement :meth:`convert`. ``load`` options are the keyword parameters of
    ``convert`` after ``row`` and ``image_dir``.
    """

    title: ClassVar[str] = ""
    hub_id: ClassVar[str] = ""
    hub_config: ClassVar[str | None] = None
    default_split: ClassVar[str] = "test"
    #: official breakdown names, in the order reports list them
    breakdowns: ClassVar[tuple[str, ...]] = ()
    #: published file layouts inside a local folder, tried in order (globs; ``{split}`` is filled in)
    local_files: ClassVar[tuple[str, ...]] = ("{split}.parquet", "data/{split}-*.parquet", "{split}.jsonl",
                                              "{split}.json")
    templates = ANSWER_TEMPLATES
    default_template = "think_boxed"  # a preset without an official protocol (mmdps.presets.protocols)

    def __init__(self, template: str | None = None, system_prompt: str | None = None, protocol: str = "official"):
        """``protocol``: ``official`` (the benchmark's published protocol, where
        :data:`~mmdps.presets.protocols.OFFICIAL` has one) or ``dps``; it gives the default ``template``
        and load options (a ``template`` or load option given here wins)."""
        if protocol not in PROTOCOL_NAMES:
            raise ValueError(f"{self.name}: unknown protocol {protocol!r}; use one of {', '.join(PROTOCOL_NAMES)}")
        self.protocol: Protocol | None = (get_protocol(self.name, protocol)
                                          if protocol == "dps" or self.name in OFFICIAL else None)
        super().__init__(template or (self.protocol.template if self.protocol else None), system_prompt)

    def protocol_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` over the protocol's load options."""
        return {**(self.protocol.options if self.protocol else {}), **options}

    # ------------------------------------------------------------------ loading
    def load(self, source: str | os.PathLike | None = None, *, split: str | None = None, limit: int | None = None,
             skip_invalid: bool = False, seed: int | str = 0, **options: Any) -> list[Item]:
        """Load the benchmark from ``source`` (a hub id or a local copy; default :attr:`hub_id`).

        ``seed`` is unused (a benchmark is fixed); it is accepted for the task-pack contract.
        """
        del seed
        split = split or self.default_split
        source = str(source) if source not in (None, "") else self.hub_id
        options = self.protocol_options(options)
        check_options(self.name, options, loader_options(self.convert, exclude=("row", "image_dir")),
                      mode=self.title or self.name)
        rows, image_dir = self.rows(source, split)
        items = build_items(rows, lambda row: self.convert(row, image_dir=image_dir, **options), source=source,
                            limit=limit, skip_invalid=skip_invalid)
        for item in items:
            item.task = self.name
        return items

    def rows(self, source: str, split: str) -> tuple[Iterator[Row], Path | None]:
        """The rows of ``split`` and the folder relative image paths resolve against."""
        path = Path(source).expanduser()
        if path.is_file():
            return self.read_file(path, split), path.parent
        if path.is_dir():
            files = self.split_files(path, split)
            if files:
                return _chain(self.read_file(f, split) for f in files), files[0].parent
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                return read_rows(path, split=split, keep_bad_rows=True), path
            tried = ", ".join(p.format(split=split) for p in self.local_files)
            raise FileNotFoundError(f"{self.title}: {path} holds none of the published files for split {split!r} "
                                    f"(looked for {tried}) and is not a datasets save_to_disk folder; pass the "
                                    f"file itself, or a folder as the benchmark publishes it")
        if parse_hub_id(source) is not None:
            return missing_source_rows(source, split, config=self.hub_config), None
        raise FileNotFoundError(f"{self.title}: {source} is neither a local file or folder nor a hub dataset id "
                                f"(owner/name; this benchmark's is {self.hub_id})")

    def split_files(self, folder: Path, split: str) -> list[Path]:
        """The first of :attr:`local_files` that matches inside ``folder``, as sorted paths."""
        for pattern in self.local_files:
            found = sorted(Path(p) for p in glob.glob(str(folder / pattern.format(split=split))))
            found = [p for p in found if p.is_file()]
            if found:
                return found
        return []

    def read_file(self, path: Path, split: str) -> Iterator[Row]:
        """Rows of one local file (override for formats :func:`read_rows` does not know); an unparsable
        line comes as a row with an ``error``, which ``skip_invalid`` skips and counts like any bad row."""
        return read_rows(path, split=split, keep_bad_rows=True)

    def convert(self, row: Row, *, image_dir: Path | None) -> Item:
        """Turn one published row into an item (raise ``ValueError`` naming ``row.where`` on bad rows)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ items
    def format_prompt(self, question: str) -> str:
        """The template applied to ``question``; with a template asking for ``\\boxed{}``, a published
        instruction that asks for the answer "at the end" asks for it "within \\boxed{} at the end", so the
        prompt does not give two answer instructions that disagree."""
        if "\\boxed{}" in self.template:
            question = _PUBLISHED_INSTRUCTION_END.sub(r"\1, within \\boxed{} at the end.", question.strip(), count=1)
        return super().format_prompt(question)

    def benchmark_item(self, row: Row, *, id: int, question: str, ground_truth: Any, images: Sequence[Any],
                       metadata: Mapping[str, Any], breakdowns: Mapping[str, Any]) -> Item:
        """An item with the pack's template applied to ``question`` and the breakdown labels attached."""
        labels = {name: _labels(breakdowns.get(name)) for name in self.breakdowns}
        meta = {"row": row.index, "source": self.name, **metadata,
                BREAKDOWNS_KEY: {name: values for name, values in labels.items() if values}}
        return self.make_item(id=id, question=question, ground_truth=ground_truth, images=images, metadata=meta)


def _labels(value: Any) -> list[str]:
    if value is None:
        return []
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    values = value if isinstance(value, (list, tuple, set)) else [value]
    return list(dict.fromkeys(str(v).strip() for v in values if v is not None and str(v).strip()))


def _chain(iterables: Iterable[Iterator[Row]]) -> Iterator[Row]:
    """Rows of several files, numbered on across them (ids and ``where`` stay per file)."""
    index = 0
    for rows in iterables:
        for row in rows:
            yield Row(row.data, index, row.where)
            index += 1


def row_id(value: Any, row: Row) -> int:
    """A published id as the item id when it is a whole number (``"²"`` and ``"abc"`` are not), else the
    row position."""
    number = whole_number(value)
    return row.index if number is None else number


def mapping_field(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """``data[key]`` when it is a dict (``{}`` when absent), else a ``ValueError`` naming the row."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {key!r} must be a dict of fields, got {type(value).__name__} {value!r:.60}; fix "
                         "the row or pass skip_invalid=True")
    return value


def optional_text(value: Any) -> str | None:
    """A stripped string, or None for None / NaN / empty (parquet writes missing strings either way)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def text_list(value: Any, where: str, field: str) -> list[str] | None:
    """A list of strings (``choices``), or None when the row has none."""
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: {field!r} must be a list, got {type(value).__name__}; fix the row or pass "
                         "skip_invalid=True")
    return [str(v).strip() for v in value] or None


__all__ = ["ANSWER_TEMPLATES", "BREAKDOWNS_KEY", "BenchmarkPreset", "hub_rows", "mapping_field", "optional_text",
           "row_id", "text_list"]
