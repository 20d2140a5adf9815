"""Evaluation: the pass@k estimator, report aggregation, the writer and comparisons, with a fake engine
(canned completions) and a test verifier so nothing here needs a model or the task packs."""

import json
import math
from itertools import combinations, pairwise

import numpy as np
import pytest

from mmdps import verifiers
from mmdps.cli import main as cli_main
from mmdps.data.item import Item
from mmdps.eval import (
    compare_reports,
    default_ks,
    evaluate_items,
    flat_metrics,
    load_report,
    pass_at_k,
    pass_at_k_per_problem,
    problem_types,
    write_report,
)
from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams

VERIFIER = "eval_test_exact"


@verifiers.register(VERIFIER)
def exact_verifier(completion, ground_truth, **metadata):
    """Correct when the text after 'A:' equals the ground truth; format needs the 'A:' prefix."""
    has_format = completion.startswith("A:")
    correct = has_format and completion[2:].strip() == str(ground_truth)
    return {"score": 1.0 if correct else (0.1 if has_format else 0.0), "acc": float(correct),
            "format": float(has_format)}


class CannedEngine(RolloutEngine):
    """Returns ``canned[item.id][j]`` as completion j; a text ending in '...' is a truncated one."""

    def __init__(self, canned):
        self.canned = canned
        self.calls = []

    def generate(self, items, k, sampling):
        self.calls.append(([item.id for item in items], k, sampling))
        out = []
        for item in items:
            texts = self.canned[item.id][:k]
            out.append([Completion(text=t, token_ids=list(range(len(t.split()) + 1)),
                                   finish_reason="length" if t.endswith("...") else "stop") for t in texts])
        return out


def make_item(i, answer, **metadata):
    return Item(id=i, messages=[{"role": "user", "content": f"question {i}"}], ground_truth=answer,
                verifier=VERIFIER, task="toy", metadata=metadata)


# 3 problems x 4 samples: problem 0 has 2 correct, problem 1 has 0 (one format error, one truncated),
# problem 2 has 4 correct.
ITEMS = [
    make_item(0, "7", problem_type={"graph": ["Circle", "Line"], "goal": ["Angle"]}, difficulty="easy"),
    make_item(1, "3", problem_type_graph=["Triangle"], problem_type_goal=["Length"], difficulty="hard"),
    make_item(2, "5", problem_type={"graph": ["Circle"], "goal": ["Length"]}, difficulty="hard"),
]
CANNED = {
    0: ["A: 7", "A: 8", "A: 7", "A: 1"],
    1: ["A: 2", "no answer", "A: 4", "A: still thinking ..."],
    2: ["A: 5", "A: 5", "A: 5", "A: 5"],
}


@pytest.fixture()
def result():
    return evaluate_items(CannedEngine(CANNED), ITEMS, n=4, sampling=SamplingParams(seed=3), batch_size=2,
                          progress=False, config={"model": "fake", "label": "fake"})


# ---------------------------------------------------------------------------------------------- pass@k
def test_pass_at_k_hand_computed_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k: every 3-subset holds a correct sample
    assert pass_at_k(16, 16, 1) == 1.0
    assert pass_at_k(16, 4, 16) == 1.0


def test_pass_at_k_matches_the_combinatorial_definition():
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    # and by brute force on one case: fraction of 3-subsets of 6 samples (2 correct) with a hit
    samples = [1, 1, 0, 0, 0, 0]
    subsets = list(combinations(samples, 3))
    assert pass_at_k(6, 2, 3) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_pass_at_k_is_monotone_and_stable_for_large_n():
    n = 200
    for c in (0, 1, 17, 100, 199):
        values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
        assert all(b >= a - 1e-12 for a, b in pairwise(values)), "pass@k must not decrease with k"
    for k in (1, 8, 64):
        values = [pass_at_k(n, c, k) for c in range(n + 1)]
        assert all(b >= a - 1e-12 for a, b in pairwise(values)), "pass@k must not decrease with c"
        assert all(0.0 <= v <= 1.0 for v in values)


def test_vectorized_pass_at_k_equals_the_scalar_one():
    correct = np.array([0, 1, 5, 15, 16, 16, 3])
    for k in default_ks(16) + [3, 13]:
        expected = [pass_at_k(16, c, k) for c in correct]
        np.testing.assert_allclose(pass_at_k_per_problem(16, correct, k), expected, atol=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6), (0, 0, 1)])
def test_pass_at_k_rejects_bad_input(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_default_ks():
    assert default_ks(16) == [1, 2, 4, 8, 16]
    assert default_ks(12) == [1, 2, 4, 8, 12]
    assert default_ks(1) == [1]


def test_problem_types_flattens_every_layout():
    assert problem_types({"problem_type": "Algebra"}) == ["Algebra"]
    assert problem_types({"problem_type": ["a", "b", "a"]}) == ["a", "b"]
    assert problem_types({"problem_type": {"graph": ["Circle", "Line"], "goal": "Angle"}}) == \
        ["graph:Circle", "graph:Line", "goal:Angle"]
    assert problem_types({"problem_type_graph": ["Circle"], "problem_type_goal": ["Area"]}) == \
        ["graph:Circle", "goal:Area"]
    # the geometry pack's Geometry3K items: the bare type repeats the first goal type
    assert problem_types({"problem_type": "Angle", "problem_type_goal": ["Angle"],
                          "problem_type_graph": ["Circle", "Line"]}) == ["graph:Circle", "graph:Line", "goal:Angle"]
    assert problem_types({"problem_type": "unknown", "problem_type_goal": [], "problem_type_graph": []}) == ["unknown"]
    assert problem_types({"choices": ["1", "2"]}) == []


# ---------------------------------------------------------------------------------------------- evaluate
def test_report_fields_and_values(result):
    report = result.report
    assert report["n"] == 4 and report["num_problems"] == 3 and report["num_samples"] == 12
    assert report["mean_at_n"] == pytest.approx((2 + 0 + 4) / 12)
    assert sorted(report["pass_at_k"]) == [1, 2, 4]
    assert report["pass_at_k"][1] == pytest.approx(report["mean_at_n"])
    assert report["pass_at_k"][2] == pytest.approx((pass_at_k(4, 2, 2) + 0 + 1) / 3)
    assert report["pass_at_k"][4] == pytest.approx(2 / 3)
    assert report["format_error_rate"] == pytest.approx(1 / 12)
    assert report["truncation_rate"] == pytest.approx(1 / 12)
    expected_tokens = sum(len(t.split()) + 1 for texts in CANNED.values() for t in texts)
    assert report["tokens_generated"] == expected_tokens
    assert report["mean_completion_tokens"] == pytest.approx(expected_tokens / 12)
    assert report["mean_score"] == pytest.approx((6 * 1.0 + 5 * 0.1 + 0.0) / 12)
    assert report["unsolved_fraction"] == pytest.approx(1 / 3)
    assert report["task"] == "toy" and report["config"]["model"] == "fake"
    assert report["sampling"]["seed"] == 3
    assert set(report["timing"]) >= {"total_seconds", "generation_seconds", "tokens_per_second"}
    json.dumps(report)  # serialisable as is


def test_by_type_counts_a_problem_in_each_of_its_types(result):
    by_type = result.report["by_type"]
    assert set(by_type) == {"graph:Circle", "graph:Line", "graph:Triangle", "goal:Angle", "goal:Length"}
    assert by_type["graph:Circle"]["num_problems"] == 2  # problems 0 and 2
    assert by_type["graph:Circle"]["mean_at_n"] == pytest.approx((2 + 4) / 8)
    assert by_type["goal:Length"]["mean_at_n"] == pytest.approx((0 + 4) / 8)
    assert by_type["graph:Triangle"]["pass_at_k"][4] == 0.0
    by_difficulty = result.report["by_difficulty"]
    assert by_difficulty["easy"]["mean_at_n"] == pytest.approx(0.5)
    assert by_difficulty["hard"]["num_problems"] == 2


def test_samples_and_problems(result):
    assert len(result.samples) == 12
    first = result.samples[0]
    assert {"item_id", "sample", "completion", "score", "acc", "format", "correct", "tokens", "truncated"} <= set(first)
    assert [(s["item_id"], s["sample"]) for s in result.samples[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert [p["success_rate"] for p in result.problems] == [0.5, 0.0, 1.0]
    assert result.samples[7]["truncated"] and result.samples[7]["finish_reason"] == "length"


def test_batches_and_seeds():
    engine = CannedEngine(CANNED)
    evaluate_items(engine, ITEMS, n=2, sampling=SamplingParams(seed=10), batch_size=2, progress=False)
    assert [ids for ids, _, _ in engine.calls] == [[0, 1], [2]]
    assert [s.seed for _, _, s in engine.calls] == [10, 12]  # seed + index of the batch's first item
    assert all(k == 2 for _, k, _ in engine.calls)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="no items"):
        evaluate_items(CannedEngine(CANNED), [], n=2, progress=False)
    with pytest.raises(ValueError, match=r"\[1, n=4\]"):
        evaluate_items(CannedEngine(CANNED), ITEMS, n=4, ks=[8], progress=False)
    unnamed = Item(id=9, messages=[], ground_truth="1", verifier="")
    with pytest.raises(ValueError, match="item 9"):
        evaluate_items(CannedEngine({9: ["A: 1"]}), [unnamed], n=1, progress=False)

    class ShortEngine(CannedEngine):
        def generate(self, items, k, sampling):
            return super().generate(items, k, sampling)[:-1]

    with pytest.raises(RuntimeError, match="expected a 2 x 4"):
        evaluate_items(ShortEngine(CANNED), ITEMS[:2], n=4, progress=False)


def test_flat_metrics(result):
    flat = flat_metrics(result.report, prefix="eval")
    assert flat["eval/mean_at_n"] == pytest.approx(0.5)
    assert flat["eval/pass@4"] == pytest.approx(2 / 3)
    assert flat["eval/by_type/graph:Circle"] == pytest.approx(0.75)
    assert all(isinstance(v, float) for v in flat.values())


# ---------------------------------------------------------------------------------------------- writing
def test_write_report_writes_three_files(result, tmp_path):
    paths = write_report(result, tmp_path / "run")
    assert {p.name for p in paths.values()} == {"report.json", "summary.md", "samples.jsonl"}
    report = json.loads(paths["report"].read_text())
    assert report["mean_at_n"] == pytest.approx(0.5) and report["pass_at_k"]["4"] == pytest.approx(2 / 3)
    lines = paths["samples"].read_text().splitlines()
    assert len(lines) == report["num_problems"] * report["n"]
    assert json.loads(lines[0])["completion"] == "A: 7"
    summary = paths["summary"].read_text()
    assert "mean@4" in summary and "50.00" in summary and "graph:Circle" in summary
    loaded = load_report(tmp_path / "run")
    assert loaded["pass_at_k"] == result.report["pass_at_k"]  # int keys again


def test_load_report_rejects_other_files(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"mean_at_n": 0.1}))
    with pytest.raises(ValueError, match="lacks"):
        load_report(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_report(tmp_path / "nowhere")


def _two_reports(tmp_path):
    base = evaluate_items(CannedEngine(CANNED), ITEMS, n=4, progress=False)
    better = {**CANNED, 1: ["A: 3", "A: 3", "A: 4", "A: 3"]}
    dps = evaluate_items(CannedEngine(better), ITEMS, n=4, progress=False)
    write_report(base, tmp_path / "base")
    write_report(dps, tmp_path / "dps")
    return [tmp_path / "base" / "report.json", tmp_path / "dps"]


def test_compare_reports_writes_table_and_plot(tmp_path, capsys):
    comparison = compare_reports(_two_reports(tmp_path), tmp_path / "cmp")
    assert comparison.labels == ["base", "dps"]
    assert comparison.rows[0][4] == "50.00" and comparison.rows[1][4] == "75.00"
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| base |" in table and "| dps |" in table and "pass@4 %" in table and "graph:Circle" in table
    png = (tmp_path / "cmp" / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "base" in capsys.readouterr().out


def test_compare_plot_has_the_tables_error_bars(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    drawn = []
    bar = Axes.bar

    def spy(self, x, height, *args, **kwargs):
        drawn.append(np.asarray(kwargs.get("yerr")))
        return bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    comparison = compare_reports(_two_reports(tmp_path), tmp_path / "cmp", print_table=False)
    stderr = [float(row[5]) for row in comparison.rows]  # the table's "± stderr" column, in %
    assert len(drawn) == 2 and all(s > 0 for s in stderr)
    for errors, expected in zip(drawn, stderr, strict=True):
        assert errors[0] == pytest.approx(expected, abs=0.01)  # mean@n
        assert not errors[1:].any()  # pass@k: no stderr in the reports, no bar


def test_compare_through_the_cli(tmp_path, capsys):
    paths = [str(p) for p in _two_reports(tmp_path)]
    assert cli_main(["eval", "--compare", *paths, "--labels", "before", "after", "--output", str(tmp_path / "c")]) == 0
    assert "| after |" in (tmp_path / "c" / "comparison.md").read_text()
    assert (tmp_path / "c" / "comparison.png").exists()
    assert cli_main(["eval", "--compare", str(tmp_path / "missing")]) == 2
    assert "no evaluation report" in capsys.readouterr().err


def test_cli_requires_model_task_and_output(capsys):
    assert cli_main(["eval", "--task", "math"]) == 2
    assert "--model" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- real packs
def test_math_test_set_with_the_real_pack_and_verifier(shared_data, tmp_path, monkeypatch):
    """The CLI path on AIME (3 problems) with canned completions instead of a model."""
    import mmdps.commands.eval as eval_module

    answers = {0: ["\\boxed{204}", "\\boxed{7}"], 1: ["no box", "\\boxed{25}"], 2: ["\\boxed{809}", "\\boxed{809}"]}
    built = {}

    def fake_build_engine(name, model_path, **kwargs):
        built.update(name=name, model=model_path, **kwargs)
        return CannedEngine(answers)

    monkeypatch.setattr(eval_module, "build_engine", fake_build_engine)
    # math-verify imports lazily on first use; do that outside the verifier's time limit (busy CI machines)
    verifiers.get("math")("\\boxed{25}", "025", time_limit=60)
    out = tmp_path / "aime"
    argv = ["eval", "--model", "some/model", "--task", "math", "--data", str(shared_data / "math/test/aime.json"),
            "--limit", "3", "--n", "2", "--max-new-tokens", "8", "--output", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    assert built["name"] == "hf" and built["model"] == "some/model"
    report = json.loads((out / "report.json").read_text())
    assert report["num_problems"] == 3 and report["n"] == 2
    assert report["mean_at_n"] == pytest.approx(4 / 6)  # "025" == 25 for math-verify
    assert report["pass_at_k"]["2"] == pytest.approx(1.0)
    assert report["config"]["task"] == "math" and report["sampling"]["max_new_tokens"] == 8
    assert len((out / "samples.jsonl").read_text().splitlines()) == 6


def test_bad_data_fails_before_the_model_is_loaded(tmp_path, monkeypatch, capsys):
    import mmdps.commands.eval as eval_module

    monkeypatch.setattr(eval_module, "build_engine", lambda *a, **k: pytest.fail("engine built for bad data"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no question column here"}) + "\n")
    argv = ["eval", "--model", "m", "--task", "math", "--data", str(bad), "--output", str(tmp_path / "o")]
    assert cli_main(argv) == 2
    assert "bad.jsonl" in capsys.readouterr().err
