"""The visual geometry pack: Geometry3K (two layouts), generic image-question-answer files, and the
procedural diagram generator, verified by ``geometry``.

    pack = mmdps.tasks.get("geometry")                            # template "think_boxed"
    items = pack.load("geometry3k/")                              # original layout: <id>/data.json + img_diagram.png
    items = pack.load("hiyouga_geometry3k/", split="test")        # EasyR1 / hiyouga rows (problem, answer, images)
    items = pack.load("mathvista.jsonl", columns={"question": "query", "images": "image"})
    items = pack.load(None, split="train", num=200, levels=[0, 1])  # procedural diagrams, fully offline

The ground truth is the answer value (for Geometry3K's original layout, the text of the gold choice);
``metadata["choices"]`` lets the verifier accept a choice letter too, and ``metadata["problem_type"]``
(Geometry3K's goal type: Angle, Length, Area, Ratio; or the generator's type) drives per-type accuracy.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmdps.data.images import load_image
from mmdps.data.item import Item
from mmdps.data.layouts import is_missing
from mmdps.data.loaders import (
    Row,
    build_items,
    default_image_dir,
    normalize_row,
    read_rows,
    record_to_item,
    require,
    source_name,
)
from mmdps.tasks import register
from mmdps.tasks.base import TaskPack

LETTERS = "ABCDEFGH"
DIAGRAM_FILE = "img_diagram.png"
CHOICE_INSTRUCTION = "Answer with the letter of the correct choice or with its value."


def with_choices(question: str, choices: Sequence[str]) -> str:
    """The question followed by its lettered choices and an instruction to answer with a letter or value."""
    listed = " ".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))
    return f"{question}\nChoices: {listed}\n{CHOICE_INSTRUCTION}"


def _answer_text(value: Any, where: str) -> str:
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or is_missing(value):  # None, or NaN from a numeric parquet column
        raise ValueError(f"{where}: the row has no answer; fix the row or pass skip_invalid=True")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise ValueError(f"{where}: the answer is empty; fix the row or pass skip_invalid=True")
    return text


def _choices(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: 'choices' must be a non-empty list, got {value!r}")
    if len(value) > len(LETTERS):
        raise ValueError(f"{where}: at most {len(LETTERS)} choices are supported, got {len(value)}")
    return [str(choice).strip() for choice in value]


def _letter_of(answer: str, choices: list[str] | None) -> str | None:
    if not choices:
        return None
    if answer in choices:
        return LETTERS[choices.index(answer)]
    if len(answer) == 1 and answer.upper() in LETTERS[: len(choices)]:
        return answer.upper()
    return None


def find_geometry3k_dir(path: Path, split: str) -> Path | None:
    """The folder of numbered problem folders (``<id>/data.json``) for ``split``, or ``None``.

    Accepts the problem folder itself or the release root with ``train/ val/ test/`` inside. Problem
    folders without a ``data.json`` are rows too: they fail (or are skipped and counted), never vanish.
    """
    for candidate in (path / split, path / {"validation": "val"}.get(split, split), path):
        if candidate.is_dir() and any((child / "data.json").is_file() for child in candidate.iterdir()):
            return candidate
    return None


def _problem_dirs(root: Path) -> list[Path]:
    dirs = [child for child in root.iterdir() if child.is_dir() and not child.name.startswith((".", "_"))]
    return sorted(dirs, key=lambda d: (0, int(d.name)) if d.name.isdigit() else (1, d.name))


@register
class GeometryPack(TaskPack):
    """Visual geometry problems with diagrams, verified by ``geometry`` (boxed value or choice letter).

    ``load`` options: ``show_choices`` (list the choices in the prompt and ask for a letter or value;
    default False, as in the paper's Geometry3K runs), ``columns`` / ``layout`` (row files; e.g.
    ``columns={"question": "query", "images": "image", "choices": "options"}``), ``raw_prompt`` (use a
    verl / conversational row's prompt as it is), ``image_dir`` (where relative image paths resolve;
    default the file's folder). Generator (``source=None``, see ``geometry_procedural``): ``num``
    (default 500), ``levels``, ``kinds``, ``image_size`` (an int or ``(width, height)``).
    """

    name = "geometry"
    verifier = "geometry"
    description = "Geometry3K (original and hiyouga/EasyR1 layouts), image-question-answer files, procedural diagrams"
    templates = {
        "think_boxed": ("{question}\n\nFirst reason about the problem as an internal monologue inside <think> "
                        "</think> tags, then give the final answer within \\boxed{}."),
        "boxed": "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
        "plain": "{question}",
    }
    default_template = "think_boxed"

    def load(self, source: str | os.PathLike | None = None, *, split: str = "train", limit: int | None = None,
             skip_invalid: bool = False, seed: int | str = 0, **options: Any) -> list[Item]:
        if source is None:
            return self.call_loader(self._generate, options, mode="generator, source=None", split=split,
                                    limit=limit, seed=seed)
        path = Path(source)
        original = find_geometry3k_dir(path, split) if path.is_dir() else None
        if original is not None:
            return self.call_loader(self._load_geometry3k, options, mode=f"Geometry3K folder {original}",
                                    root=original, limit=limit, skip_invalid=skip_invalid)
        return self.call_loader(self._load_rows, options, mode="row files", source=path, split=split, limit=limit,
                                skip_invalid=skip_invalid)

    # ------------------------------------------------------------------ procedural
    def _generate(self, *, split: str, limit: int | None, seed: int | str, num: int = 500, levels: Any = None,
                  image_size: Any = None, kinds: Any = None, show_choices: bool = False) -> list[Item]:
        try:
            from mmdps.tasks import geometry_procedural
        except ImportError as exc:  # pragma: no cover - the module ships with mmdps
            raise ImportError(f"the procedural geometry generator is unavailable ({exc})") from exc
        count = num if limit is None else min(num, limit)
        # The split is part of the seed so that "train" and "test" with the same seed differ.
        stream_seed = zlib.crc32(f"geometry:{split}:{seed}".encode())
        kwargs: dict[str, Any] = {"seed": stream_seed, "levels": levels}
        if image_size is not None:  # an int (square) or (width, height); JSON from the CLI gives a list
            kwargs["image_size"] = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if kinds is not None:
            kwargs["kinds"] = [kinds] if isinstance(kinds, str) else list(kinds)
        problems = geometry_procedural.generate_problems(count, **kwargs)
        items = []
        for index, problem in enumerate(problems):
            choices = [str(c) for c in problem.get("choices") or []] or None
            question = problem["question"]
            if show_choices and choices:
                question = with_choices(question, choices)
            metadata = {"row": index, "source": f"generated/{split}", "choices": choices,
                        "answer_letter": problem.get("answer_letter"), "problem_type": problem.get("problem_type"),
                        "difficulty": problem.get("difficulty")}
            items.append(self.make_item(id=index, question=question, ground_truth=str(problem["answer"]),
                                        images=[problem["image"]],
                                        metadata={k: v for k, v in metadata.items() if v is not None}))
        return items

    # ------------------------------------------------------------------ Geometry3K, original layout
    def _load_geometry3k(self, root: Path, *, limit: int | None, skip_invalid: bool,
                         show_choices: bool = False) -> list[Item]:
        def convert(row: Row) -> Item:
            folder = Path(row.data["folder"])
            data_file = folder / "data.json"
            if not data_file.is_file():
                raise ValueError(f"{folder}: problem folder without data.json; restore the file, remove the folder, "
                                 "or pass skip_invalid=True")
            try:
                data = json.loads(data_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{row.where}: cannot read {data_file} ({exc}); fix the file or pass "
                                 "skip_invalid=True") from exc
            question = str(require(data, "problem_text", row.where)).strip()
            choices = _choices(require(data, "choices", row.where), row.where)
            letter = str(require(data, "answer", row.where)).strip().upper()
            if choices is None or len(letter) != 1 or LETTERS.find(letter) not in range(len(choices)):
                raise ValueError(f"{row.where}: answer {letter!r} is not the letter of one of the "
                                 f"{len(choices or [])} choices; fix the row or pass skip_invalid=True")
            image = load_image(folder / DIAGRAM_FILE, where=row.where)
            goals = [str(t) for t in data.get("problem_type_goal") or []]
            graphs = [str(t) for t in data.get("problem_type_graph") or []]
            metadata = {"row": row.index, "source": "geometry3k", "choices": choices, "answer_letter": letter,
                        "problem_type": goals[0] if goals else (graphs[0] if graphs else "unknown"),
                        "problem_type_goal": goals, "problem_type_graph": graphs}
            text = with_choices(question, choices) if show_choices else question
            item_id = int(folder.name) if folder.name.isdigit() else row.index
            return self.make_item(id=item_id, question=text, ground_truth=choices[LETTERS.index(letter)],
                                  images=[image], metadata=metadata)

        rows = (Row({"folder": str(folder)}, index, f"{folder / 'data.json'}")
                for index, folder in enumerate(_problem_dirs(root)))
        return build_items(rows, convert, source=root, limit=limit, skip_invalid=skip_invalid)

    # ------------------------------------------------------------------ rows (EasyR1, verl, TRL, generic)
    def _load_rows(self, source: Path, *, split: str, limit: int | None, skip_invalid: bool,
                   show_choices: bool = False, columns: dict[str, str] | None = None, layout: str = "auto",
                   raw_prompt: bool | None = None, image_dir: str | os.PathLike | None = None) -> list[Item]:
        rows = read_rows(source, split=split, keep_bad_rows=True)  # skip_invalid skips unparsable lines too
        return self.row_items(rows, source=source, limit=limit, skip_invalid=skip_invalid, show_choices=show_choices,
                              columns=columns, layout=layout, raw_prompt=raw_prompt,
                              image_dir=default_image_dir(source) if image_dir is None else image_dir)

    def row_items(self, rows: Iterable[Row], *, source: Any, limit: int | None = None, skip_invalid: bool = False,
                  show_choices: bool = False, columns: dict[str, str] | None = None, layout: str = "auto",
                  raw_prompt: bool | None = None, image_dir: str | os.PathLike | None = None) -> list[Item]:
        """Items from rows already read (a file's, or a hub dataset's); the options are ``load``'s."""
        name = source_name(source)
        choices_key = (columns or {}).get("choices")
        type_key = (columns or {}).get("problem_type")

        def convert(row: Row) -> Item:
            record = normalize_row(row, columns=columns, layout=layout)
            if not record.images:
                raise ValueError(f"{row.where}: the row has no image (looked for "
                                 f"{(columns or {}).get('images') or 'images / image / decoded_image / image_path'}); "
                                 "name the image column with columns={'images': ...} or pass skip_invalid=True")
            answer = _answer_text(record.answer, row.where)
            data = record.data
            choices = _choices(data.get(choices_key) if choices_key else data.get("choices", data.get("options")),
                               row.where)
            question = with_choices(record.question, choices) if show_choices and choices else record.question
            metadata: dict[str, Any] = {"row": record.index, "source": data.get("data_source") or name}
            if choices:
                metadata["choices"] = choices
                letter = _letter_of(answer, choices)
                if letter:
                    metadata["answer_letter"] = letter
            problem_type = data.get(type_key) if type_key else (data.get("problem_type") or data.get("question_type"))
            if problem_type:
                metadata["problem_type"] = str(problem_type)
            return record_to_item(record, self, ground_truth=answer, metadata=metadata, question=question,
                                  raw_prompt=raw_prompt, image_dir=image_dir)

        return build_items(rows, convert, source=source, limit=limit, skip_invalid=skip_invalid)


__all__ = ["GeometryPack", "with_choices", "find_geometry3k_dir", "CHOICE_INSTRUCTION"]
