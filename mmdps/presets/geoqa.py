"""GeoQA (Chen et al., 2021, "GeoQA: A Geometric Question Answering Benchmark Towards Multimodal
Numerical Reasoning") and GeoQA+ (Cao and Xiao, 2022, "An Augmented Benchmark Dataset for Geometric
Question Answering through Dual Parallel Text Encoding"), in the layouts their releases use.

* **Split pickles** (the official evaluation's input: GeoQA's ``data/GeoQA3/test.pk``, GeoQA+'s
  ``data/GeoQA2.2/test.pk``): a list of dicts with ``id``, ``subject`` (the problem text, Chinese),
  ``choices``, ``label`` (index of the correct choice), ``image`` (the diagram as a grey-scale array) and
  the program annotations (``manual_program``, ``numbers``, ``choice_nums``, ``formal_point``, ...).
  Problem types come from ``sub_dataset_dict.pk`` (id -> angle / length / area / other), which the
  releases keep in ``data/``: it is looked for beside the pickle, one and two folders up, and in the
  ``data/`` folder of a release folder passed as the source.
* **json + image folders** (``GeoQA3/json/<id>.json`` with ``GeoQA3/image/<id>.png``; GeoQA+'s
  ``json-image_files``): the same fields, one problem per file, all splits together.
* **Row files** with the same columns (``subject, choices, label, image``, optionally ``type``, and
  ``original_split``, which picks the split's rows), e.g. a community port's parquet passed as the file.

Pickles are read with an allow-list (plain containers and numpy arrays only), never ``pickle.load``.
The official breakdown (``NGS_Aux_test.py``) is by ``type``: angle, length and other (area counts as
other there).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmdps.data.images import ImageError, load_image
from mmdps.data.item import Item
from mmdps.data.layouts import require, whole_number
from mmdps.data.readers import Row
from mmdps.presets import register
from mmdps.presets.base import BenchmarkPreset, text_list
from mmdps.tasks.geometry import with_choices
from mmdps.verifiers.geometry import LETTERS

TYPES_FILE = "sub_dataset_dict.pk"
OFFICIAL_TYPES = ("angle", "length")  # every other type is reported as "other"
# what a release pickle may contain: numpy arrays and their dtypes; anything else is refused
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data and numpy arrays are read "
                                     "from benchmark pickles")


def read_pickle(path: Path) -> Any:
    """A release pickle's content, through the allow-list above (ValueError naming the file otherwise)."""
    try:
        with open(path, "rb") as handle:
            return _DataUnpickler(io.BufferedReader(handle)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise ValueError(f"{path}: not a GeoQA data pickle ({error})") from error


def official_type(value: Any) -> str | None:
    """The official script's group of a problem type: angle, length, or other."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    return text if text in OFFICIAL_TYPES else "other"


def read_types(path: Path) -> dict[int, str]:
    """A ``sub_dataset_dict.pk``: problem id -> type."""
    types = read_pickle(path)
    if not isinstance(types, dict):
        raise ValueError(f"{path}: expected a dict of problem id -> type, got {type(types).__name__}")
    return {int(k): str(v) for k, v in types.items()}


def _find_types(start: Path) -> dict[int, str]:
    for folder in (start, start / "data", start.parent, start.parent.parent):
        if (folder / TYPES_FILE).is_file():
            return read_types(folder / TYPES_FILE)
    return {}


@register
class GeoQA(BenchmarkPreset):
    """GeoQA test, multiple choice, graded by ``geometry`` against the gold letter.

    ``load`` options: ``show_choices`` (list the lettered choices in the prompt; default True: the
    problems are only answerable up to their choices), ``types`` (path of a ``sub_dataset_dict.pk``
    when it is not beside the data).
    """

    name = "geoqa"
    title = "GeoQA"
    verifier = "geometry"
    description = "GeoQA test: the release's split pickles, json + image folders, or row files"
    hub_id = ""  # no official hub release: pass the local release (or a port's hub id with a test split)
    default_split = "test"
    breakdowns = ("type",)
    local_files = ("{split}.pk", "*/{split}.pk", "data/*/{split}.pk", "{split}.parquet", "data/{split}-*.parquet",
                   "{split}.jsonl")

    def __init__(self, template: str | None = None, system_prompt: str | None = None, protocol: str = "official"):
        super().__init__(template, system_prompt, protocol)
        self._types: dict[int, str] = {}  # problem id -> type, read by load

    def load(self, source=None, *, split=None, limit=None, skip_invalid=False, seed=0, **options) -> list[Item]:
        if source in (None, ""):
            raise FileNotFoundError(f"{self.title} has no official hub release: pass --data with the release's "
                                    f"{'test.pk' if self.name == 'geoqa' else 'GeoQA2.2/test.pk'} (or its folder)")
        types = options.pop("types", None)
        path = Path(str(source))
        self._types = read_types(Path(types)) if types else _find_types(path if path.is_dir() else path.parent)
        return super().load(source, split=split, limit=limit, skip_invalid=skip_invalid, seed=seed, **options)

    def rows(self, source: str, split: str):
        path = Path(source)
        json_dir = next((d for d in (path / "json", path) if d.is_dir() and any(d.glob("*.json"))), None)
        if path.is_dir() and not self.split_files(path, split) and json_dir is not None:
            return self._json_rows(json_dir), json_dir.parent / "image"
        rows, image_dir = super().rows(source, split)
        return (row for row in rows if row.data.get("original_split") in (None, split)), image_dir

    def read_file(self, path: Path, split: str) -> Iterator[Row]:
        if path.suffix != ".pk":
            return super().read_file(path, split)
        content = read_pickle(path)
        if not isinstance(content, list):
            raise ValueError(f"{path}: expected a list of problems, got {type(content).__name__}")
        return (Row(sample if isinstance(sample, dict) else {"value": sample}, i, f"{path} problem {i}")
                for i, sample in enumerate(content))

    @staticmethod
    def _json_rows(folder: Path) -> Iterator[Row]:
        files = sorted(folder.glob("*.json"), key=lambda p: (0, int(p.stem)) if p.stem.isdigit() else (1, p.stem))
        for index, file in enumerate(files):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"{file}: cannot read ({error}); fix the file or pass skip_invalid=True") from error
            data.setdefault("image", f"{file.stem}.png")
            yield Row(data, index, str(file))

    def convert(self, row: Row, *, image_dir: Path | None, show_choices: bool = True) -> Item:
        data = row.data
        raw_id = require(data, "id", row.where)
        problem_id = whole_number(raw_id)
        if problem_id is None:
            raise ValueError(f"{row.where}: 'id' must be a whole number, got {raw_id!r}; fix the row or pass "
                             "skip_invalid=True")
        question = str(require(data, "subject", row.where, hint="GeoQA keeps the problem text in 'subject'")).strip()
        choices = (text_list(data.get("choices"), row.where, "choices")
                   or [str(c) for c in data.get("choice_nums") or []])
        label = require(data, "label", row.where)
        if not choices or not isinstance(label, int) or not 0 <= label < min(len(choices), len(LETTERS)):
            raise ValueError(f"{row.where}: 'label' must index one of the {len(choices)} choices, got {label!r}; "
                             "fix the row or pass skip_invalid=True")
        image = require(data, "image", row.where)
        if hasattr(image, "shape"):  # the pickles' diagram arrays
            image = _array_image(image, row.where)
        problem_type = data.get("type") or self._types.get(problem_id)
        metadata = {"problem_id": problem_id, "choices": choices, "answer_letter": LETTERS[label],
                    "problem_type": str(problem_type) if problem_type else None}
        text = with_choices(question, choices) if show_choices else question
        return self.benchmark_item(row, id=problem_id, question=text, ground_truth=LETTERS[label],
                                   images=[load_image(image, base_dir=image_dir, where=row.where)],
                                   metadata={k: v for k, v in metadata.items() if v is not None},
                                   breakdowns={"type": official_type(problem_type)})


def _array_image(array: Any, where: str) -> Any:
    """A diagram array as a PIL image; an object-dtype array (numbers boxed as Python objects) is
    converted to 8-bit first, and anything PIL cannot take is a row error."""
    import numpy as np
    from PIL import Image

    try:
        values = np.asarray(array)
        if values.dtype == object:
            numbers = values.astype(np.float64)
            if not np.all(np.isfinite(numbers)) or numbers.min(initial=0) < 0 or numbers.max(initial=0) > 255:
                raise ValueError("values outside 0-255")
            values = numbers.astype(np.uint8)
        return Image.fromarray(values)
    except Exception as error:  # noqa: BLE001 - PIL and numpy raise TypeError, ValueError, KeyError, ...
        raise ImageError(f"{where}: the diagram array ({getattr(array, 'dtype', '?')}, shape "
                         f"{getattr(array, 'shape', '?')}) is not an image ({type(error).__name__}: {error}); fix "
                         "the row or pass skip_invalid=True") from error


@register
class GeoQAPlus(GeoQA):
    """GeoQA+ test (Cao and Xiao, 2022), the same layouts as GeoQA (``GeoQA2.2/test.pk``; the release's
    ``new-test.pk``, the newly annotated problems only, loads when passed as the file)."""

    name = "geoqa_plus"
    title = "GeoQA+"
    description = "GeoQA+ test: the release's split pickles, json + image folders, or row files"


__all__ = ["GeoQA", "GeoQAPlus", "official_type", "read_pickle"]
