"""Benchmark presets: each reads its release's published layouts, builds its prompt, normalises answers
as its official script does and labels its official breakdowns (fixtures in benchmark_fixtures.py)."""

import pickle

import datasets
import pytest
from PIL import Image

from benchmark_fixtures import (
    geoqa_rows,
    mathverse_rows,
    mathvista_rows,
    png_bytes,
    write_geoqa_json_folder,
    write_geoqa_release,
    write_mathverse_hub_snapshot,
    write_mathverse_json,
    write_mathvista_github,
    write_mathvista_hub_snapshot,
)
from mmdps import presets, verifiers
from mmdps.presets.geometry3k import diagram_types, goal_types
from mmdps.presets.mathverse import choices_in_question, gold_letters
from mmdps.presets.mathvista import edit_distance, normalize_answer

BOXED = "<think>working</think> \\boxed{{{}}}"


def score(item, answer):
    return verifiers.score_completion(item, BOXED.format(answer)).acc


def test_registry_names_every_preset_and_rejects_unknown_ones():
    assert presets.available() == ["geometry3k", "geoqa", "geoqa_plus", "mathverse", "mathvista"]
    assert presets.get("GeoQA+").name == "geoqa_plus" and presets.get("geo3k").name == "geometry3k"
    with pytest.raises(KeyError, match="unknown benchmark 'mathvision'.*mathvista"):
        presets.get("mathvision")


# ------------------------------------------------------------------------------------------ MathVista
@pytest.mark.parametrize("layout", ["hub snapshot (image bytes)", "github json (image paths)"])
def test_mathvista_reads_both_published_layouts(tmp_path, layout):
    writer = write_mathvista_hub_snapshot if layout.startswith("hub") else write_mathvista_github
    root, rows = writer(tmp_path / "mathvista")
    items = presets.get("mathvista").load(root)
    assert [item.id for item in items] == [int(row["pid"]) for row in rows]
    first = items[0]
    assert first.task == "mathvista" and first.verifier == "mathvista" and first.ground_truth == "145°"
    assert isinstance(first.images[0], Image.Image)
    assert first.metadata["choices"] == ["135°", "140°", "145°", "150°"]
    assert first.metadata["breakdowns"]["task"] == ["geometry problem solving"]
    assert first.metadata["breakdowns"]["skills"] == ["geometry reasoning", "algebraic reasoning"]
    assert first.metadata["breakdowns"]["question_type"] == ["multi_choice"]
    assert items[1].metadata["unit"] == "years" and items[2].metadata["precision"] == 2.0
    # the official protocol's prompt is the published query as it is (GitHub's json keeps it apart: rebuilt the same)
    assert [item.text for item in items] == [row["query"] for row in rows]
    assert first.text.startswith("Hint: Please answer the question and provide the correct option letter")
    assert first.text.endswith("(C) 145°\n(D) 150°")


def test_mathvista_prompt_field_question_lists_the_choices(tmp_path):
    root, _ = write_mathvista_hub_snapshot(tmp_path / "mv")
    item = presets.get("mathvista", template="plain").load(root, prompt_field="question", limit=1)[0]
    assert item.text.startswith("△ABC") and item.text.endswith("(D) 150°")
    with pytest.raises(ValueError, match="unknown load option 'promt_field'.*did you mean 'prompt_field'"):
        presets.get("mathvista").load(root, promt_field="question")


def test_mathvista_answer_normalisation_follows_the_official_script():
    choices = ["135°", "140°", "145°", "150°"]
    mc = {"question_type": "multi_choice", "answer_type": "text", "choices": choices}
    assert normalize_answer("C", **mc) == "145°"
    assert normalize_answer("(C) 145°", **mc) == "145°"
    assert normalize_answer("145", **mc) == "145°"  # nearest choice in edit distance
    assert normalize_answer("149°", **mc) == "140°" or normalize_answer("149°", **mc) in choices
    free = {"question_type": "free_form"}
    assert normalize_answer("41 years", answer_type="integer", unit="years", **free) == "41"
    assert normalize_answer("41.9", answer_type="integer", **free) == "41"  # int(float(x)) truncates
    assert normalize_answer("\\$1,250", answer_type="integer", **free) == "1250"
    assert normalize_answer("0.7251", answer_type="float", precision=2.0, **free) == "0.73"
    assert normalize_answer("\\frac{3}{4}", answer_type="float", precision=1.0, **free) == "0.8"
    assert normalize_answer("[2014,2016]", answer_type="list", **free) == "[2014, 2016]"
    assert normalize_answer("no idea", answer_type="integer", **free) is None
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3


def test_mathvista_verifier_on_every_answer_type(tmp_path):
    root, _ = write_mathvista_hub_snapshot(tmp_path / "mv")
    mc, integer, real, listed = presets.get("mathvista").load(root)
    assert score(mc, "C") == score(mc, "145°") == score(mc, "(C)") == 1.0
    assert score(mc, "B") == 0.0 and score(mc, "140") == 0.0
    assert score(integer, "41") == score(integer, "41 years") == 1.0 and score(integer, "42") == 0.0
    assert score(real, "0.73") == score(real, "0.7312") == 1.0 and score(real, "0.7") == 0.0
    assert score(listed, "[2014, 2016]") == 1.0 and score(listed, "[2014, 2015]") == 0.0
    verdict = verifiers.get("mathvista")("I think it is C", "145°", **mc.metadata)
    assert verdict["acc"] == 0.0  # nothing extracted: wrong (the official GPT step would have read "C")
    assert verifiers.get("mathvista")("The answer is C", "145°", **mc.metadata)["acc"] == 1.0


# ------------------------------------------------------------------------------------------ MathVerse
@pytest.mark.parametrize("layout", ["hub parquet (image bytes)", "json (image paths)"])
def test_mathverse_reads_both_published_layouts(tmp_path, layout):
    writer = write_mathverse_hub_snapshot if layout.startswith("hub") else write_mathverse_json
    root, rows = writer(tmp_path / "mathverse")
    items = presets.get("mathverse").load(root)
    assert len(items) == len(rows) == 6
    versions = [item.metadata["breakdowns"]["problem_version"] for item in items]
    assert versions[:5] == [["Text Dominant"], ["Text Lite"], ["Vision Intensive"], ["Vision Dominant"],
                            ["Vision Only"]]
    assert items[0].metadata["breakdowns"]["subfield"] == ["Plane Geometry-Angle"]
    assert items[5].metadata["breakdowns"]["subfield"] == ["Solid Geometry-Length"]
    assert items[0].metadata["choices"] == ["40°", "60°", "120°", "140°"]
    assert items[4].metadata["choices"] is None  # Vision Only: the choices are in the diagram
    assert items[0].text.startswith("Please first conduct reasoning")  # query_cot
    assert all(len(item.images) == 1 for item in items)


def test_mathverse_text_only_split_needs_no_image(tmp_path):
    root, _ = write_mathverse_hub_snapshot(tmp_path / "mathverse")
    (item,) = presets.get("mathverse").load(root, split="testmini_text_only")
    assert item.images == [] and item.metadata["breakdowns"]["problem_version"] == ["Text Only"]


def test_mathverse_scoring_multiple_choice_and_free_form(tmp_path):
    root, _ = write_mathverse_hub_snapshot(tmp_path / "mathverse")
    items = presets.get("mathverse").load(root, prompt_field="query_wo")
    dominant, vision_only, free = items[0], items[4], items[5]
    assert dominant.text.startswith("Please directly answer")
    assert score(dominant, "D") == score(dominant, "140°") == 1.0 and score(dominant, "C") == 0.0
    assert score(vision_only, "D") == 1.0 and score(vision_only, "140°") == 0.0  # no listed choices to map to
    assert score(free, "14") == score(free, "14 cm") == 1.0 and score(free, "15") == 0.0
    assert gold_letters("(C)") == ["C"] and gold_letters("C\nD") == ["C", "D"] and gold_letters("False") is None
    assert verifiers.get("mathverse")(BOXED.format("C, D"), "C\nD", question_type="multi-choice")["acc"] == 1.0
    assert verifiers.get("mathverse")(BOXED.format("C"), "C\nD", question_type="multi-choice")["acc"] == 0.0
    published = [("2191.7 metres", "2191.7"), ("4\\sqrt{6}", "9.798"), ("S 23.5 ^\\circ W", "S 23.5^\\circ W"),
                 ("Circumference $=50.27 \\mathrm{~cm}$", "50.27"), ("35掳", "35")]
    for gold, answer in published:
        assert verifiers.get("mathverse")(BOXED.format(answer), gold, question_type="free-form")["acc"] == 1.0, gold
    assert choices_in_question("x ()\nChoices:\n(A) 1\n(B) 2") == ["1", "2"]


# ------------------------------------------------------------------------------------------ GeoQA
def test_geoqa_release_pickle_with_its_problem_types(tmp_path):
    test_pk, rows = write_geoqa_release(tmp_path / "GeoQA")
    for source in (test_pk, tmp_path / "GeoQA"):  # the file, or the release folder
        items = presets.get("geoqa").load(source)
        assert [item.id for item in items] == [row["id"] for row in rows]
        assert [item.metadata["breakdowns"]["type"] for item in items] == [["angle"], ["length"], ["other"]]
    first = items[0]
    assert first.ground_truth == "C" and first.metadata["choices"] == ["50°", "60°", "65°", "90°"]
    assert "(C) 65°" in first.text and first.images[0].size == (32, 24)
    assert score(first, "C") == score(first, "65°") == 1.0 and score(first, "B") == 0.0


def test_geoqa_json_folder_and_geoqa_plus(tmp_path):
    folder, _ = write_geoqa_json_folder(tmp_path / "release")
    items = presets.get("geoqa_plus").load(folder)
    assert [item.ground_truth for item in items] == ["C", "B", "A"]
    assert all(item.task == "geoqa_plus" and item.images for item in items)
    assert "breakdowns" in items[0].metadata and items[0].metadata["breakdowns"] == {}  # no sub_dataset_dict.pk
    with open(tmp_path / "types.pk", "wb") as handle:
        pickle.dump({0: "angle", 1: "length", 2: "other"}, handle)
    typed = presets.get("geoqa").load(folder, types=str(tmp_path / "types.pk"))
    assert [item.metadata["breakdowns"]["type"] for item in typed] == [["angle"], ["length"], ["other"]]


def test_geoqa_refuses_pickles_that_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "test.pk", "wb") as handle:
        pickle.dump([{"id": 0, "payload": Exploit()}], handle)
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        presets.get("geoqa").load(tmp_path / "test.pk")


def test_geoqa_bad_rows_name_the_row(tmp_path):
    rows = geoqa_rows()
    rows[1]["label"] = 7
    with open(tmp_path / "test.pk", "wb") as handle:
        pickle.dump([{**row, "image": png_bytes()} for row in rows], handle)
    with pytest.raises(ValueError, match=r"test.pk problem 1: 'label' must index one of the 4 choices"):
        presets.get("geoqa").load(tmp_path / "test.pk")
    with pytest.warns(UserWarning, match="skipped 1 invalid row"):
        assert len(presets.get("geoqa").load(tmp_path / "test.pk", skip_invalid=True)) == 2
    with pytest.raises(FileNotFoundError, match="no official hub release"):
        presets.get("geoqa").load()


# ------------------------------------------------------------------------------------------ Geometry3K
def test_geometry3k_intergps_folders_carry_the_official_types(shared_data):
    items = presets.get("geometry3k").load(shared_data / "geometry3k_sample", split="train")
    assert len(items) == 10 and all(item.task == "geometry3k" and item.verifier == "geometry" for item in items)
    first = items[0]
    assert first.id == 11 and first.ground_truth == "80"
    assert first.metadata["breakdowns"] == {"problem_type_goal": ["Angle"], "problem_type_graph": ["Circle"]}
    assert goal_types(["Other", "Length"]) == ["Length"] and goal_types(["Other"]) == ["Other"]
    assert diagram_types(["Triangle", "Rectangle", "Square"]) == ["Triangle", "Quad"]


def test_hub_ids_load_through_datasets(monkeypatch):
    """A hub id goes to datasets.load_dataset (stubbed: nothing is downloaded in tests)."""
    calls = []
    hub_rows = [{"problem": "<image>Find x.", "answer": "12", "images": [{"bytes": png_bytes(), "path": None}]}]

    def fake_load_dataset(path, name=None, *, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(hub_rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (item,) = presets.get("geometry3k").load()
    assert calls == [("hiyouga/geometry3k", None, "test")]
    assert item.ground_truth == "12" and item.metadata["breakdowns"] == {} and item.images

    mathverse = [{**row, "image": {"bytes": png_bytes(), "path": None}} for row in mathverse_rows()]
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda path, name=None, *, split: calls.append((path, name, split)) or
                        datasets.Dataset.from_list(mathverse))
    assert len(presets.get("mathverse").load(limit=2)) == 2
    assert calls[-1] == ("AI4Math/MathVerse", "testmini", "testmini")


def test_offline_hub_ids_and_missing_paths_say_what_to_do(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match="huggingface-cli download AI4Math/MathVista"):
        presets.get("mathvista").load("AI4Math/MathVista")
    with pytest.raises(FileNotFoundError, match="neither a local file or folder nor a hub dataset id"):
        presets.get("mathvista").load(str(tmp_path / "nowhere" / "x" / "y"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="none of the published files for split 'testmini'"):
        presets.get("mathvista").load(tmp_path / "empty")


def test_published_rows_keep_their_fields(tmp_path):
    """The fixtures are the published schema: every field a preset relies on is present and typed."""
    for row in mathvista_rows():
        assert set(row) == {"pid", "question", "image", "choices", "unit", "precision", "answer", "question_type",
                            "answer_type", "metadata", "query"}
    for row in mathverse_rows():
        assert set(row) >= {"sample_index", "problem_index", "problem_version", "question", "image", "answer",
                            "question_type", "metadata", "query_wo", "query_cot"}
