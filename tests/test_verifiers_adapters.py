"""The TRL, verl and EasyR1 adapters."""

import numpy as np
import pytest

from mmdps.verifiers.adapters import (
    completion_text,
    easyr1_compute_score,
    make_verl_compute_score,
    trl_reward_func,
    verifier_for_data_source,
    verl_compute_score,
    verl_compute_score_batch,
)


def test_trl_reward_conversational_and_plain():
    reward = trl_reward_func("math")
    assert reward.__name__ == "math"
    conversational = [[{"role": "assistant", "content": "so \\boxed{\\frac12}"}],
                      [{"role": "assistant", "content": "so \\boxed{3}"}]]
    prompts = [[{"role": "user", "content": "q"}]] * 2
    assert reward(prompts, conversational, solution=["0.5", "0.5"], trainer_state=object()) == [1.0, 0.0]
    assert reward(prompts=["q", "q"], completions=["\\boxed{2}", "no"], ground_truth=["x=2", "2"]) == [1.0, 0.0]
    assert reward(["q"], ["\\boxed{2}"], answer=[None]) == [None]  # not applicable row


def test_trl_reward_passes_row_metadata_and_picks_key():
    geo = trl_reward_func("geometry", key="acc")
    assert geo.__name__ == "geometry_acc"
    completions = ["\\boxed{13}", "<think>x</think>\\boxed{A}"]
    choices = [["12", "13", "14", "15"]] * 2
    assert geo(None, completions, answer=["B", "B"], choices=choices) == [1.0, 0.0]
    fmt = trl_reward_func("geometry", key="format")
    assert fmt(None, completions, answer=["B", "B"], choices=choices) == [0.0, 1.0]
    countdown = trl_reward_func("countdown")
    # TinyZero-style columns: target and nums, no ground-truth column
    assert countdown(None, ["<answer>2*3*4*1</answer>", "<answer>2*3</answer>"], target=[24, 24],
                     nums=[[1, 2, 3, 4]] * 2) == [1.0, 0.1]


def test_trl_reward_errors():
    with pytest.raises(ValueError, match="ground-truth column"):
        trl_reward_func("math")(None, ["\\boxed{1}"], problem=["q"])
    with pytest.raises(ValueError, match="key must be"):
        trl_reward_func("math", key="reward")
    with pytest.raises(KeyError):
        trl_reward_func("nope")


def test_completion_text():
    assert completion_text("x") == "x"
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "ab"
    assert completion_text({"role": "assistant", "content": "y"}) == "y"
    assert completion_text(None) == ""


def test_verl_compute_score_dispatch():
    assert verifier_for_data_source("countdown_cd4") == "countdown"
    assert verifier_for_data_source("hiyouga/geometry3k") == "geometry"
    assert verifier_for_data_source("geo3k") == "geometry"
    assert verifier_for_data_source("openai/gsm8k") == "math_hashes"
    assert verifier_for_data_source("DigitalLearningGmbH/MATH-lighteval") == "math"
    assert verifier_for_data_source("aime2024") == verifier_for_data_source("math_dapo") == "math_answer"
    assert verifier_for_data_source(None) == "math"
    # verl's gsm8k rows ask for the answer after "####" (examples/data_preprocess/gsm8k.py)
    right = "Natalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72 clips.\n#### 72"
    assert verl_compute_score("openai/gsm8k", right, "72") == {"score": 1.0, "acc": 1.0, "format": 1.0}
    assert verl_compute_score("openai/gsm8k", "so #### 1,234.", "1234")["acc"] == 1.0
    assert verl_compute_score("openai/gsm8k", "#### 71\n", "72") == {"score": 0.0, "acc": 0.0, "format": 1.0}
    assert verl_compute_score("openai/gsm8k", "#### 5 then #### 72", "72")["acc"] == 1.0  # the last one counts
    assert verl_compute_score("openai/gsm8k", "... \\boxed{18}", "18") == {"score": 1.0, "acc": 1.0, "format": 0.0}
    assert verl_compute_score("openai/gsm8k", "the answer is 72", "72")["acc"] == 0.0
    # DAPO's layout: "Answer: $Answer" on the last line
    assert verl_compute_score("math_dapo", "... so\nAnswer: \\frac{1}{2}", "0.5") == {"score": 1.0, "acc": 1.0,
                                                                                       "format": 1.0}
    assert verl_compute_score("aime2025", "Answer: $204$.", "204")["acc"] == 1.0
    assert verl_compute_score("HuggingFaceH4/MATH-500", "#### 18", "18")["acc"] == 0.0  # asks for \\boxed{}
    gt = {"target": 24, "numbers": np.array([2, 3, 4, 1])}  # parquet rows come back as numpy arrays
    assert verl_compute_score("countdown", "<answer>2*3*4*1</answer>", gt, {"index": 3})["score"] == 1.0
    assert verl_compute_score("hiyouga/geometry3k", "<think>x</think>\\boxed{13}", "B",
                              {"index": 0, "choices": ["12", "13", "14", "15"]})["acc"] == 1.0
    # extra_info may name the verifier explicitly
    assert verl_compute_score("mixed", "<answer>2*3*4*1</answer>", gt, {"verifier": "countdown"})["acc"] == 1.0


def test_verl_bound_and_batch_and_easyr1():
    score = make_verl_compute_score("math_think")
    assert score("anything", "<think>..</think>\\boxed{2}", "2")["acc"] == 1.0
    assert score("anything", "\\boxed{2}", "2")["acc"] == 0.0
    out = verl_compute_score_batch(["gsm8k", "countdown"], ["\\boxed{1}", "<answer>1+2</answer>"],
                                   ["1", {"target": 3, "nums": [1, 2]}])
    assert [o["acc"] for o in out] == [1.0, 1.0]
    res = easyr1_compute_score([{"response": "<think>a</think>\\boxed{2}", "response_length": 9, "ground_truth": "2"}],
                               verifier="geometry")
    assert res == [{"overall": 1.0, "format": 1.0, "accuracy": 1.0}]


def test_trl_reward_names_its_verifier_and_shares_verdicts_with_its_acc(monkeypatch):
    import mmdps.verifiers as verifiers
    from mmdps.verifiers.adapters import trl_accuracy_reward

    calls = []

    def shaped(completion, ground_truth, **item):
        calls.append(completion)
        right = completion == ground_truth
        return {"score": 1.0 if right else 0.1, "acc": float(right), "format": 1.0}

    monkeypatch.setitem(verifiers._REGISTRY, "shaped_for_adapter_test", shaped)
    score = trl_reward_func("shaped_for_adapter_test", strict=True)
    assert (score.mmdps_verifier, score.mmdps_key, score.mmdps_verifier_kwargs) == (
        "shaped_for_adapter_test", "score", {"strict": True})
    acc = trl_accuracy_reward(score)
    assert acc.__name__ == "shaped_for_adapter_test_acc" and acc.mmdps_key == "acc"
    completions, answers = ["a", "b"], ["a", "a"]
    assert score(None, completions, answer=answers) == [1.0, 0.1]
    assert acc(None, completions, answer=answers) == [1.0, 0.0]
    assert calls == ["a", "b"]  # TRL passes the same objects to both: graded once
    assert acc(None, ["b", "a"], answer=answers) == [0.0, 1.0] and len(calls) == 4  # new completions: graded
    with pytest.raises(ValueError, match="not an mmdps trl_reward_func"):
        trl_accuracy_reward(lambda completions, **kw: [1.0])
