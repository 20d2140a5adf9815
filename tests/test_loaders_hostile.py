"""Hostile rows: whatever a row raises (TypeError, AttributeError, OverflowError, RecursionError, ...), the
error names the file and the row, and ``skip_invalid`` skips it; the other rows still load."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest

from benchmark_fixtures import geoqa_rows, mathverse_rows, mathvista_rows, save_png
from mmdps import presets, tasks
from mmdps.data.loaders import SkippedRowsWarning, build_items, read_rows


def load_skipping(loader, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = loader(*args, skip_invalid=True, **kwargs)
    skipped = [w.message for w in caught if isinstance(w.message, SkippedRowsWarning)]
    return items, skipped


@pytest.mark.parametrize("error", [TypeError("bad type"), AttributeError("no attr"), OverflowError("too big"),
                                   RecursionError("deep"), KeyError("k")])
def test_any_exception_of_a_row_is_named_and_skippable(tmp_path, error):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"problem": p, "answer": "1"}) + "\n" for p in "abc"))

    def convert(row):
        if row.index == 1:
            raise error
        return tasks.get("math").make_item(id=row.index, question=row.data["problem"], ground_truth="1")

    with pytest.raises(ValueError, match=rf"d\.jsonl line 2: {type(error).__name__}"):
        build_items(read_rows(path), convert, source=path)
    with pytest.warns(SkippedRowsWarning, match=r"skipped 1 invalid row\(s\); first: .*d\.jsonl line 2"):
        items = build_items(read_rows(path), convert, source=path, skip_invalid=True)
    assert [item.id for item in items] == [0, 2]


def test_a_jsonl_line_nested_100k_deep_is_a_bad_row(tmp_path):
    path = tmp_path / "deep.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    path.write_text(json.dumps({"problem": "a", "answer": "1"}) + "\n" + '{"problem": ' + deep + "}\n"
                    + json.dumps({"problem": "c", "answer": "3"}) + "\n")
    with pytest.raises(ValueError, match=r"deep\.jsonl line 2: JSON nested too deeply"):
        tasks.get("math").load(path)
    items, skipped = load_skipping(tasks.get("math").load, path)
    assert [item.ground_truth for item in items] == ["1", "3"] and skipped[0].count == 1


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_an_integer_over_4300_digits_is_a_bad_row_not_a_crash(tmp_path, suffix):
    rows = [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "HUGE"}, {"problem": "c", "answer": "3"}]
    text = "\n".join(json.dumps(r) for r in rows) + "\n" if suffix == ".jsonl" else json.dumps(rows)
    path = tmp_path / f"big{suffix}"
    path.write_text(text.replace('"HUGE"', "9" * 5000))
    where = "line 2" if suffix == ".jsonl" else "row 1"
    with pytest.raises(ValueError, match=rf"big\{suffix} {where}: an integer of 5000 digits"):
        tasks.get("math").load(path)
    items, _ = load_skipping(tasks.get("math").load, path)
    assert [item.ground_truth for item in items] == ["1", "3"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_utf8_bom_file_is_read(tmp_path, suffix):
    rows = [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}]
    text = "\n".join(json.dumps(r) for r in rows) + "\n" if suffix == ".jsonl" else json.dumps(rows)
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert [item.ground_truth for item in tasks.get("math").load(path)] == ["1", "2"]


def test_a_non_numeric_id_column_is_a_row_error(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"item_id": 7, "problem": "a", "answer": "1"},
                                                            {"item_id": "²", "problem": "b", "answer": "2"}]))
    with pytest.raises(ValueError, match=r"ids\.jsonl line 2: id column 'item_id' holds '²'"):
        tasks.get("math").load(path)
    items, _ = load_skipping(tasks.get("math").load, path)
    assert [item.id for item in items] == [7]


# ------------------------------------------------------------------------------------------ presets
def write_mathvista_json(root, mutate):
    rows = mathvista_rows()
    mutate(rows[1])
    for i, row in enumerate(rows):
        save_png(root / "data" / row["image"], 30 * i)
    published = {str(i): {k: v for k, v in row.items() if k != "query"} for i, row in enumerate(rows)}
    path = root / "data" / "testmini.json"
    path.write_text(json.dumps(published, ensure_ascii=False))
    return path


@pytest.mark.parametrize("field,value,message", [
    ("precision", [2], "'precision' must be a whole number"),
    ("precision", "two", "'precision' must be a whole number"),
    ("precision", float("inf"), "'precision' must be a whole number"),
    ("metadata", "x", "'metadata' must be a dict"),
])
def test_mathvista_hostile_fields_are_row_errors(tmp_path, field, value, message):
    path = write_mathvista_json(tmp_path, lambda row: row.update({field: value}))
    with pytest.raises(ValueError, match=rf"testmini\.json row 1: {message}"):
        presets.get("mathvista").load(path)
    items, skipped = load_skipping(presets.get("mathvista").load, path)
    assert len(items) == 3 and skipped[0].count == 1


def test_mathvista_pid_superscript_two_is_not_an_integer_id(tmp_path):
    path = write_mathvista_json(tmp_path, lambda row: row.update({"pid": "²"}))
    items = presets.get("mathvista").load(path)
    assert [item.id for item in items] == [3, 1, 12, 20]  # the row position stands in for "²"


def test_mathverse_metadata_that_is_not_a_dict_is_a_row_error(tmp_path):
    rows = mathverse_rows()
    rows[0]["metadata"] = "x"
    for row in rows:
        row["image"] = ""
        row["problem_version"] = "Text Only"
    path = tmp_path / "testmini.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"testmini\.json row 0: 'metadata' must be a dict"):
        presets.get("mathverse").load(path)
    items, _ = load_skipping(presets.get("mathverse").load, path)
    assert len(items) == len(rows) - 1


def write_geoqa(tmp_path, mutate):
    samples = []
    for i, row in enumerate(geoqa_rows()):
        samples.append({**row, "image": np.full((24, 32), 40 * i + 20, dtype=np.uint8)})
    mutate(samples)
    path = tmp_path / "test.pk"
    path.write_bytes(pickle.dumps(samples))
    return path


def test_geoqa_id_abc_is_a_row_error(tmp_path):
    path = write_geoqa(tmp_path, lambda samples: samples[1].update({"id": "abc"}))
    with pytest.raises(ValueError, match=r"test\.pk problem 1: 'id' must be a whole number, got 'abc'"):
        presets.get("geoqa").load(path)
    items, _ = load_skipping(presets.get("geoqa").load, path)
    assert [item.id for item in items] == [0, 2]


def test_geoqa_object_dtype_arrays_load_and_bad_ones_are_row_errors(tmp_path):
    def mutate(samples):
        samples[0]["image"] = samples[0]["image"].astype(object)  # numbers boxed as Python ints: still an image
        samples[1]["image"] = np.array([[None, "x"], [1, 2]], dtype=object)

    path = write_geoqa(tmp_path, mutate)
    with pytest.raises(ValueError, match=r"test\.pk problem 1: the diagram array \(object"):
        presets.get("geoqa").load(path)
    items, _ = load_skipping(presets.get("geoqa").load, path)
    assert [item.id for item in items] == [0, 2]
    assert items[0].images[0].getpixel((0, 0)) == (20, 20, 20)


def test_a_fifo_as_a_data_file_is_refused_not_read(tmp_path):
    import os

    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"rows\.jsonl: not a regular file"):
        list(read_rows(fifo))
