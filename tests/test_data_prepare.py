"""``mmdps data prepare``: local copies in each hub's own layout (built here: the hub is never reached)
become the files the configs read, with content ids that survive re-preparing a reordered source."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmdps import tasks
from mmdps.cli import main
from mmdps.data.prepare import SchemaError, content_id, last_boxed, prepare

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(shade: int, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, 100, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def geometry3k_rows() -> list[dict]:
    return [{"images": [{"bytes": png(10 * i), "path": None}], "problem": f"<image>Find x. ({i})", "answer": str(i + 1)}
            for i in range(4)]


GEOMETRY3K_SCHEMA = pa.schema([("images", pa.list_(IMAGE)), ("problem", pa.string()), ("answer", pa.string())])


def write_geometry3k(root: Path, train: list[dict]) -> Path:
    """hiyouga/geometry3k's layout: data/<split>-00000-of-00001.parquet."""
    write_parquet(root / "data" / "train-00000-of-00001.parquet", train, GEOMETRY3K_SCHEMA)
    write_parquet(root / "data" / "validation-00000-of-00001.parquet", geometry3k_rows()[:1], GEOMETRY3K_SCHEMA)
    write_parquet(root / "data" / "test-00000-of-00001.parquet", geometry3k_rows()[1:3], GEOMETRY3K_SCHEMA)
    return root


def test_geometry3k_from_the_hub_layout_with_bad_rows_reported(tmp_path):
    rows = geometry3k_rows()
    rows.append({"images": [{"bytes": png(1, (3000, 10)), "path": None}], "problem": "<image>Too wide.",
                 "answer": "1"})  # an aspect ratio the model cannot take
    rows.append(dict(rows[0]))  # a duplicate
    rows.append({"images": [{"bytes": png(2), "path": None}], "problem": "<image>No answer.", "answer": None})
    source = write_geometry3k(tmp_path / "hub", rows)
    report = prepare("geometry3k", source, tmp_path / "out")
    train, validation, test = report.splits
    assert (train.rows, train.images, validation.rows, test.rows) == (4, 4, 1, 2)
    reasons = {reason: count for reason, (count, _) in train.skipped.items()}
    assert reasons["the same content as an earlier row"] == 1 and reasons["no answer"] == 1
    assert any("aspect ratio" in reason for reason in reasons)
    text = "\n".join(report.lines())
    assert "train: 4 rows, 4 images, 3 skipped" in text and "first: " in text

    items = tasks.get("geometry").load(tmp_path / "out" / "train.parquet")
    assert [item.ground_truth for item in items] == ["1", "2", "3", "4"]
    assert items[0].id == content_id("<image>Find x. (0)", "1", png(0))
    assert items[0].images[0].size == (40, 30) and len({item.id for item in items}) == 4


def test_ids_survive_re_preparing_a_reordered_source(tmp_path):
    rows = geometry3k_rows()
    first = prepare("geometry3k", write_geometry3k(tmp_path / "a", rows), tmp_path / "out_a")
    second = prepare("geometry3k", write_geometry3k(tmp_path / "b", rows[::-1]), tmp_path / "out_b")
    assert first.splits[0].rows == second.splits[0].rows == 4

    def ids(folder):
        return {item.ground_truth: item.id for item in tasks.get("geometry").load(folder / "train.parquet")}

    assert ids(tmp_path / "out_a") == ids(tmp_path / "out_b")


def test_gsm8k_main_config_folder_and_answers_after_hashes(tmp_path):
    rows = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
            {"question": "A dozen eggs cost $2,400 in total?", "answer": "so\n#### 2,400"},
            {"question": "No final answer", "answer": "it is 5"}]
    write_parquet(tmp_path / "gsm8k" / "main" / "train-00000-of-00001.parquet", rows)
    write_parquet(tmp_path / "gsm8k" / "main" / "test-00000-of-00001.parquet", rows[:1])
    write_parquet(tmp_path / "gsm8k" / "socratic" / "train-00000-of-00001.parquet", rows[:1] * 5)  # not read
    report = prepare("gsm8k", tmp_path / "gsm8k", tmp_path / "out")
    assert [(s.split, s.rows) for s in report.splits] == [("train", 2), ("test", 1)]
    assert report.splits[0].skipped['the answer has no "#### N" final answer'][0] == 1
    items = tasks.get("gsm8k").load(tmp_path / "out" / "train.jsonl")
    assert [item.ground_truth for item in items] == ["7", "2400"]


def test_countdown_rows_with_a_limit(tmp_path):
    rows = [{"target": 24, "nums": [4, 7, 8, 8]}, {"target": 98, "nums": [44, 19, 35]},
            {"target": 10, "nums": [5, 5]}, {"target": "x", "nums": [1, 2]}]
    write_parquet(tmp_path / "cd" / "data" / "train-00000-of-00001.parquet", rows[:3])
    report = prepare("countdown", tmp_path / "cd", tmp_path / "out", limit=2)
    assert report.splits[0].rows == 2
    items = tasks.get("countdown").load(tmp_path / "out" / "train.jsonl")
    assert [item.ground_truth for item in items] == [{"target": 24, "numbers": [4, 7, 8, 8]},
                                                     {"target": 98, "numbers": [44, 19, 35]}]
    assert items[0].id == content_id(24, [4, 7, 8, 8])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = prepare("countdown", bad, tmp_path / "out2")
    assert report.splits[0].rows == 3 and "target … is not a whole number" in report.splits[0].skipped


def test_math_from_math_lighteval_solutions_and_deepscaler_files(tmp_path):
    lighteval = [{"problem": "What is $1+1$?", "level": "Level 1", "type": "Algebra",
                  "solution": "We add: $1+1=\\boxed{2}$."},
                 {"problem": "Simplify $\\frac{2}{4}$.", "level": "Level 2", "type": "Prealgebra",
                  "solution": "It is $\\boxed{\\frac{1}{2}}$."},
                 {"problem": "No box", "level": "Level 1", "type": "Algebra", "solution": "It is 3."}]
    write_parquet(tmp_path / "lighteval" / "data" / "train-00000-of-00001.parquet", lighteval)
    report = prepare("math", tmp_path / "lighteval", tmp_path / "out")
    assert report.splits[0].rows == 2 and report.missing_splits[0] == "aime"
    items = tasks.get("math").load(tmp_path / "out" / "train.json")
    assert [item.ground_truth for item in items] == ["2", "\\frac{1}{2}"]
    assert items[0].metadata["problem_type"] == "Algebra"

    deepscaler = tmp_path / "deepscaler"
    (deepscaler / "test").mkdir(parents=True)
    (deepscaler / "train.json").write_text(json.dumps([{"problem": "1+2?", "answer": "3"}]))
    (deepscaler / "test" / "olympiad_bench.json").write_text(json.dumps([{"problem": "p", "answer": "['2']"}]))
    report = prepare("math", deepscaler, tmp_path / "ds")
    assert [(s.split, s.rows) for s in report.splits] == [("train", 1), ("olympiad_bench", 1)]
    assert json.loads((tmp_path / "ds" / "test" / "olympiad_bench.json").read_text())[0]["answer"] == "2"


def test_last_boxed_balances_braces():
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{2}} end") == "\\frac{1}{2}"
    assert last_boxed("\\fbox{7}") == "7" and last_boxed("no box") is None and last_boxed("\\boxed{open") is None


def test_a_source_of_another_schema_is_refused_naming_expected_and_found_columns(tmp_path):
    write_parquet(tmp_path / "cd" / "train.parquet", [{"target": 24, "nums": [1, 2]}])
    with pytest.raises(SchemaError, match=r"not a geometry3k source .*expected the columns images, problem, answer "
                                          r".*found nums, target"):
        prepare("geometry3k", tmp_path / "cd", tmp_path / "out")
    with pytest.raises(KeyError, match="unknown dataset 'mnist'"):
        prepare("mnist", tmp_path, tmp_path / "out")


def test_hub_ids_go_through_datasets_with_an_optional_split(monkeypatch, tmp_path):
    calls = []
    table = datasets.Dataset.from_list([{"target": 24, "nums": [4, 7, 8, 8]}])

    def fake_load_dataset(path, name=None, *, split=None):
        calls.append((path, name, split))
        return table if split else datasets.DatasetDict({"train": table})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    report = prepare("countdown", None, tmp_path / "out")
    assert calls == [("Jiayi-Pan/Countdown-Tasks-3to4", None, None)] and report.splits[0].rows == 1
    report = prepare("countdown", "Jiayi-Pan/Countdown-Tasks-3to4@train", tmp_path / "out2")
    assert calls[-1] == ("Jiayi-Pan/Countdown-Tasks-3to4", None, "train") and report.splits[0].rows == 1

    aime = datasets.Dataset.from_list([{"id": 60, "problem": "Find $n$.", "solution": "So $n=\\boxed{204}$.",
                                        "answer": "204", "url": "u", "year": "2024"}])
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, *, split=None: datasets.DatasetDict(
        {"train": aime}))
    report = prepare("aime", None, tmp_path / "math")
    assert report.splits[0].path == tmp_path / "math" / "test" / "aime.json"
    assert [i.ground_truth for i in tasks.get("math").load(report.splits[0].path)] == ["204"]


def test_a_missing_source_names_both_readings_fast(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match=rf"as a local path, {tmp_path}/data/train\.json does not exist; as a "
                                                r"hub dataset id: could not load the hub dataset 'data/train\.json'"):
        prepare("countdown", "data/train.json", tmp_path / "out")


def test_the_command_prints_what_it_wrote_and_checks_the_ground_truth(tmp_path, capsys):
    write_geometry3k(tmp_path / "hub", geometry3k_rows())
    assert main(["data", "prepare", "geometry3k", "--source", str(tmp_path / "hub"), "--out",
                 str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "train: 4 rows, 4 images, 0 skipped" in out and "test: 2 rows" in out
    assert "ground truth self-check: 4/4 sampled items' own ground truth scored correct" in out
    write_parquet(tmp_path / "cd" / "train.parquet", [{"target": 24, "nums": [1, 2]}])
    assert main(["data", "prepare", "geometry3k", "--source", str(tmp_path / "cd")]) == 2
    assert "expected the columns images, problem, answer" in capsys.readouterr().err
    assert main(["data", "list"]) == 0 and "countdown" in capsys.readouterr().out


@pytest.mark.skipif(not (SHARED_DATA / "math").is_dir(), reason="the real MATH files are not here")
def test_the_real_math_files_prepare_with_their_rows_counted(tmp_path):
    report = prepare("math", SHARED_DATA / "math", tmp_path / "math")
    counts = {split.split: split.rows for split in report.splits}
    assert counts == {"train": 7470, "aime": 30, "amc": 83, "math500": 500, "minerva": 272, "olympiad_bench": 675}
    assert report.splits[0].skipped["no answer"][0] == 4  # four MATH train rows have no answer
    reordered = tmp_path / "reordered"
    reordered.mkdir()
    rows = json.loads((SHARED_DATA / "math" / "test" / "aime.json").read_text())
    (reordered / "aime.json").write_text(json.dumps(rows[::-1]))
    again = prepare("math", reordered / "aime.json", tmp_path / "again")
    assert again.splits[0].path == tmp_path / "again" / "test" / "aime.json"
    before = {r["problem"]: r["item_id"] for r in json.loads((tmp_path / "math" / "test" / "aime.json").read_text())}
    after = {r["problem"]: r["item_id"] for r in json.loads(again.splits[0].path.read_text())}
    assert before == after


@pytest.mark.parametrize("domain,dataset", [("geometry", "geometry3k"), ("math", "math")])
def test_the_configs_read_what_prepare_writes(tmp_path, monkeypatch, domain, dataset):
    from mmdps.config import load_config
    from mmdps.data.prepare import get_spec

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{domain}_dps.yaml")
    spec = get_spec(dataset)
    monkeypatch.chdir(tmp_path)
    if dataset == "geometry3k":
        prepare(dataset, write_geometry3k(tmp_path / "hub", geometry3k_rows()))
    else:
        source = tmp_path / "deepscaler"
        (source / "test").mkdir(parents=True)
        (source / "train.json").write_text(json.dumps([{"problem": "1+2?", "answer": "3"}]))
        (source / "test" / "aime.json").write_text(json.dumps([{"problem": "2+2?", "answer": "4"}]))
        prepare(dataset, source)
    pack = tasks.get(config.task)
    assert pack.load(config.train_source, split=config.train_split)
    assert pack.load(config.eval_source, split=config.eval_split)
    assert Path(config.train_source).resolve().is_relative_to(Path(spec.default_out).resolve())


def test_geometry3k_from_a_hub_dataset_with_decoded_images(monkeypatch, tmp_path):
    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "problem": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    rows = [{"images": [Image.new("RGB", (40, 30), (i * 40, 0, 0))], "problem": f"<image>Find x{i}.", "answer": str(i)}
            for i in range(3)]
    table = datasets.Dataset.from_list(rows, features=features)
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda path, name=None, *, split=None: datasets.DatasetDict({"train": table, "test": table}))
    report = prepare("geometry3k", "hiyouga/geometry3k", tmp_path / "out")
    assert [(s.split, s.rows, s.images) for s in report.splits] == [("train", 3, 3), ("test", 3, 3)]
    assert report.missing_splits == ["validation"]
    items = tasks.get("geometry").load(tmp_path / "out", split="test")
    assert [item.images[0].getpixel((0, 0)) for item in items] == [(0, 0, 0), (40, 0, 0), (80, 0, 0)]
