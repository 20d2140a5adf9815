"""Tiny copies of the published benchmarks, written in each release's exact schema (field names, types,
nesting, file layout), with images as PNG bytes (parquet) and as relative paths (json releases).

Every writer returns the local copy's path and the rows it wrote, so tests can check what the preset
made of each field.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png_bytes(shade: int = 90, size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (shade, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: Path, shade: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(shade))


# ------------------------------------------------------------------------------------------ MathVista
def mathvista_rows() -> list[dict]:
    """Four testmini rows: a Chinese geometry multiple choice, an integer with a unit, a float with a
    precision, a list. Fields, order and value forms as in the published testmini."""
    def meta(task, context, grade, skills, source, language="english", category="math-targeted-vqa"):
        return {"category": category, "context": context, "grade": grade, "img_height": 60, "img_width": 131,
                "language": language, "skills": skills, "source": source, "split": "testmini", "task": task}

    hint_mc = "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
    chinese = "△ABC的两内角平分线OB、OC相交于点O，若∠A＝110°，则∠BOC＝（）"
    return [
        {"pid": "3", "question": chinese, "image": "images/3.png",
         "choices": ["135°", "140°", "145°", "150°"], "unit": None, "precision": None, "answer": "145°",
         "question_type": "multi_choice", "answer_type": "text",
         "metadata": meta("geometry problem solving", "geometry diagram", "high school",
                          ["geometry reasoning", "algebraic reasoning"], "GeoQA+", language="chinese"),
         "query": f"{hint_mc}\nQuestion: {chinese}\nChoices:\n(A) 135°\n(B) 140°\n(C) 145°\n(D) 150°"},
        {"pid": "7", "question": "How old is the man?", "image": "images/7.png", "choices": None, "unit": "years",
         "precision": None, "answer": "41", "question_type": "free_form", "answer_type": "integer",
         "metadata": meta("visual question answering", "natural image", "not applicable",
                          ["numeric commonsense", "arithmetic reasoning"], "KVQA", category="general-vqa"),
         "query": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., "
                  "1, 2, 3, at the end.\nQuestion: How old is the man? (Unit: years)"},
        {"pid": "12", "question": "What is the slope?", "image": "images/12.png", "choices": None, "unit": None,
         "precision": 2.0, "answer": "0.73", "question_type": "free_form", "answer_type": "float",
         "metadata": meta("figure question answering", "function plot", "college", ["algebraic reasoning"],
                          "FunctionQA"),
         "query": "Hint: Please answer the question requiring a floating-point number with two decimal places and "
                  "provide the final value, e.g., 1.23, 1.34, 1.45, at the end.\nQuestion: What is the slope?"},
        {"pid": "20", "question": "Which years are above 50?", "image": "images/20.png", "choices": None,
         "unit": None, "precision": None, "answer": "[2014, 2016]", "question_type": "free_form",
         "answer_type": "list",
         "metadata": meta("figure question answering", "bar chart", "not applicable", ["statistical reasoning"],
                          "ChartQA", category="general-vqa"),
         "query": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
                  "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\nQuestion: Which years are above 50?"},
    ]


MATHVISTA_SCHEMA = pa.schema([
    ("pid", pa.string()), ("question", pa.string()), ("image", pa.string()),
    ("decoded_image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("choices", pa.list_(pa.string())), ("unit", pa.string()), ("precision", pa.float64()), ("answer", pa.string()),
    ("question_type", pa.string()), ("answer_type", pa.string()),
    ("metadata", pa.struct([("category", pa.string()), ("context", pa.string()), ("grade", pa.string()),
                            ("img_height", pa.int64()), ("img_width", pa.int64()), ("language", pa.string()),
                            ("skills", pa.list_(pa.string())), ("source", pa.string()), ("split", pa.string()),
                            ("task", pa.string())])),
    ("query", pa.string()),
])


def write_mathvista_hub_snapshot(root: Path) -> tuple[Path, list[dict]]:
    """The hub repository's layout: ``data/testmini-00000-of-00001-<hash>.parquet`` (images as bytes)."""
    rows = mathvista_rows()
    table_rows = [{**row, "decoded_image": {"bytes": png_bytes(30 * i), "path": row["image"]}}
                  for i, row in enumerate(rows)]
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(table_rows, schema=MATHVISTA_SCHEMA),
                   root / "data" / "testmini-00000-of-00001-725687bf7a18d64b.parquet")
    (root / "README.md").write_text("---\nlicense: cc-by-sa-4.0\n---\n")
    return root, rows


def write_mathvista_github(root: Path) -> tuple[Path, list[dict]]:
    """The GitHub repository's ``data/testmini.json``: rows keyed by pid, images as paths under data/."""
    rows = mathvista_rows()
    data = root / "data"
    for i, row in enumerate(rows):
        save_png(data / row["image"], 30 * i)
    published = {row["pid"]: {k: v for k, v in row.items() if k != "query"} for row in rows}
    (data / "testmini.json").write_text(json.dumps(published, ensure_ascii=False, indent=4))
    (data / "query.json").write_text(json.dumps({row["pid"]: row["query"] for row in rows}))
    return root, rows


# ------------------------------------------------------------------------------------------ MathVerse
def mathverse_rows() -> list[dict]:
    """One plane-geometry multiple choice problem in its five versions, and one free-form solid
    geometry problem; answers as published (letters, values with units)."""
    choices = "Choices:\nA:40°\nB:60°\nC:120°\nD:140°"
    base = "As shown in the figure, DE parallel BC, angle A = 80.0, angle B = 60.0, then angle CED is ()"
    texts = {"Text Dominant": base, "Text Lite": "DE parallel BC, angle A = 80.0, then angle CED is ()",
             "Vision Intensive": "then angle CED is ()", "Vision Dominant": "angle CED is ()", "Vision Only": ""}
    rows = []
    for i, (version, text) in enumerate(texts.items()):
        question = f"{text}\n{choices}" if version != "Vision Only" else ""
        rows.append({
            "sample_index": str(i + 1), "problem_index": "1", "problem_version": version, "question": question,
            "image": f"images_version_1-4/image_{i + 1}.png", "answer": "D", "question_type": "multi-choice",
            "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
            "query_wo": "Please directly answer the question and provide the correct option letter, e.g., A, B, C, "
                        f"D.\nQuestion: {question}",
            "query_cot": "Please first conduct reasoning, and then answer the question and provide the correct option "
                         f"letter, e.g., A, B, C, D, at the end.\nQuestion: {question}",
            "question_for_eval": question,
        })
    question = "A soft drink can has a height of 13 cm and a radius of 3 cm. Find L, rounded down to the nearest cm."
    rows.append({
        "sample_index": "3421", "problem_index": "685", "problem_version": "Text Dominant", "question": question,
        "image": "images_version_1-4/image_685.png", "answer": "14 cm", "question_type": "free-form",
        "metadata": {"split": "testmini", "source": "Geo3D_collected", "subject": "Solid Geometry",
                     "subfield": "Length"},
        "query_wo": f"Please directly answer the question and provide the final value, e.g., 1, 2.5, 300.\n"
                    f"Question: {question}",
        "query_cot": "Please first conduct reasoning, and then answer the question and provide the final value, "
                     f"e.g., 1, 2.5, 300, at the end.\nQuestion: {question}",
        "question_for_eval": question,
    })
    return rows


def write_mathverse_hub_snapshot(root: Path) -> tuple[Path, list[dict]]:
    """The hub repository's ``testmini.parquet`` (images as bytes), beside ``testmini_text_only.parquet``."""
    rows = mathverse_rows()
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("sample_index", pa.string()), ("problem_index", pa.string()),
                        ("problem_version", pa.string()), ("question", pa.string()), ("image", image),
                        ("answer", pa.string()), ("question_type", pa.string()),
                        ("metadata", pa.struct([("split", pa.string()), ("source", pa.string()),
                                                ("subject", pa.string()), ("subfield", pa.string())])),
                        ("query_wo", pa.string()), ("query_cot", pa.string()), ("question_for_eval", pa.string())])
    root.mkdir(parents=True, exist_ok=True)
    table = [{**row, "image": {"bytes": png_bytes(40 * (i % 5)), "path": row["image"]}} for i, row in enumerate(rows)]
    pq.write_table(pa.Table.from_pylist(table, schema=schema), root / "testmini.parquet")
    text_only = [{**rows[0], "problem_version": "Text Only", "image": {"bytes": None, "path": None}}]
    pq.write_table(pa.Table.from_pylist(text_only, schema=schema), root / "testmini_text_only.parquet")
    return root, rows


def write_mathverse_json(root: Path) -> tuple[Path, list[dict]]:
    """The GitHub / hub ``testmini.json``: a list of rows, images as paths under the unzipped folders."""
    rows = mathverse_rows()
    for i, row in enumerate(rows):
        save_png(root / row["image"], 40 * i)
    (root / "testmini.json").write_text(json.dumps(rows, ensure_ascii=False, indent=4))
    return root, rows


# ------------------------------------------------------------------------------------------ GeoQA / GeoQA+
def geoqa_rows() -> list[dict]:
    """Three problems as the release's json / pickle samples hold them (problem text in ``subject``)."""
    return [
        {"id": 0, "subject": "如图,AB∥CD,直线EF交AB于点E,交CD于点F,EG平分∠BEF,交CD于点G,∠EFG=50°,则∠EGF等于()",
         "choices": ["50°", "60°", "65°", "90°"], "label": 2, "formal_point": ["平行线", "角平分线"],
         "answer": "65°", "comment": "解:∵AB∥CD..."},
        {"id": 1, "subject": "如图,在△ABC中,∠C=90°,AB=10,BC=6,则AC的长为()",
         "choices": ["6", "8", "10", "12"], "label": 1, "formal_point": ["勾股定理"], "answer": "8",
         "comment": "解:AC=√(10²-6²)=8"},
        {"id": 2, "subject": "如图,⊙O的半径为2,则阴影部分的面积为()",
         "choices": ["π", "2π", "3π", "4π"], "label": 0, "formal_point": ["扇形面积"], "answer": "π",
         "comment": "..."},
    ]


GEOQA_TYPES = {0: "angle", 1: "length", 2: "area"}


def write_geoqa_release(root: Path) -> tuple[Path, list[dict]]:
    """The release's ``data/GeoQA3/test.pk`` (a list of dicts, diagrams as grey-scale arrays, program
    annotations) and ``data/sub_dataset_dict.pk`` (id -> type). Returns the test.pk path."""
    rows = geoqa_rows()
    samples = []
    for i, row in enumerate(rows):
        diagram = np.full((24, 32), 40 * i + 20, dtype=np.uint8)
        samples.append({**row, "image": diagram, "token_list": list(row["subject"][:6]),
                        "manual_program": ["g_minus", "C_3", "N_0"], "numbers": [50.0],
                        "choice_nums": [float(i) for i in range(4)]})
    folder = root / "data" / "GeoQA3"
    folder.mkdir(parents=True)
    with open(folder / "test.pk", "wb") as handle:
        pickle.dump(samples, handle)
    with open(root / "data" / "sub_dataset_dict.pk", "wb") as handle:
        pickle.dump(GEOQA_TYPES, handle)
    return folder / "test.pk", rows


def write_geoqa_json_folder(root: Path) -> tuple[Path, list[dict]]:
    """``GeoQA3/json/<id>.json`` with ``GeoQA3/image/<id>.png`` (as the zip unpacks)."""
    rows = geoqa_rows()
    folder = root / "GeoQA3"
    for row in rows:
        (folder / "json").mkdir(parents=True, exist_ok=True)
        (folder / "json" / f"{row['id']}.json").write_text(json.dumps(row, ensure_ascii=False))
        save_png(folder / "image" / f"{row['id']}.png", 50 * row["id"])
    return folder, rows
