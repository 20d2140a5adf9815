"""The math pack on the real shared data, verl / TRL rows, and its procedural generator."""

import ast
import json
import re
import warnings
from fractions import Fraction

import pytest

import mmdps.tasks as tasks
from mmdps.tasks.math import generate_problems, normalize_answer, parse_gsm8k_answer

TEST_SETS = {"aime": 30, "amc": 83, "math500": 500, "minerva": 272, "olympiad_bench": 675}


@pytest.fixture(scope="module")
def pack():
    return tasks.get("math")


@pytest.mark.parametrize("name,count", sorted(TEST_SETS.items()))
def test_deepscaler_test_sets_load_with_their_counts(shared_data, pack, name, count):
    items = pack.load(shared_data / "math" / "test" / f"{name}.json")
    assert len(items) == count
    assert [i.id for i in items] == list(range(count))
    assert all(i.verifier == "math" and i.task == "math" and i.metadata["source"] == name for i in items)
    assert all(isinstance(i.ground_truth, (str, list)) and i.ground_truth for i in items)
    assert "\\boxed{}" in items[0].messages[0]["content"]


def test_answers_are_normalised_from_floats_and_lists(shared_data, pack):
    amc = pack.load(shared_data / "math" / "test" / "amc.json", limit=1)
    assert amc[0].ground_truth == "142"  # stored as 142.0
    minerva = pack.load(shared_data / "math" / "test" / "minerva.json")
    assert minerva[0].ground_truth == "9.6"  # stored as ["9.6\n"]
    alternatives = [i.ground_truth for i in minerva if isinstance(i.ground_truth, list)]
    assert alternatives and all(len(a) > 1 for a in alternatives)  # equivalent forms kept for the verifier


def test_gsm8k_answers_come_after_the_hashes_without_commas(shared_data, pack):
    items = pack.load(shared_data / "gsm8k" / "test.jsonl")
    assert len(items) == 1319
    assert [i.ground_truth for i in items[:3]] == ["18", "3", "70000"]
    assert all("," not in i.ground_truth and "####" not in i.ground_truth for i in items)
    assert items[0].metadata["source"] == "gsm8k/test"
    assert parse_gsm8k_answer("so 1,234.\n#### 1,234") == "1234" and parse_gsm8k_answer("42") is None


def test_math_train_has_four_rows_without_answers(shared_data, pack):
    path = shared_data / "math" / "train.json"
    with pytest.raises(ValueError, match=r"train\.json row 886: the row has no answer.*skip_invalid=True"):
        pack.load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = pack.load(path, skip_invalid=True)
    assert len(items) == 7474 - 4
    assert len(caught) == 1 and "skipped 4 invalid row(s)" in str(caught[0].message)
    assert items[0].metadata["problem_type"] == "Algebra" and items[0].metadata["difficulty"] == 5.0


def test_gold_answers_verify_when_the_verifier_is_present(shared_data, pack):
    verifiers = pytest.importorskip("mmdps.verifiers")
    items = pack.load(shared_data / "math" / "test" / "math500.json", limit=20)
    for item in items:
        gold = item.ground_truth if isinstance(item.ground_truth, str) else item.ground_truth[0]
        assert pack.evaluate(item, f"The answer is \\boxed{{{gold}}}."), item.ground_truth
    assert "acc" in verifiers.get("math")("no box", items[0].ground_truth)


def test_verl_and_trl_rows(tmp_path, pack):
    pd = pytest.importorskip("pandas")
    pd.DataFrame([
        {"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": "What is 2+2? Think."}],
         "ability": "math", "reward_model": {"style": "rule", "ground_truth": "4"},
         "extra_info": {"split": "train", "index": 17}},
        {"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": "What is 3+3? Think."}],
         "ability": "math", "reward_model": {"style": "rule", "ground_truth": "6"},
         "extra_info": {"split": "train", "index": 3}},
    ]).to_parquet(tmp_path / "verl.parquet")
    items = pack.load(tmp_path / "verl.parquet")
    assert [(i.id, i.ground_truth) for i in items] == [(17, "4"), (3, "6")]
    assert items[0].messages == [{"role": "user", "content": "What is 2+2? Think."}]  # the prompt as given
    assert items[0].metadata["source"] == "openai/gsm8k"
    templated = pack.load(tmp_path / "verl.parquet", raw_prompt=False)
    assert "\\boxed{}" in templated[0].messages[0]["content"]

    (tmp_path / "trl.jsonl").write_text(json.dumps(
        {"prompt": [{"role": "user", "content": "Compute 5*5."}], "solution": "25"}) + "\n")
    item = pack.load(tmp_path / "trl.jsonl")[0]
    assert (item.id, item.ground_truth, item.text) == (0, "25", "Compute 5*5.")


def test_templates_and_system_prompt(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    item = tasks.get("math", template="think_boxed", system_prompt="You are careful.").load(tmp_path / "m.jsonl")[0]
    assert item.messages[0] == {"role": "system", "content": "You are careful."}
    assert item.messages[1]["content"].startswith("1+1?") and "<think>" in item.messages[1]["content"]
    with pytest.raises(ValueError, match="neither one of"):
        tasks.get("math", template="no field here")


def test_normalize_answer_rejects_empty_values():
    for bad in (None, "", "  ", [], True):
        with pytest.raises(ValueError, match="f row 2"):
            normalize_answer(bad, "f row 2")


# ------------------------------------------------------------------------------------------ generator
def _arithmetic(node: ast.AST) -> int:
    """Value of an integer + - * expression tree (no eval)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult):
        a, b = _arithmetic(node.left), _arithmetic(node.right)
        return a + b if isinstance(node.op, ast.Add) else a - b if isinstance(node.op, ast.Sub) else a * b
    raise AssertionError(f"unexpected node {ast.dump(node)}")


def _check(problem) -> bool:
    """Recompute the answer of a generated problem from its text, independently of the generator."""
    text, answer = problem["question"], Fraction(problem["answer"])
    if m := re.fullmatch(r"What is (\d+) ([+-]|\\times|\\div) (\d+)\?", text):
        a, op, b = int(m[1]), m[2], int(m[3])
        return answer == {"+": a + b, "-": a - b, "\\times": a * b, "\\div": Fraction(a, b)}[op]
    if m := re.match(r"Solve for \$x\$: \$(-?\d+)x ([+-]) (\d+) = (-?\d+)\$", text):
        a, b, c = int(m[1]), int(m[3]) * (1 if m[2] == "+" else -1), int(m[4])
        return a * answer + b == c
    if m := re.match(r"Compute \$\\frac\{(\d+)\}\{(\d+)\} ([+-]) \\frac\{(\d+)\}\{(\d+)\}\$", text):
        p, q = Fraction(int(m[1]), int(m[2])), Fraction(int(m[4]), int(m[5]))
        return answer == (p + q if m[3] == "+" else p - q) and answer.denominator != 1
    if m := re.fullmatch(r"Compute \$(.*)\$\.", text):
        return answer == _arithmetic(ast.parse(m[1].replace("\\times", "*"), mode="eval").body)
    raise AssertionError(f"unrecognised problem {text!r}")


def test_generator_is_seeded_distinct_and_exact():
    problems = generate_problems(300, seed=5)
    assert problems == generate_problems(300, seed=5)
    assert problems != generate_problems(300, seed=6)
    assert len({p["question"] for p in problems}) == 300
    assert {p["difficulty"] for p in problems} == {0, 1, 2, 3, 4}
    assert all(_check(p) for p in problems)
    assert {p["problem_type"] for p in generate_problems(40, levels=[3])} == {"linear_equation"}


def test_generated_items(pack):
    train = pack.load(None, split="train", num=50, seed=0, levels=[0, 1])
    test = pack.load(None, split="test", num=50, seed=0, levels=[0, 1])
    assert [i.id for i in train] == list(range(50))
    assert [i.text for i in train] != [i.text for i in test]
    assert {i.metadata["difficulty"] for i in train} <= {0, 1}
    assert len(pack.load(None, num=50, limit=7)) == 7
    with pytest.raises(ValueError, match="levels must be"):
        pack.load(None, num=5, levels=[9])
    with pytest.raises(ValueError, match="'math' .*unknown load option 'colour'"):
        pack.load(None, num=5, colour="red")
