"""Loading data a careless user or a broken export produces: every bad row named (file and line or row),
skipped and counted under skip_invalid, and never turned into a wrong gold."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmdps import tasks
from mmdps.data.loaders import SkippedRowsWarning, read_rows


def write_parquet(path, columns):
    pq.write_table(pa.table(columns), path)


@pytest.mark.parametrize("gold", [float("nan"), None])
def test_a_nan_or_null_gold_in_parquet_is_an_invalid_row_not_the_answer_nan(tmp_path, gold):
    path = tmp_path / "math.parquet"
    write_parquet(path, {"problem": ["1+1?", "2+2?", "3+3?"], "answer": pa.array([2.0, gold, 6.0], pa.float64())})
    math_pack = tasks.get("math")
    with pytest.raises(ValueError, match=r"math\.parquet row 1: the row has no answer"):
        math_pack.load(path)
    with pytest.warns(SkippedRowsWarning, match=r"skipped 1 invalid row\(s\); first: .*row 1: the row has no answer"):
        items = math_pack.load(path, skip_invalid=True)
    assert [item.ground_truth for item in items] == ["2", "6"]


def test_a_nan_gold_inside_a_verl_row_or_a_list_is_missing_too(tmp_path):
    path = tmp_path / "verl.parquet"
    rows = [{"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": math.nan}}]
    write_parquet(path, {"prompt": [r["prompt"] for r in rows], "reward_model": [r["reward_model"] for r in rows]})
    with pytest.raises(ValueError, match=r"verl\.parquet row 0: the row has no answer"):
        tasks.get("math").load(path)
    flat = tmp_path / "list.jsonl"
    flat.write_text(json.dumps({"problem": "q", "answer": [float("nan"), 3]}) + "\n")
    assert tasks.get("math").load(flat)[0].ground_truth == "3"


def test_a_nan_gold_in_a_geometry_row_is_invalid(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "d.png")
    path = tmp_path / "geo.parquet"
    write_parquet(path, {"problem": ["<image>Find x.", "<image>Find y."], "answer": [3.0, float("nan")],
                         "images": [["d.png"], ["d.png"]]})
    with pytest.raises(ValueError, match=r"geo\.parquet row 1: the row has no answer"):
        tasks.get("geometry").load(path)


def test_a_bad_jsonl_line_is_skipped_and_counted_under_skip_invalid(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n[1, 2]\n'
                    '{"problem": "c", "answer": "3"}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl line 2: not valid JSON .*skip_invalid=True"):
        tasks.get("math").load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = tasks.get("math").load(path, skip_invalid=True)
    assert [item.ground_truth for item in items] == ["1", "3"]
    [warning] = [w.message for w in caught if isinstance(w.message, SkippedRowsWarning)]
    assert warning.count == 2 and "line 2" in warning.first  # line 3 is a list, not an object


def test_a_json_list_syntax_error_is_reported_at_its_line_with_json_advice(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"problem": "a", "answer": "1"},\n  {"problem": "b" "answer": "2"}\n]\n')
    with pytest.raises(ValueError, match=r"d\.json line 3 column 19: JSON syntax error \(Expecting ','.*missing "
                                         r"comma, bracket or quote"):
        list(read_rows(path))
    single = tmp_path / "one.json"
    single.write_text('{"data": [\n {"problem": "a",}\n]}')
    with pytest.raises(ValueError, match=r"one\.json line 2 .*JSON syntax error"):
        list(read_rows(single))


def test_a_null_problem_in_parquet_says_the_column_is_empty(tmp_path):
    path = tmp_path / "p.parquet"
    write_parquet(path, {"problem": ["a", None], "answer": ["1", "2"]})
    with pytest.raises(ValueError, match=r"p\.parquet row 1: the question column 'problem' is empty \(null\)"):
        tasks.get("math").load(path)


def test_a_geometry3k_folder_without_data_json_is_reported(tmp_path, shared_data):
    root = tmp_path / "test"
    shutil.copytree(shared_data / "geometry3k_sample", root)
    broken = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (broken / "data.json").unlink()
    with pytest.raises(ValueError, match=rf"{broken}: problem folder without data\.json"):
        tasks.get("geometry").load(root)
    with pytest.warns(SkippedRowsWarning, match="skipped 1 invalid row"):
        items = tasks.get("geometry").load(root, skip_invalid=True)
    assert len(items) == 9


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(b'{"problem": "a", "answer": "1"}\n{"problem": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl line 2: not UTF-8 text \(byte 0xe9 at column 17\); save the "
                                         r"file as UTF-8"):
        tasks.get("math").load(jsonl)
    assert len(tasks.get("math").load(jsonl, skip_invalid=True)) == 1
    as_json = tmp_path / "d.json"
    as_json.write_bytes(b'[\n{"problem": "a", "answer": "1"},\n{"problem": "caf\xe9", "answer": "2"}\n]')
    with pytest.raises(ValueError, match=r"d\.json line 3: not UTF-8 text \(byte 0xe9 at column 17\)"):
        list(read_rows(as_json))


def test_eval_report_records_how_many_rows_skip_invalid_dropped(tmp_path, monkeypatch):
    import mmdps.commands.eval as eval_module
    from mmdps.cli import main as cli_main
    from mmdps.rollout.base import Completion, RolloutEngine

    class Oracle(RolloutEngine):
        def generate(self, items, k, sampling):
            return [[Completion(text=f"\\boxed{{{item.ground_truth}}}", token_ids=[1]) for _ in range(k)]
                    for item in items]

    monkeypatch.setattr(eval_module, "build_engine", lambda *args, **kwargs: Oracle())
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem": "a", "answer": "1"}\nnot json\n{"problem": "b"}\n{"problem": "c", "answer": "3"}\n')
    out = tmp_path / "out"
    with pytest.warns(SkippedRowsWarning, match="skipped 2 invalid row"):
        assert cli_main(["eval", "--model", "m", "--task", "math", "--data", str(data), "--n", "1", "--skip-invalid",
                         "--output", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_problems"] == 2 and report["config"]["skipped_invalid_rows"] == 2


def test_a_benchmark_preset_skips_and_counts_an_unparsable_line_under_skip_invalid(tmp_path):
    from benchmark_fixtures import mathverse_rows, save_png
    from mmdps import presets

    rows = mathverse_rows()[:2]
    for i, row in enumerate(rows):
        save_png(tmp_path / row["image"], 40 * i)
    path = tmp_path / "testmini.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n{broken\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(ValueError, match=r"testmini\.jsonl line 2: not valid JSON"):
        presets.get("mathverse").load(path)
    with pytest.warns(SkippedRowsWarning, match=r"skipped 1 invalid row"):
        assert len(presets.get("mathverse").load(path, skip_invalid=True)) == 2


def test_eval_report_counts_verifier_errors(tmp_path):
    from mmdps import verifiers
    from mmdps.eval.runner import evaluate_items
    from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams
    from mmdps.verifiers.base import never_raise

    @verifiers.register("test_eval_raises")
    @never_raise
    def raises(completion, ground_truth, /, **item):
        raise AttributeError("'list' object has no attribute 'strip'")

    class Echo(RolloutEngine):
        def generate(self, items, k, sampling):
            return [[Completion(text="x", token_ids=[1]) for _ in range(k)] for _ in items]

    items = [dataclasses.replace(item, verifier="test_eval_raises")
             for item in tasks.get("math").load(None, num=3, seed=0)]
    result = evaluate_items(Echo(), items, n=2, sampling=SamplingParams(max_new_tokens=4), progress=False)
    assert result.report["verifier_errors"] == 6 and result.report["mean_at_n"] == 0.0
