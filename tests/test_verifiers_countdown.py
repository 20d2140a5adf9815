"""The Countdown verifier: correct, wrong, malformed and hostile answers."""

import itertools
import random
from fractions import Fraction

import pytest

from mmdps import verifiers
from mmdps.verifiers.base import GroundTruthError

GT = {"target": 24, "numbers": [2, 3, 4, 1]}
CORRECT = {"score": 1.0, "acc": 1.0, "format": 1.0}
WRONG = {"score": 0.1, "acc": 0.0, "format": 1.0}
NO_TAG = {"score": 0.0, "acc": 0.0, "format": 0.0}


@pytest.mark.parametrize("answer", ["(2+3+1)*4", "2*3*4*1", " 2 * 3 * 4 / 1 ", "4*(3+2+1)", "((2*3)*(4*1))"])
def test_correct(answer):
    assert verifiers.get("countdown")(f"<think>...</think><answer>{answer}</answer>", GT) == CORRECT


@pytest.mark.parametrize("answer", [
    "2*3*4",            # a number unused
    "2*3*4*1*1",        # a number used twice
    "2*3*4+1",          # wrong value
    "(2+3+1)*4 = 24",   # "=" is not allowed (as in the paper's reward)
    "2*3*4**1",         # power
    "-2+3*4*1",         # unary minus
    "2*3*4.0*1",        # float literal
    "2*3*4//1",         # floor division
    "24",               # the target itself
    "(2+3+1)*4/0",      # division by zero (also wrong numbers)
    "4/(1-1)*2*3",      # division by zero, right numbers... but 1 used twice
    "",                 # empty answer
    "__import__('os').system('echo hi')",
    "(2).__class__",
    "abs(2)*3*4*1",
    "9**9**9**9",
    "(" * 300 + "2" + ")" * 300,
])
def test_wrong_or_malformed_gets_format_score(answer):
    assert verifiers.get("countdown")(f"<answer>{answer}</answer>", GT) == WRONG


def test_exact_rational_arithmetic():
    # 4 / (1 - 2/3) = 12 exactly; floats would give 11.999999999999998 (still within 1e-5, but
    # Fraction makes the check exact) and 1/3*3 forms must not pass by rounding luck.
    assert verifiers.get("countdown")("<answer>4/(1-2/3)</answer>", {"target": 12, "nums": [4, 1, 2, 3]}) == CORRECT
    assert verifiers.get("countdown")("<answer>1/3+1</answer>", {"target": 1, "nums": [1, 3, 1]}) == WRONG


def test_last_answer_tag_counts_and_no_tag():
    cd = verifiers.get("countdown")
    assert cd("<answer>2*3*4</answer> wait <answer>2*3*4*1</answer>", GT) == CORRECT
    assert cd("<answer>2*3*4*1</answer> wait <answer>2*3*4</answer>", GT) == WRONG
    assert cd("2*3*4*1", GT) == NO_TAG
    assert cd("<answer>2*3*4*1", GT) == NO_TAG


def test_ground_truth_forms_and_errors():
    cd = verifiers.get("countdown")
    completion = "<answer>2*3*4*1</answer>"
    assert cd(completion, {"target": 24, "nums": (2, 3, 4, 1)}) == CORRECT
    assert cd(completion, None, target=24, numbers=[1, 2, 3, 4]) == CORRECT  # from item metadata
    assert cd(completion, 24, nums=[1, 2, 3, 4], unknown_field="ignored") == CORRECT
    with pytest.raises(GroundTruthError, match="target and numbers"):
        cd(completion, {"numbers": [1, 2]})
    with pytest.raises(GroundTruthError, match="integers"):
        cd(completion, {"target": 3, "numbers": [1.5, 2]})


def _solve(numbers, target):
    """Brute-force one expression that reaches target (small cases only), or None."""
    def exprs(nums):
        if len(nums) == 1:
            yield str(nums[0]), Fraction(nums[0])
            return
        for i in range(1, len(nums)):
            for left in itertools.combinations(range(len(nums)), i):
                a = [nums[k] for k in left]
                b = [nums[k] for k in range(len(nums)) if k not in left]
                for ea, va in exprs(a):
                    for eb, vb in exprs(b):
                        yield f"({ea}+{eb})", va + vb
                        yield f"({ea}-{eb})", va - vb
                        yield f"({ea}*{eb})", va * vb
                        if vb != 0:
                            yield f"({ea}/{eb})", va / vb
    return next((e for e, v in exprs(numbers) if v == target), None)


def test_random_solvable_problems_verify():
    rng = random.Random(0)
    cd = verifiers.get("countdown")
    for _ in range(20):
        numbers = [rng.randint(1, 20) for _ in range(3)]
        a, b, c = numbers
        target = (a + b) * c
        solution = _solve(numbers, target)
        assert solution is not None
        assert cd(f"<answer>{solution}</answer>", {"target": target, "numbers": numbers}) == CORRECT
        assert cd(f"<answer>{solution}+1</answer>", {"target": target, "numbers": numbers}) == WRONG
