"""The Countdown pack: generator determinism and solvability, splits, loaders, bad rows."""

import ast
import json
import warnings
from collections import Counter
from fractions import Fraction

import pytest

import mmdps.tasks as tasks
from mmdps.tasks.countdown import CD4, CD34, TINY_LEVELS, generate_problems


def evaluate(expression: str) -> tuple[Fraction, list[int]]:
    """Exact value and the number literals of a + - * / expression, via ``ast`` (never ``eval``)."""
    used: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            ops = {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}
            if isinstance(node.op, ast.Div):
                return a / b
            return ops[type(node.op)]
        raise AssertionError(f"unexpected node {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval").body), used


@pytest.fixture(scope="module")
def pack():
    return tasks.get("countdown")


@pytest.mark.parametrize("levels", [(CD34,), (CD4,), TINY_LEVELS])
def test_every_reference_solution_reaches_the_target_with_each_number_once(levels):
    problems = generate_problems(300, levels=levels, seed=3)
    for p in problems:
        value, used = evaluate(p["solution"])
        assert value == p["target"], p
        assert Counter(used) == Counter(p["numbers"]), p
        config = levels[p["level"]]
        assert config.min_numbers <= len(p["numbers"]) <= config.max_numbers
        assert all(config.min_number <= n <= config.max_number for n in p["numbers"])
        assert config.min_target <= p["target"] <= config.max_target
        if "/" not in config.ops:
            assert "/" not in p["solution"]
    assert len({(p["target"], tuple(sorted(p["numbers"]))) for p in problems}) == len(problems)


def test_generator_is_deterministic_per_seed_and_split(pack):
    a = pack.load(None, split="cd34", num=40, seed=1)
    b = pack.load(None, split="cd34", num=40, seed=1)
    assert [(i.ground_truth, i.metadata) for i in a] == [(i.ground_truth, i.metadata) for i in b]
    assert [i.ground_truth for i in a] != [i.ground_truth for i in pack.load(None, split="cd34", num=40, seed=2)]
    train = [i.ground_truth for i in pack.load(None, split="train", num=40)]
    test = [i.ground_truth for i in pack.load(None, split="test", num=40)]
    assert train != test


def test_splits_and_options(pack):
    cd4 = pack.load(None, split="cd4", num=30)
    assert all(len(i.ground_truth["numbers"]) == 4 for i in cd4)
    cd34 = pack.load(None, split="cd34", num=200)
    assert {len(i.ground_truth["numbers"]) for i in cd34} == {3, 4}
    tiny = pack.load(None, split="tiny", num=200, levels=[1, 3])
    assert {i.metadata["difficulty"] for i in tiny} == {1, 3}
    assert all(max(i.ground_truth["numbers"]) <= 9 for i in tiny)
    narrow = pack.load(None, split="cd34", num=20, max_number=10, max_target=30)
    assert all(max(i.ground_truth["numbers"]) <= 10 and i.ground_truth["target"] <= 30 for i in narrow)
    with pytest.raises(ValueError, match="unknown countdown split 'cd9'"):
        pack.load(None, split="cd9", num=1)
    with pytest.raises(ValueError, match="levels 0..0"):
        pack.load(None, split="cd2", num=1, levels=[2])
    with pytest.raises(ValueError, match="'countdown' .*unknown load option 'colour'; valid options: levels, "):
        pack.load(None, num=1, colour=1)
    with pytest.raises(ValueError, match="could only generate"):
        pack.load(None, split="cd2", num=5000)  # more than the distinct 2-number problems in 1-20


def test_templates(pack):
    item = pack.load(None, split="cd2", num=1)[0]
    numbers = " ".join(map(str, item.ground_truth["numbers"]))
    assert f"Numbers: {numbers}. Target: {item.ground_truth['target']}." in item.text
    assert "<answer>" in item.text and "<think>" in item.text
    compact = tasks.get("countdown", template="compact").load(None, split="cd2", num=1)[0]
    assert compact.text == f"Numbers: {numbers}. Target: {item.ground_truth['target']}."
    base = tasks.get("countdown", template="base").load(None, split="cd2", num=1)[0]
    assert base.text.rstrip().endswith("<think>")


def test_reference_solutions_verify_when_the_verifier_is_present(pack):
    pytest.importorskip("mmdps.verifiers.countdown")
    for item in pack.load(None, split="cd34", num=50, seed=7):
        verdict = pack.reward(item, f"<think>...</think> <answer>{item.metadata['solution']}</answer>")
        assert verdict.acc == 1.0 and verdict.correct, item.metadata
    assert pack.reward(item, "<think>...</think> <answer>1 + 1</answer>").acc == 0.0


def test_file_rows_jsonl_parquet_and_verl(tmp_path, pack):
    pd = pytest.importorskip("pandas")
    rows = [{"target": 24, "nums": [4, 6, 1]}, {"target": "10", "nums": [5.0, 2]}]
    (tmp_path / "cd.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = pack.load(tmp_path / "cd.jsonl")
    assert [i.ground_truth for i in items] == [{"target": 24, "numbers": [4, 6, 1]}, {"target": 10, "numbers": [5, 2]}]
    assert "Numbers: 4 6 1. Target: 24." in items[0].text
    pd.DataFrame(rows[:1]).to_parquet(tmp_path / "cd.parquet")
    assert pack.load(tmp_path / "cd.parquet")[0].ground_truth == {"target": 24, "numbers": [4, 6, 1]}
    pd.DataFrame([{"data_source": "countdown", "prompt": [{"role": "user", "content": "raw base prompt <think>"}],
                   "reward_model": {"style": "rule", "ground_truth": {"target": 9, "numbers": [3, 3]}},
                   "extra_info": {"index": 2000}}]).to_parquet(tmp_path / "verl.parquet")
    item = pack.load(tmp_path / "verl.parquet")[0]
    assert (item.id, item.text) == (2000, "raw base prompt <think>")
    assert item.ground_truth == {"target": 9, "numbers": [3, 3]}


def test_bad_rows_name_the_file_and_row(tmp_path, pack):
    path = tmp_path / "cd.jsonl"
    path.write_text('{"target": 5, "nums": [2, 3]}\n{"nums": [1]}\n{"target": "x", "nums": [1]}\n')
    with pytest.raises(ValueError, match=r"cd\.jsonl line 2: missing field 'target'"):
        pack.load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = pack.load(path, skip_invalid=True)
    assert len(items) == 1 and "skipped 2 invalid row(s)" in str(caught[0].message)
