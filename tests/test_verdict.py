"""One typed verdict and one scoring function: the trainer, the evaluation and the task packs agree on
what a completion scored and on what counts as correct."""

import numpy as np
import pytest

import mmdps.tasks as tasks
from mmdps import verifiers
from mmdps.data.item import Item
from mmdps.eval import evaluate_items
from mmdps.rollout.base import Completion, RolloutEngine, SamplingParams
from mmdps.trainer import Group
from mmdps.verifiers import MAX_ABS_SCORE, InvalidVerdictError, Verdict, base, is_correct, score_completion

PARTIAL = "verdict_test_partial"  # acc 0.5 for "half", 1 for "right", 0 otherwise
NO_FORMAT = "verdict_test_no_format"
RAISES = "verdict_test_raises"


@verifiers.register(PARTIAL)
def _partial(completion, ground_truth, **_):
    acc = {"right": 1.0, "half": 0.5}.get(completion, 0.0)
    return {"score": acc, "acc": acc, "format": 1.0}


@verifiers.register(NO_FORMAT)
def _no_format(completion, ground_truth, **_):
    return {"score": 1.0, "acc": 1.0}


@verifiers.register(RAISES)
def _raises(completion, ground_truth, **_):
    raise verifiers.GroundTruthError("ground truth must be an int")


def _item(verifier: str, id: int = 0) -> Item:
    return Item(id=id, messages=[{"role": "user", "content": "q"}], ground_truth=1, verifier=verifier, task="t")


class _Canned(RolloutEngine):
    def __init__(self, texts):
        self.texts = texts

    def generate(self, items, k, sampling):
        return [[Completion(text=self.texts[j % len(self.texts)], token_ids=[1], finish_reason="stop")
                 for j in range(k)] for _ in items]


def test_verdict_is_typed_and_correct_means_full_acc():
    verdict = score_completion(_item(PARTIAL), "right")
    assert verdict == Verdict(score=1.0, acc=1.0, format=1.0) and verdict.correct
    assert not score_completion(_item(PARTIAL), "half").correct  # partial credit is not correct
    assert verdict.as_dict() == {"score": 1.0, "acc": 1.0, "format": 1.0}
    assert Verdict.from_dict(verdict.as_dict()) == verdict
    assert is_correct(np.array([1.0, 0.5, 0.0])).tolist() == [True, False, False]


def test_trainer_eval_and_packs_count_the_same_completions_as_correct():
    texts = ["right", "half", "wrong", "right"]
    item = _item(PARTIAL)
    expected = [score_completion(item, t).correct for t in texts]
    assert expected == [True, False, False, True]
    # the pack
    pack = tasks.get("countdown")
    assert [pack.evaluate(item, t) for t in texts] == expected
    # the evaluation
    result = evaluate_items(_Canned(texts), [item], n=4, progress=False, sampling=SamplingParams(max_new_tokens=1))
    assert [s["correct"] for s in result.samples] == expected
    assert result.problems[0]["num_correct"] == sum(expected)
    # the trainer's success rate (what the selector sees)
    accs = np.array([score_completion(item, t).acc for t in texts])
    group = Group(position=0, completions=[], score=accs, acc=accs, format=np.ones(4))
    assert group.success_rate == pytest.approx(np.mean(expected))


def test_a_verdict_without_format_is_an_error_everywhere():
    item = _item(NO_FORMAT, id=7)
    with pytest.raises(ValueError, match=r"verdict_test_no_format.*item 7.*'format'"):
        score_completion(item, "x")
    with pytest.raises(ValueError, match="not a verdict"):
        evaluate_items(_Canned(["x"]), [item], n=1, progress=False)
    with pytest.raises(ValueError, match="not a verdict"):
        tasks.get("countdown").reward(item, "x")


def test_a_raising_verifier_is_reported_with_the_item():
    with pytest.raises(ValueError, match=r"verifier 'verdict_test_raises' failed on item 3 \(task 't'\): ground truth"):
        score_completion(_item(RAISES, id=3), "x")


class _ScriptedEngine:
    """Returns fixed texts per item id, whatever k (k must match)."""

    def __init__(self, texts: dict[int, list[str]]):
        self.texts, self.calls = texts, []

    def generate(self, items, k, sampling):
        self.calls.append(([item.id for item in items], k))
        return [[Completion(text=t, token_ids=[1], finish_reason="stop") for t in self.texts[item.id][:k]]
                for item in items]


@pytest.mark.parametrize("workers", [1, 3])
def test_rollout_and_score_is_the_one_scoring_path(workers):
    """The trainer, the evaluation and the benchmark score through rollout_and_score (score_completion per
    completion); a group's success rate is the share with acc >= 1 (partial credit 0.5 is not a success)."""
    from mmdps.rollout.base import SamplingParams
    from mmdps.rollout.scoring import rollout_and_score

    engine = _ScriptedEngine({0: ["right", "half"], 1: ["wrong", "right"]})
    scored = rollout_and_score(engine, [_item(PARTIAL, 0), _item(PARTIAL, 1)], 2, SamplingParams(),
                               reward_workers=workers, positions=[5, 7])
    assert [np.stack([g.score, g.acc, g.format], axis=1).tolist() for g in scored.groups] == \
        [[[1.0, 1.0, 1.0], [0.5, 0.5, 1.0]], [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]]
    assert [g.success_rate for g in scored.groups] == [0.5, 0.5]
    assert [g.position for g in scored.groups] == [5, 7] and [g.item.id for g in scored.groups] == [0, 1]
    with pytest.raises(ValueError, match="not a verdict"):
        rollout_and_score(_ScriptedEngine({0: ["x", "x"]}), [_item(NO_FORMAT)], 2, SamplingParams())


def test_rollout_and_score_takes_a_size_per_group():
    """Groups of different sizes: one generate call per distinct size, groups back in item order."""
    from mmdps.rollout.base import SamplingParams
    from mmdps.rollout.scoring import rollout_and_score

    texts = {i: ["right", "wrong", "right", "half"] for i in range(3)}
    engine = _ScriptedEngine(texts)
    scored = rollout_and_score(engine, [_item(PARTIAL, i) for i in range(3)], [4, 2, 0], SamplingParams())
    assert [g.size for g in scored.groups] == [4, 2, 0]
    assert sorted(engine.calls) == [([0], 4), ([1], 2)]
    assert scored.groups[0].success_rate == 0.5 and scored.groups[1].success_rate == 0.5
    with pytest.raises(ValueError, match="one non-negative size per item"):
        rollout_and_score(engine, [_item(PARTIAL, 0)], [2, 2], SamplingParams())


INVALID = "verdict_test_invalid"
BAD_VERDICTS = {
    "nan": {"score": float("nan"), "acc": 1.0, "format": 1.0},
    "inf": {"score": 1.0, "acc": 1.0, "format": float("inf")},
    "huge": {"score": 1e6, "acc": 1.0, "format": 1.0},
    "acc7": {"score": 1.0, "acc": 7, "format": 1.0},
    "acc-3": {"score": 1.0, "acc": -3, "format": 1.0},
    "string": {"score": 1.0, "acc": "1", "format": 1.0},
    "none": {"score": None, "acc": 1.0, "format": 1.0},
}
GOOD_VERDICTS = {
    "bools": ({"score": True, "acc": True, "format": False}, Verdict(1.0, 1.0, 0.0)),
    "numpy": ({"score": np.float32(0.5), "acc": np.int64(1), "format": np.float64(1)}, Verdict(0.5, 1.0, 1.0)),
    "shaped": ({"score": -1.0, "acc": 0.0, "format": 1.0}, Verdict(-1.0, 0.0, 1.0)),
    "bounds": ({"score": MAX_ABS_SCORE, "acc": 0.0, "format": 0.0}, Verdict(MAX_ABS_SCORE, 0.0, 0.0)),
}


@verifiers.register(INVALID)
def _invalid(completion, ground_truth, **_):
    return {**BAD_VERDICTS, **{k: v for k, (v, _) in GOOD_VERDICTS.items()}}[completion]


def test_invalid_verdict_values_score_zero_and_are_counted_with_one_warning(caplog):
    item = _item(INVALID, id=4)
    errors = base.error_count()
    base.new_run()
    with caplog.at_level("WARNING", logger="mmdps.verifiers.base"):
        for text in BAD_VERDICTS:
            assert score_completion(item, text) == Verdict(0.0, 0.0, 0.0), text
    assert base.error_count() - errors == len(BAD_VERDICTS)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1
    assert "verifier verdict_test_invalid returned an invalid verdict" in warned[0]
    assert "score nan, not a finite number" in warned[0] and "the verdict was {'score': nan" in warned[0]
    for text, (_, expected) in GOOD_VERDICTS.items():
        assert score_completion(item, text) == expected, text
    assert base.error_count() - errors == len(BAD_VERDICTS)


@pytest.mark.parametrize(("raw", "message"), [
    ({"score": float("nan"), "acc": 0, "format": 0}, "score nan, not a finite number"),
    ({"score": -1e6, "acc": 0, "format": 0}, r"score -1e\+06, outside \[-1000, 1000\]"),
    ({"score": 0, "acc": 7, "format": 0}, r"acc 7, outside \[0, 1\]"),
    ({"score": 0, "acc": 0, "format": -3}, r"format -3, outside \[0, 1\]"),
    ({"score": 0, "acc": "0.5", "format": 0}, r"acc '0.5' \(str\), not a number"),
])
def test_verdict_from_dict_refuses_bad_values(raw, message):
    with pytest.raises(InvalidVerdictError, match=message):
        Verdict.from_dict(raw, source="verifier 'x'")


def test_an_invalid_verdict_is_zero_in_the_evaluation_not_nan():
    result = evaluate_items(_Canned(["nan", "acc7", "bools"]), [_item(INVALID)], n=3, progress=False,
                            sampling=SamplingParams(max_new_tokens=1))
    assert [s["score"] for s in result.samples] == [0.0, 0.0, 1.0]
    assert result.report["verifier_errors"] == 2 and result.report["mean_at_n"] == pytest.approx(1 / 3)
    assert result.report["mean_score"] == pytest.approx(1 / 3)
