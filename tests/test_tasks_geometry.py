"""The geometry pack: Geometry3K in both layouts, generic image-question-answer files, the generator."""

import io
import json
import shutil
import sys
import types
import warnings

import pytest
from PIL import Image

import mmdps.tasks as tasks
from mmdps.data.images import ImageError
from mmdps.tasks.geometry import CHOICE_INSTRUCTION

GEO3K_IDS = list(range(11, 21))


@pytest.fixture(scope="module")
def pack():
    return tasks.get("geometry")


def png_bytes(color="red", size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def geo3k(shared_data, pack):
    return pack.load(shared_data / "geometry3k_sample")


def test_the_ten_geometry3k_problems_load_with_their_diagrams(shared_data, geo3k):
    assert [i.id for i in geo3k] == GEO3K_IDS
    for item in geo3k:
        data = json.loads((shared_data / "geometry3k_sample" / str(item.id) / "data.json").read_text())
        parts = item.messages[0]["content"]
        assert parts[0]["type"] == "image" and parts[1]["type"] == "text"  # image before text
        assert parts[0]["image"].size == (data["img_width"], data["img_height"])
        assert parts[1]["text"].startswith(data["problem_text"]) and "\\boxed{}" in parts[1]["text"]
        assert item.ground_truth == data["choices"]["ABCD".index(data["answer"])]
        assert item.metadata["answer_letter"] == data["answer"]
        assert item.metadata["choices"] == data["choices"]
        assert item.metadata["problem_type"] == data["problem_type_goal"][0]
        assert item.metadata["problem_type_graph"] == data["problem_type_graph"]
    assert tasks.get("geo3k").load(shared_data / "geometry3k_sample", limit=2)[1].id == 12


def test_gold_choices_verify_as_value_and_letter(geo3k, pack):
    pytest.importorskip("mmdps.verifiers.geometry")
    for item in geo3k:
        assert pack.evaluate(item, f"<think>..</think> \\boxed{{{item.ground_truth}}}")
        assert pack.evaluate(item, f"<think>..</think> \\boxed{{{item.metadata['answer_letter']}}}")
        wrong = next(c for c in item.metadata["choices"] if c != item.ground_truth)
        assert not pack.evaluate(item, f"<think>..</think> \\boxed{{{wrong}}}")


def test_show_choices_lists_them(shared_data):
    item = tasks.get("geometry").load(shared_data / "geometry3k_sample", limit=1, show_choices=True)[0]
    assert "Choices: (A) 30 (B) 40 (C) 60 (D) 80" in item.text and CHOICE_INSTRUCTION in item.text


def test_original_layout_with_split_folders_and_bad_problems(shared_data, tmp_path, pack):
    for split, ids in (("train", [11, 12]), ("test", [13])):
        for i in ids:
            shutil.copytree(shared_data / "geometry3k_sample" / str(i), tmp_path / split / str(i))
    assert [i.id for i in pack.load(tmp_path, split="test")] == [13]
    (tmp_path / "train" / "12" / "img_diagram.png").unlink()
    with pytest.raises(ImageError, match=r"12/data\.json: image file not found"):
        pack.load(tmp_path, split="train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [i.id for i in pack.load(tmp_path, split="train", skip_invalid=True)] == [11]
    assert "skipped 1 invalid row(s)" in str(caught[0].message)
    data = json.loads((tmp_path / "test" / "13" / "data.json").read_text())
    data["answer"] = "E"
    (tmp_path / "test" / "13" / "data.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"13/data\.json: answer 'E' is not the letter of one of the 4 choices"):
        pack.load(tmp_path, split="test")


def test_easyr1_rows_with_image_bytes_and_paths(tmp_path, pack):
    pd = pytest.importorskip("pandas")
    Image.new("RGB", (20, 16), "blue").save(tmp_path / "d1.png")
    pd.DataFrame([
        {"images": [{"bytes": png_bytes(), "path": None}], "problem": "<image>Find x.", "answer": "5",
         "choices": ["3", "4", "5", "6"]},
        {"images": [{"bytes": None, "path": "d1.png"}], "problem": "<image>Find y.", "answer": "2.5",
         "choices": None},
    ]).to_parquet(tmp_path / "test.parquet")
    items = pack.load(tmp_path / "test.parquet")
    assert [i.ground_truth for i in items] == ["5", "2.5"]
    assert items[0].metadata["choices"] == ["3", "4", "5", "6"] and items[0].metadata["answer_letter"] == "C"
    assert "choices" not in items[1].metadata
    assert [i.images[0].size for i in items] == [(12, 10), (20, 16)]
    assert items[0].messages[0]["content"][1]["text"].startswith("Find x.")


def test_verl_geo3k_rows_keep_their_prompt(tmp_path, pack):
    pd = pytest.importorskip("pandas")
    pd.DataFrame([{"data_source": "hiyouga/geometry3k",
                   "prompt": [{"role": "user", "content": "<image>Find x. Think, then box."}],
                   "images": [{"bytes": png_bytes()}], "ability": "math",
                   "reward_model": {"style": "rule", "ground_truth": "7"},
                   "extra_info": {"split": "test", "index": 42, "answer": "7", "question": "<image>Find x."}}]
                 ).to_parquet(tmp_path / "geo3k_test.parquet")
    item = pack.load(tmp_path / "geo3k_test.parquet")[0]
    assert (item.id, item.ground_truth, item.text) == (42, "7", "Find x. Think, then box.")
    assert item.metadata["source"] == "hiyouga/geometry3k"
    templated = pack.load(tmp_path / "geo3k_test.parquet", raw_prompt=False)[0]
    assert templated.text.startswith("Find x.\n\nFirst reason") and templated.images[0].size == (12, 10)


def test_generic_jsonl_with_column_mapping(tmp_path, pack):
    Image.new("RGB", (9, 9)).save(tmp_path / "q1.png")
    rows = [{"pid": "101", "query": "What is the angle?", "image": "q1.png", "gt": 30, "options": ["30", "60"],
             "question_type": "multi_choice"}]
    (tmp_path / "mathvista.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = pack.load(tmp_path / "mathvista.jsonl",
                      columns={"question": "query", "answer": "gt", "images": "image", "id": "pid",
                               "choices": "options", "problem_type": "question_type"})
    item = items[0]
    assert (item.id, item.ground_truth, item.metadata["choices"], item.metadata["problem_type"]) == \
        (101, "30", ["30", "60"], "multi_choice")


def test_bad_rows_are_named_or_skipped(tmp_path, pack):
    Image.new("RGB", (9, 9)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows = [{"problem": "<image>Find x.", "answer": "1", "images": ["ok.png"]},
            {"problem": "<image>Find x.", "answer": "1", "images": ["missing.png"]},
            {"problem": "<image>Find x.", "answer": "1", "images": ["broken.png"]},
            {"problem": "", "answer": "1", "images": ["ok.png"]},
            {"problem": "<image>Find x.", "images": ["ok.png"]},
            {"problem": "<image><image>Find x.", "answer": "1", "images": ["ok.png"]},
            {"problem": "Find x.", "answer": "1"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    messages = {2: "image file not found", 3: "corrupt or not an image", 4: "problem text is empty",
                5: "has no answer", 6: r"2 <image> placeholder\(s\) but the row has 1 image", 7: "has no image"}
    for line, message in messages.items():
        single = tmp_path / f"row{line}.jsonl"
        single.write_text(json.dumps(rows[line - 1]) + "\n")
        with pytest.raises(ValueError, match=rf"row{line}\.jsonl line 1: .*{message}"):
            pack.load(single)
    with pytest.raises(ValueError, match=r"rows\.jsonl line 2"):
        pack.load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = pack.load(path, skip_invalid=True)
    assert [i.id for i in items] == [0]
    assert len(caught) == 1 and "skipped 6 invalid row(s)" in str(caught[0].message)


def test_generator_wiring_with_a_stand_in_module(monkeypatch, pack):
    calls = []

    def generate_problems(n, seed=0, levels=None, image_size=(336, 336)):
        calls.append((n, seed, levels, image_size))
        return [{"image": Image.new("RGB", (32, 32)), "question": f"Find x {k}.", "answer": str(k),
                 "choices": [str(k), "1", "2", "3"], "answer_letter": "A", "problem_type": "triangle_angle",
                 "difficulty": 1} for k in range(n)]

    fake = types.ModuleType("mmdps.tasks.geometry_procedural")
    fake.generate_problems = generate_problems
    monkeypatch.setitem(sys.modules, "mmdps.tasks.geometry_procedural", fake)
    monkeypatch.setattr(tasks, "geometry_procedural", fake, raising=False)
    items = pack.load(None, split="test", num=5, limit=3, levels=[1], image_size=64, show_choices=True)
    assert len(items) == 3 and calls[0][0] == 3 and calls[0][2:] == ([1], (64, 64))
    assert items[2].ground_truth == "2" and items[2].metadata["choices"][0] == "2"
    assert items[0].metadata["problem_type"] == "triangle_angle" and "(A) 0" in items[0].text
    pack.load(None, split="train", num=1)
    assert calls[1][1] != calls[0][1]  # each split draws from its own stream


def test_procedural_generator_when_present(pack):
    pytest.importorskip("mmdps.tasks.geometry_procedural")
    items = pack.load(None, num=4, seed=0)
    again = pack.load(None, num=4, seed=0)
    assert [i.ground_truth for i in items] == [i.ground_truth for i in again]
    assert all(len(i.images) == 1 and i.metadata["choices"] and i.metadata["problem_type"] for i in items)
