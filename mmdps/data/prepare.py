"""``mmdps data prepare``: turn a published dataset (a hub id or a local copy in the hub's layout) into
the files the configs read, with a stable id in every row.

One small :class:`DatasetSpec` per dataset says which source splits go to which output file and which
source layouts (:class:`SourceSchema`: the columns it must have, and how one row becomes ours) it knows.
A source whose columns match none of them is refused, naming the columns expected and those found.

Every written row gets ``item_id``: a hash of its content (problem, answer and image bytes; Countdown's
target and numbers), so that a re-prepared or reordered file keeps each problem's id and a resumed run
can never attach one problem's selector state to another. Rows with the same content are written once.
Bad rows (no answer, an unreadable image, an image shape the model cannot take, a duplicate) are
skipped and reported with the reason and the first row of each kind.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmdps.data.hub import HubSourceError, both_readings, is_hub_source, load_hub_dataset, parse_hub_id
from mmdps.data.images import load_image
from mmdps.data.layouts import ID_COLUMN, IMAGE_PLACEHOLDER, is_missing, whole_number
from mmdps.data.readers import Row, read_rows, split_files

#: How many bits of the content hash make the id (exact in a float64 and in any JSON reader).
ID_BITS = 53


class SchemaError(ValueError):
    """The source's columns match none of the layouts the dataset's spec knows."""


@dataclass(frozen=True)
class SourceSchema:
    """One source layout: the columns a row must have and how it becomes our row.

    ``convert(data, where)`` returns our row without its id, or raises ``ValueError`` (the row is
    skipped and reported).
    """

    name: str
    columns: tuple[str, ...]
    convert: Callable[[Mapping[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset ``mmdps data prepare`` knows.

    Attributes:
        name: the command's NAME.
        hub_id: the source when ``--source`` is omitted; ``hub_config`` its configuration (gsm8k ``main``).
        outputs: ``(source split, output file relative to --out)`` pairs, in order.
        schemas: the source layouts it accepts, tried in order.
        id_fields: our columns whose values (and the image bytes) make the content id.
        default_out: the folder written when ``--out`` is omitted (what ``configs/base`` read).
        task: the task pack that reads the output (for the ground-truth self-check).
    """

    name: str
    hub_id: str
    outputs: tuple[tuple[str, str], ...]
    schemas: tuple[SourceSchema, ...]
    id_fields: tuple[str, ...]
    default_out: str
    task: str
    hub_config: str | None = None
    description: str = ""


@dataclass
class SplitReport:
    """What one output file got."""

    split: str
    path: Path
    schema: str
    rows: int = 0
    images: int = 0
    #: reason -> (count, first row with that reason)
    skipped: dict[str, tuple[int, str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        count, first = self.skipped.get(reason, (0, where))
        self.skipped[reason] = (count + 1, first)


@dataclass
class PrepareReport:
    """What :func:`prepare` wrote: one :class:`SplitReport` per file, and the splits the source lacked."""

    name: str
    source: str
    out: Path
    splits: list[SplitReport] = field(default_factory=list)
    missing_splits: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"{self.name}: {self.source} -> {self.out}"]
        for split in self.splits:
            images = f", {split.images} images" if split.images else ""
            skipped = sum(count for count, _ in split.skipped.values())
            lines.append(f"  {split.split}: {split.rows} rows{images}, {skipped} skipped -> {split.path} "
                         f"(source layout: {split.schema})")
            for reason, (count, first) in sorted(split.skipped.items(), key=lambda kv: -kv[1][0]):
                lines.append(f"    skipped {count}: {reason} (first: {first})")
        if self.missing_splits:
            lines.append(f"  not in the source: {', '.join(self.missing_splits)}")
        return lines


# ------------------------------------------------------------------------------------------ values
def content_id(*parts: Any) -> int:
    """A stable non-negative id from the row's content (JSON of ``parts``; bytes by their SHA-256)."""
    def default(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return hashlib.sha256(value).hexdigest()
        raise TypeError(f"cannot hash {type(value).__name__}")

    text = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=default)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << ID_BITS) - 1)


def _text(value: Any, what: str, where: str) -> str:
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"no {what}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} is a {type(value).__name__}, not text")
    return str(value).strip()


def answer_forms(value: Any, where: str) -> str | list[str]:
    """A gold answer as text, or a list of equivalent texts. A list written as a string (``"['2']"``,
    as some exports store OlympiadBench and Minerva answers) is read back as the list."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]") \
            and len(value) < 10_000:
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(v, (str, int, float)) for v in parsed):
            value = parsed
    if isinstance(value, (list, tuple)):
        forms = [_text(v, "answer", where) for v in value if not is_missing(v)]
        if not forms:
            raise ValueError("empty answer list")
        return forms[0] if len(forms) == 1 else forms
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _text(value, "answer", where)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) of a solution, braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for position in range(open_at, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:position].strip() or None
    return None


# Metadata columns a math row keeps (difficulty and type breakdowns in eval reports).
_MATH_EXTRAS = ("level", "difficulty", "type", "subject", "subfield", "unit", "unique_id")


def _math_row(problem: Any, answer: Any, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    row: dict[str, Any] = {"problem": _text(problem, "problem", where), "answer": answer_forms(answer, where)}
    for key in _MATH_EXTRAS:
        value = data.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and not is_missing(value) \
                and str(value).strip() not in ("", "None"):
            row[key] = value
    return row


def _from_solution(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    solution = _text(data.get("solution"), "solution", where)
    answer = last_boxed(solution)
    if answer is None:
        raise ValueError("the solution has no \\boxed{} answer")
    return _math_row(data.get("problem"), answer, data, where)


def _gsm8k_row(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    answer = _text(data.get("answer"), "answer", where)
    if "####" not in answer:
        raise ValueError('the answer has no "#### N" final answer')
    final = answer.rsplit("####", 1)[1].strip().replace(",", "").rstrip(".")
    if not final:
        raise ValueError("nothing after '####'")
    return {"problem": _text(data.get("question"), "question", where), "answer": final}


def _countdown_row(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    target = whole_number(data.get("target"))
    numbers: Any = data.get("nums")
    if hasattr(numbers, "tolist"):
        numbers = numbers.tolist()
    if target is None:
        raise ValueError(f"target {data.get('target')!r:.40} is not a whole number")
    if not isinstance(numbers, (list, tuple)) or not numbers:
        raise ValueError("nums is not a non-empty list")
    parsed = [whole_number(n) for n in numbers]
    if any(n is None for n in parsed):
        raise ValueError(f"nums {numbers!r:.60} holds a value that is not a whole number")
    return {"target": target, "nums": parsed}


def _image_bytes(source: Any, base_dir: Path | None) -> bytes:
    """The encoded bytes of one source image (HF dict, bytes, a path, or a decoded PIL image)."""
    if isinstance(source, Mapping) and source.get("bytes"):
        return bytes(source["bytes"])
    if isinstance(source, Mapping) and source.get("path"):
        source = source["path"]
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        load_image(path)  # refuses FIFOs and missing files with a clear message before reading
        return path.read_bytes()
    if hasattr(source, "save"):  # a PIL image decoded by datasets
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return buffer.getvalue()
    raise ValueError(f"cannot read an image from a {type(source).__name__}")


def _geometry_row(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    problem = _text(data.get("problem"), "problem", where)
    images: Any = data.get("images")
    if hasattr(images, "tolist") and not isinstance(images, (bytes, str)):
        images = images.tolist()
    images = images if isinstance(images, (list, tuple)) else [images] if images is not None else []
    if not images:
        raise ValueError("no image")
    placeholders = problem.count(IMAGE_PLACEHOLDER)
    if placeholders not in (0, len(images)):
        raise ValueError(f"{placeholders} {IMAGE_PLACEHOLDER} placeholder(s) for {len(images)} image(s)")
    answer = answer_forms(data.get("answer"), where)
    if isinstance(answer, list):
        raise ValueError("several answers; Geometry3K rows have one")
    return {"problem": problem, "answer": answer, "images": list(images)}


# ------------------------------------------------------------------------------------------ the datasets
MATH_SCHEMAS = (
    SourceSchema("problem + answer (DeepScaleR test sets, MATH-500, AIME)", ("problem", "answer"),
                 lambda d, w: _math_row(d.get("problem"), d.get("answer"), d, w)),
    SourceSchema("problem + solution (MATH, MATH-lighteval: the answer is the solution's last \\boxed{})",
                 ("problem", "solution"), _from_solution),
    SourceSchema("question + answer", ("question", "answer"),
                 lambda d, w: _math_row(d.get("question"), d.get("answer"), d, w)),
)
MATH_TEST_SETS = ("aime", "amc", "math500", "minerva", "olympiad_bench")

SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(
        name="geometry3k", hub_id="hiyouga/geometry3k", task="geometry", default_out="data/geometry3k",
        outputs=(("train", "train.parquet"), ("validation", "validation.parquet"), ("test", "test.parquet")),
        schemas=(SourceSchema("hiyouga/geometry3k (images, problem, answer)", ("images", "problem", "answer"),
                              _geometry_row),),
        id_fields=("problem", "answer"),
        description="Geometry3K with diagrams (EasyR1 / hiyouga layout): train 2,101, validation 300, test 601"),
    DatasetSpec(
        name="math", hub_id="DigitalLearningGmbH/MATH-lighteval", task="math", default_out="data/math",
        outputs=(("train", "train.json"), *((name, f"test/{name}.json") for name in MATH_TEST_SETS)),
        schemas=MATH_SCHEMAS, id_fields=("problem", "answer"),
        description="MATH train (7,500) and, from a local folder in the DeepScaleR layout, the five test sets "
                    "scripts/eval_math.sh reads (test/aime.json, amc, math500, minerva, olympiad_bench)"),
    DatasetSpec(
        name="math500", hub_id="HuggingFaceH4/MATH-500", task="math", default_out="data/math",
        outputs=(("test", "test/math500.json"),), schemas=MATH_SCHEMAS, id_fields=("problem", "answer"),
        description="MATH-500 test set, written where scripts/eval_math.sh reads it"),
    DatasetSpec(
        name="aime", hub_id="HuggingFaceH4/aime_2024", task="math", default_out="data/math",
        outputs=(("train", "test/aime.json"),), schemas=MATH_SCHEMAS, id_fields=("problem", "answer"),
        description="AIME 2024 (30 problems; the math configs' in-training validation set), written where "
                    "configs/base/math.yaml and scripts/eval_math.sh read it"),
    DatasetSpec(
        name="gsm8k", hub_id="openai/gsm8k", hub_config="main", task="math", default_out="data/gsm8k",
        outputs=(("train", "train.jsonl"), ("test", "test.jsonl")),
        schemas=(SourceSchema("openai/gsm8k (question, answer with '#### N')", ("question", "answer"), _gsm8k_row),),
        id_fields=("problem", "answer"), description="GSM8K main: train 7,473, test 1,319"),
    DatasetSpec(
        name="countdown", hub_id="Jiayi-Pan/Countdown-Tasks-3to4", task="countdown", default_out="data/countdown",
        outputs=(("train", "train.jsonl"),),
        schemas=(SourceSchema("Jiayi-Pan/Countdown-Tasks-3to4 (target, nums)", ("target", "nums"), _countdown_row),),
        id_fields=("target", "nums"), description="Countdown-Tasks-3to4 (the paper trains on its first 2,000 rows)"),
)}


def get_spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise KeyError(f"unknown dataset {name!r}; mmdps data prepare knows: {', '.join(sorted(SPECS))}")
    return SPECS[name]


# ------------------------------------------------------------------------------------------ reading
#: (source split, output file, its rows, the folder relative image paths resolve against)
SplitSource = tuple[str, str, Iterator[Row], Path | None]


def _local_splits(spec: DatasetSpec, path: Path) -> tuple[list[SplitSource], list[str]]:
    """(split, output file, rows, image folder) for each of the spec's splits a local source has."""
    if path.is_file():
        stem = path.name.split(".")[0].split("-")[0]
        split, out = next(((s, o) for s, o in spec.outputs if s == stem), spec.outputs[0])
        return [(split, out, read_rows(path, keep_bad_rows=True), path.parent)], []
    root = path / spec.hub_config if spec.hub_config and (path / spec.hub_config).is_dir() else path
    saved: list[str] = []
    if (root / "dataset_dict.json").is_file():
        saved = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    found: list[SplitSource] = []
    missing: list[str] = []
    for split, out in spec.outputs:
        if split in saved or split_files(root, split):
            found.append((split, out, read_rows(root, split=split, keep_bad_rows=True), root))
        else:
            missing.append(split)
    return found, missing


def _hub_splits(spec: DatasetSpec, source: str) -> tuple[list[SplitSource], list[str]]:
    hub_id, only = parse_hub_id(source) or (source, None)
    wanted = [(s, o) for s, o in spec.outputs if only is None or s == only] or [(only or "", spec.outputs[0][1])]
    dataset = load_hub_dataset(hub_id, config=spec.hub_config, split=only)
    by_split = {only: dataset} if only else dict(dataset)
    found: list[SplitSource] = []
    missing: list[str] = []
    for split, out in wanted:
        if split not in by_split:
            missing.append(split)
            continue
        rows = (Row(dict(data), i, f"{hub_id} [{split}] row {i}") for i, data in enumerate(by_split[split]))
        found.append((split, out, rows, None))
    return found, missing


def pick_schema(spec: DatasetSpec, columns: list[str], where: str) -> SourceSchema:
    """The first of the spec's layouts whose columns the source has, else :class:`SchemaError`."""
    for schema in spec.schemas:
        if all(column in columns for column in schema.columns):
            return schema
    expected = "; ".join(f"{', '.join(s.columns)} ({s.name})" for s in spec.schemas)
    raise SchemaError(f"{where}: not a {spec.name} source this command knows: expected the columns {expected}; "
                      f"found {', '.join(sorted(columns)) or 'no columns'}")


# ------------------------------------------------------------------------------------------ writing
def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` (.json list, .jsonl, .parquet) through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        fields = [pa.field(ID_COLUMN, pa.int64())]
        for key in rows[0] if rows else ():
            if key != ID_COLUMN:
                fields.append(pa.field(key, pa.list_(image) if key == "images" else pa.string()))
        table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
        pq.write_table(table, temporary)
    elif path.suffix == ".jsonl":
        with open(temporary, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        temporary.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def _reason(error: BaseException, where: str) -> str:
    """A skip reason that groups alike rows: the message without its row, quoted values and numbers."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    text = str(error).removeprefix(f"{where}: ").split(";")[0]
    return re.sub(r"'[^']*'|\d+", "…", text)[:120]


def prepare(name: str, source: str | os.PathLike | None = None, out: str | os.PathLike | None = None, *,
            limit: int | None = None) -> PrepareReport:
    """Write dataset ``name`` from ``source`` (default: its hub id) into ``out`` (default: its ``default_out``).

    ``limit``: at most this many rows per split (e.g. Countdown's first 2,000). Returns what was written.

    Raises:
        KeyError: an unknown dataset name.
        SchemaError: a source whose columns match none of the layouts the spec knows.
        FileNotFoundError: a source that is neither a local path nor a readable hub dataset.
        ValueError: a source that holds none of the spec's splits.
    """
    spec = get_spec(name)
    source_text = os.fspath(source) if source not in (None, "") else spec.hub_id
    out_dir = Path(out if out is not None else spec.default_out)
    splits: list[SplitSource]
    if is_hub_source(source_text):
        try:
            splits, missing = _hub_splits(spec, source_text)
        except HubSourceError as error:
            raise both_readings(source_text, error) from error
    elif Path(source_text).expanduser().exists():
        splits, missing = _local_splits(spec, Path(source_text).expanduser())
    else:  # neither: read_rows names the missing path and why it is not a hub id either
        list(read_rows(source_text))
        splits, missing = [], []
    if not splits:
        raise ValueError(f"{source_text}: holds none of the {spec.name} splits "
                         f"({', '.join(s for s, _ in spec.outputs)})")
    report = PrepareReport(spec.name, source_text, out_dir, missing_splits=missing)
    for split, out_file, rows, image_dir in splits:
        report.splits.append(_prepare_split(spec, split, out_dir / out_file, rows, image_dir, limit))
    return report


def _prepare_split(spec: DatasetSpec, split: str, path: Path, rows: Iterator[Row], image_dir: Path | None,
                   limit: int | None) -> SplitReport:
    written: list[dict[str, Any]] = []
    seen: dict[int, str] = {}
    schema: SourceSchema | None = None
    report = SplitReport(split, path, "?")
    for row in rows:
        if limit is not None and len(written) >= limit:
            break
        if row.error is not None:
            report.skip("not a readable row (bad JSON or not UTF-8)", row.where)
            continue
        if schema is None:  # the first readable row tells the layout
            schema = pick_schema(spec, list(row.data), row.where)
            report.schema = schema.name
        try:
            ours = schema.convert(row.data, row.where)
            image_bytes = [_image_bytes(image, image_dir) for image in ours.get("images", [])]
            for data in image_bytes:
                load_image(data, where=row.where)  # decodable, not a bomb, a shape the model can take
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - a bad row is reported and skipped, whatever it raises
            report.skip(_reason(error, row.where), row.where)
            continue
        item_id = content_id(*(ours[key] for key in spec.id_fields), *image_bytes)
        if item_id in seen:
            report.skip("the same content as an earlier row", f"{row.where}, same as {seen[item_id]}")
            continue
        seen[item_id] = row.where
        if image_bytes:
            ours["images"] = [{"bytes": data, "path": None} for data in image_bytes]
            report.images += len(image_bytes)
        written.append({ID_COLUMN: item_id, **{k: _plain(v) for k, v in ours.items()}})
    if schema is None:
        raise ValueError(f"{spec.name} split {split!r}: the source has no readable rows")
    _write(path, written)
    report.rows = len(written)
    return report


def _plain(value: Any) -> Any:
    """Values as the writers store them (numpy scalars from pandas become Python numbers)."""
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (str, bytes)) else value


__all__ = ["DatasetSpec", "PrepareReport", "SPECS", "SchemaError", "SourceSchema", "SplitReport", "answer_forms",
           "content_id", "get_spec", "last_boxed", "pick_schema", "prepare"]
