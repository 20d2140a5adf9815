"""Row readers and layout normalisation of mmdps.data.loaders, on small files in every layout."""

import io
import json
import warnings

import pytest
from PIL import Image

from mmdps.data.images import ImageError
from mmdps.data.item import Item
from mmdps.data.loaders import (
    Row,
    build_items,
    detect_layout,
    load_record_images,
    normalize_row,
    read_rows,
    source_name,
)


def png_bytes(color=(255, 0, 0), size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------ reading
def test_jsonl_rows_carry_one_based_line_numbers_and_skip_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    rows = list(read_rows(path))
    assert [r.data["a"] for r in rows] == [1, 2]
    assert [r.index for r in rows] == [0, 1]
    assert rows[1].where == f"{path} line 3"


def test_broken_jsonl_line_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"d\.jsonl line 2: not valid JSON"):
        list(read_rows(path))


def test_json_list_wrapped_list_and_json_lines_in_a_json_file(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"q": "a"}, {"q": "b"}]))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": [{"q": "a"}]}))
    (tmp_path / "lines.json").write_text('{"q": "a"}\n{"q": "b"}\n')
    (tmp_path / "columns.json").write_text(json.dumps({"q": ["a", "b"], "x": [1, 2]}))
    assert [r.data["q"] for r in read_rows(tmp_path / "list.json")] == ["a", "b"]
    assert [r.where.endswith("row 1") for r in read_rows(tmp_path / "list.json")] == [False, True]
    assert [r.data for r in read_rows(tmp_path / "wrapped.json")] == [{"q": "a"}]
    assert len(list(read_rows(tmp_path / "lines.json"))) == 2
    assert [r.data for r in read_rows(tmp_path / "columns.json")] == [{"q": "a", "x": 1}, {"q": "b", "x": 2}]


def test_non_object_rows_and_unknown_files_are_rejected(tmp_path):
    (tmp_path / "ints.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="row 0: expected a JSON object"):
        list(read_rows(tmp_path / "ints.json"))
    (tmp_path / "x.xyz").write_text("")
    with pytest.raises(ValueError, match="unknown data file type"):
        list(read_rows(tmp_path / "x.xyz"))
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl does not exist, and .* is not a hub dataset id"):
        list(read_rows(tmp_path / "missing.jsonl"))


def test_parquet_csv_and_split_folders(tmp_path):
    pd = pytest.importorskip("pandas")
    pd.DataFrame({"problem": ["p0", "p1"], "answer": ["1", "2"]}).to_parquet(tmp_path / "t.parquet")
    rows = list(read_rows(tmp_path / "t.parquet"))
    assert [r.data["problem"] for r in rows] == ["p0", "p1"] and rows[1].where.endswith("t.parquet row 1")
    (tmp_path / "t.csv").write_text("problem,answer\np0,1\n")
    assert list(read_rows(tmp_path / "t.csv"))[0].data == {"problem": "p0", "answer": 1}
    folder = tmp_path / "hub_snapshot" / "data"
    folder.mkdir(parents=True)
    pd.DataFrame({"problem": ["train"]}).to_parquet(folder / "train-00000-of-00001.parquet")
    pd.DataFrame({"problem": ["test"]}).to_parquet(folder / "test-00000-of-00001.parquet")
    assert [r.data["problem"] for r in read_rows(tmp_path / "hub_snapshot", split="test")] == ["test"]
    with pytest.raises(ValueError, match="no data for split 'validation'"):
        list(read_rows(tmp_path / "hub_snapshot", split="validation"))


def test_datasets_save_to_disk_folder_with_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"problem": ["a", "b"], "answer": ["1", "2"]}),
                               "test": datasets.Dataset.from_dict({"problem": ["c"], "answer": ["3"]})})
    dd.save_to_disk(str(tmp_path / "saved"))
    assert [r.data["problem"] for r in read_rows(tmp_path / "saved", split="test")] == ["c"]
    with pytest.raises(ValueError, match=r"no split 'dev'.*\['test', 'train'\]"):
        list(read_rows(tmp_path / "saved", split="dev"))


def test_source_name():
    assert source_name("/x/math/test/math500.json") == "math500"
    assert source_name("/x/gsm8k/test.jsonl") == "gsm8k/test"


# ------------------------------------------------------------------------------------------ layouts
def test_verl_row_placeholders_become_image_parts_in_order():
    red, blue = png_bytes((255, 0, 0)), png_bytes((0, 0, 255))
    data = {"data_source": "hiyouga/geometry3k",
            "prompt": [{"role": "user", "content": "<image>Compare <image> with the first. Think."}],
            "images": [{"bytes": red, "path": None}, {"bytes": blue}],
            "reward_model": {"style": "rule", "ground_truth": "3"},
            "extra_info": {"index": 17, "question": "<image>Compare <image> with the first."}}
    assert detect_layout(data) == "verl"
    record = normalize_row(Row(data, 0, "f row 0"))
    assert (record.answer, record.id, record.question) == ("3", 17, "Compare  with the first.")
    parts = record.messages[0]["content"]
    assert [p["type"] for p in parts] == ["image", "text", "image", "text"]
    images, messages = load_record_images(record)
    assert [im.getpixel((0, 0)) for im in images] == [(255, 0, 0), (0, 0, 255)]
    assert messages[0]["content"][2]["image"] is images[1]


def test_placeholder_count_mismatch_names_the_row():
    data = {"prompt": [{"role": "user", "content": "<image><image>Q"}], "images": [png_bytes()],
            "reward_model": {"ground_truth": "1"}}
    with pytest.raises(ValueError, match=r"f\.parquet row 4: .*2 image placeholder\(s\) but the row has 1"):
        normalize_row(Row(data, 4, "f.parquet row 4"))
    flat = {"problem": "<image>Find x.", "answer": "2", "images": []}
    with pytest.raises(ValueError, match=r"row 1: .*1 <image> placeholder\(s\) but the row has 0 image"):
        normalize_row(Row(flat, 1, "g.jsonl row 1"))


def test_trl_conversational_rows_string_and_block_contents():
    image = Image.new("RGB", (4, 4), "green")
    data = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Find x."}],
            "image": image, "solution": "42"}
    assert detect_layout(data) == "conversational"
    record = normalize_row(Row(data, 0, "r"))
    assert record.answer == "42" and record.question == "Find x." and record.id is None
    assert record.messages[0] == {"role": "system", "content": "Be brief."}
    assert [p["type"] for p in record.messages[1]["content"]] == ["image", "text"]  # images go first
    openrlhf = {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find y."}]}],
                "images": ["a.png"], "label": "3"}
    record = normalize_row(Row(openrlhf, 0, "r"))
    assert record.messages[0]["content"][0] == {"type": "image", "image": "a.png"} and record.answer == "3"


def test_flat_rows_default_and_mapped_columns():
    easyr1 = {"problem": "<image>Find x.", "answer": "5", "images": ["d.png"], "id": "x"}
    record = normalize_row(Row(easyr1, 3, "r"))
    assert (record.layout, record.question, record.answer, record.images, record.id) == \
        ("flat", "Find x.", "5", ["d.png"], None)
    mathvista = {"pid": "7", "query": "How many?", "gt": 4, "img": "i.png", "question": "unused"}
    record = normalize_row(Row(mathvista, 0, "r"),
                           columns={"question": "query", "answer": "gt", "images": "img", "id": "pid"})
    assert (record.question, record.answer, record.images, record.id) == ("How many?", 4, ["i.png"], 7)
    with pytest.raises(ValueError, match=r"r: no question column .*columns=\{'question'"):
        normalize_row(Row({"text": "x"}, 0, "r"))
    with pytest.raises(ValueError, match="r: the problem text is empty"):
        normalize_row(Row({"problem": "  <image> ", "images": ["a.png"]}, 0, "r"))


def test_relative_image_paths_resolve_against_image_dir_and_missing_images_name_the_row(tmp_path):
    Image.new("RGB", (5, 5), "white").save(tmp_path / "d.png")
    record = normalize_row(Row({"problem": "<image>Q", "answer": "1", "images": ["d.png"]}, 0, "f.jsonl line 1"))
    images, _ = load_record_images(record, tmp_path)
    assert images[0].size == (5, 5)
    record = normalize_row(Row({"problem": "Q", "answer": "1", "images": ["gone.png"]}, 0, "f.jsonl line 9"))
    with pytest.raises(ImageError, match=r"f\.jsonl line 9: image file not found"):
        load_record_images(record, tmp_path)


# ------------------------------------------------------------------------------------------ items
def _convert(row: Row) -> Item:
    if "bad" in row.data:
        raise ValueError(f"{row.where}: bad row")
    return Item(id=row.data.get("id", row.index), messages=[], ground_truth=None, verifier="math")


def test_build_items_skip_invalid_counts_in_one_warning_and_limit_counts_good_items():
    rows = [Row({"bad": 1} if i % 2 else {}, i, f"f line {i + 1}") for i in range(6)]
    with pytest.raises(ValueError, match="f line 2: bad row"):
        build_items(rows, _convert, source="f")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = build_items(rows, _convert, source="f", skip_invalid=True)
    assert [i.id for i in items] == [0, 2, 4]
    assert len(caught) == 1 and "skipped 3 invalid row(s)" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [i.id for i in build_items(rows, _convert, source="f", skip_invalid=True, limit=2)] == [0, 2]


def test_duplicate_ids_are_an_error():
    rows = [Row({"id": 1}, 0, "f line 1"), Row({"id": 1}, 1, "f line 2")]
    with pytest.raises(ValueError, match="f line 2: item id 1 is already used by f line 1"):
        build_items(rows, _convert, source="f")
