"""The ground-truth self-check: items' own golds, written as each pack's reference answer and scored with
the run's reward, pass for a right column mapping and fail loudly, with examples, for a wrong one."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from mmdps import tasks
from mmdps.data.sanity import GroundTruthCheckError, check_reward_on_ground_truth
from mmdps.tasks.countdown import solve
from mmdps.verifiers import Verdict

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIGHTEVAL = [{"problem": f"What is {i}+{i}?", "level": "Level 1", "type": "Algebra",
              "solution": f"We add the two numbers and get ${i}+{i}=\\boxed{{{2 * i}}}$, which is the answer."}
             for i in range(1, 21)]


def test_a_right_mapping_passes_and_the_solution_column_as_the_answer_fails(tmp_path):
    right = tmp_path / "right.jsonl"
    right.write_text("".join(json.dumps({"problem": r["problem"], "answer": str(2 * i)}) + "\n"
                             for i, r in enumerate(LIGHTEVAL, start=1)))
    pack = tasks.get("math")
    result = check_reward_on_ground_truth(pack.load(right), pack)
    assert (result.checked, result.failed) == (20, 0) and "20/20" in result.summary()

    wrong = tmp_path / "lighteval.jsonl"  # no answer column: the loader falls back to the solution text
    wrong.write_text("".join(json.dumps(r) + "\n" for r in LIGHTEVAL))
    items = pack.load(wrong)
    with pytest.raises(GroundTruthCheckError, match=r"20 of 20 sampled items are not rewarded as correct") as caught:
        check_reward_on_ground_truth(items, pack)
    message = str(caught.value)
    assert message.count("\n  item ") == 5 and "(lighteval row 0): ground truth 'We add the two" in message


def test_the_wrong_reward_for_the_task_fails(tmp_path):
    pack = tasks.get("math")
    items = [pack.make_item(id=i, question="q", ground_truth=str(i)) for i in range(10)]

    def countdown_reward(item, completion):  # a config pairing math data with another task's reward
        return Verdict(score=0.0, acc=0.0, format=0.0)

    with pytest.raises(GroundTruthCheckError, match="10 of 10"):
        check_reward_on_ground_truth(items, pack, score_fn=countdown_reward)


def test_countdown_rows_without_a_solution_get_one_found_and_unsolvable_ones_fail(tmp_path):
    assert solve(24, [4, 7, 8, 8]) is not None and solve(1000, [1, 2]) is None
    pack = tasks.get("countdown")
    rows = [{"target": 24, "nums": [4, 7, 8, 8]}, {"target": 98, "nums": [44, 19, 35]}]
    path = tmp_path / "cd.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert check_reward_on_ground_truth(pack.load(path), pack).failed == 0
    swapped = tmp_path / "swapped.jsonl"  # the target taken from the wrong field: unsolvable
    swapped.write_text("".join(json.dumps({"target": 1000 + i, "nums": [1, 2, 3]}) + "\n" for i in range(4)))
    with pytest.raises(GroundTruthCheckError, match=r"no expression of \[1, 2, 3\] reaches the target 1000"):
        check_reward_on_ground_truth(pack.load(swapped), pack)
    generated = pack.load(None, split="tiny", num=50)
    assert check_reward_on_ground_truth(generated, pack).failed == 0


def test_a_few_odd_golds_pass_under_the_share_and_sampling_is_bounded():
    pack = tasks.get("math")
    items = [pack.make_item(id=i, question="q", ground_truth=str(i)) for i in range(300)]
    items[3].ground_truth = "first line\nsecond line of a solution"
    result = check_reward_on_ground_truth(items, pack, sample=300)
    assert (result.checked, result.failed) == (300, 1) and "item 3" in result.examples[0]
    assert check_reward_on_ground_truth(items, pack, sample=256).checked == 256
    with pytest.raises(GroundTruthCheckError):
        check_reward_on_ground_truth(items[:4], pack, max_fail_share=0.2)


def test_a_pack_that_writes_no_references_is_skipped_not_failed():
    pack = tasks.get("math")
    items = [pack.make_item(id=i, question="q", ground_truth="1") for i in range(5)]
    for item in items:
        item.verifier = "a_custom_verifier"
    result = check_reward_on_ground_truth(items, pack)
    assert result.checked == 0 and "skipped" in result.summary()


def test_geometry_references_name_the_value():
    pack = tasks.get("geometry")
    item = pack.make_item(id=0, question="Find x.", ground_truth="\\frac{5}{2}")
    assert pack.reward(item, pack.reference_completion(item)).correct


@pytest.mark.skipif(not (SHARED_DATA / "math").is_dir(), reason="the real MATH files are not here")
@pytest.mark.parametrize("name", ["train.json", "test/minerva.json", "test/olympiad_bench.json", "test/amc.json"])
def test_the_real_math_golds_pass(name):
    pack = tasks.get("math")
    with pytest.warns(UserWarning) if name == "train.json" else contextlib.nullcontext():
        items = pack.load(SHARED_DATA / "math" / name, skip_invalid=True)
    assert check_reward_on_ground_truth(items, pack, sample=64).failed == 0

