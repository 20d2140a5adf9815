"""The geometry verifier on the ten real Geometry3K problems and on value/letter forms."""

import json

import pytest

from mmdps import verifiers
from mmdps.verifiers.base import GroundTruthError
from mmdps.verifiers.geometry import clean_value, parse_letter, to_number

LETTERS = "ABCD"


@pytest.fixture(scope="module")
def problems(shared_data):
    rows = [json.loads(p.read_text()) for p in sorted((shared_data / "geometry3k_sample").glob("*/data.json"))]
    assert len(rows) == 10
    return rows


def _boxed(answer):
    return f"<think>Angles, sides, then the options.</think> The answer is $\\boxed{{{answer}}}$."


def test_gold_letter_and_gold_value_verify(problems):
    geo = verifiers.get("geometry")
    for row in problems:
        choices, gold = row["choices"], row["answer"]
        value = choices[LETTERS.index(gold)]
        full = {"score": 1.0, "acc": 1.0, "format": 1.0}
        assert geo(_boxed(gold), gold, choices=choices, problem_type_goal=row["problem_type_goal"]) == full, row["id"]
        assert geo(_boxed(f"({gold})"), gold, choices=choices) == full, row["id"]
        assert geo(_boxed(value), gold, choices=choices) == full, (row["id"], value)
        # the gold given as its value (EasyR1 / hiyouga layout) with or without the choices
        assert geo(_boxed(gold), value, choices=choices)["acc"] == 1.0, row["id"]
        assert geo(_boxed(value), value)["acc"] == 1.0, row["id"]
        assert geo(f"So the answer is {gold}. Answer: {gold}", gold, choices=choices)["acc"] == 1.0, row["id"]


def test_wrong_letter_and_wrong_value_fail(problems):
    geo = verifiers.get("geometry")
    for row in problems:
        choices, gold = row["choices"], row["answer"]
        wrong = next(letter for letter in LETTERS if letter != gold)
        assert geo(_boxed(wrong), gold, choices=choices) == {"score": 0.1, "acc": 0.0, "format": 1.0}, row["id"]
        assert geo(_boxed(choices[LETTERS.index(wrong)]), gold, choices=choices)["acc"] == 0.0, row["id"]
        assert geo(_boxed("1000"), gold, choices=choices)["acc"] == 0.0, row["id"]
        assert geo("no answer at all", gold, choices=choices) == {"score": 0.0, "acc": 0.0, "format": 0.0}


@pytest.mark.parametrize("answer, gold", [
    (r"3\sqrt{2}", r"3\sqrt{2}"), ("4.243", r"3\sqrt{2}"), (r"\sqrt{18}", r"3\sqrt{2}"),
    ("2.5", r"\frac{5}{2}"), (r"\dfrac{5}{2}", r"\frac{5}{2}"), ("5/2", r"\frac{5}{2}"),
    (r"60^\circ", "60"), (r"60^{\circ}", "60"), ("60°", "60"), ("60 degrees", "60"),
    (r"12.5 \text{ cm}", "12.5"), (r"12.5\text{ units}", "12.5"), (r"24 \mathrm{cm}^2", "24"),
    ("x = 4", "4"), (r"m \angle ABC = 35", "35"), ("1,200", "1200"), (r"\text{B}", "B"), ("B.", "B"),
])
def test_value_forms(answer, gold):
    assert verifiers.get("geometry")(_boxed(answer), gold)["acc"] == 1.0


@pytest.mark.parametrize("answer, gold", [("4.2", r"3\sqrt{2}"), ("61", "60"), ("2.6", r"\frac{5}{2}"),
                                          ("x", "4"), ("B", "A"), ("12.5", "125")])
def test_wrong_values(answer, gold):
    assert verifiers.get("geometry")(_boxed(answer), gold)["acc"] == 0.0


def test_value_maps_to_nearest_choice_within_tolerance():
    geo = verifiers.get("geometry")
    choices = [r"\frac { \sqrt { 2 } } { 10 }", r"\frac { \sqrt { 2 } } { 5 }", "1", "2"]
    assert geo(_boxed("0.283"), "B", choices=choices)["acc"] == 1.0  # sqrt(2)/5 = 0.2828
    assert geo(_boxed("0.35"), "B", choices=choices)["acc"] == 0.0   # nearest is B but 24% away
    assert geo(_boxed("C"), "1", choices=choices)["acc"] == 1.0       # letter -> value gold


def test_format_requires_think_then_box():
    geo = verifiers.get("geometry")
    assert geo(r"\boxed{12}", "12") == {"score": 1.0, "acc": 1.0, "format": 0.0}
    assert geo(r"\boxed{13}", "12") == {"score": 0.0, "acc": 0.0, "format": 0.0}
    assert geo(r"<think>a</think>\boxed{13}", "12") == {"score": 0.1, "acc": 0.0, "format": 1.0}


def test_helpers_and_errors():
    assert parse_letter("(C)") == "C" and parse_letter("C: 14") == "C" and parse_letter("Cat") is None
    assert parse_letter("D", "ABC") is None
    assert clean_value(r"$x = 12 \text{ cm}$") == "12"
    assert to_number(r"\frac{\sqrt{2}}{2}") == pytest.approx(0.70710678)
    assert to_number("hello") is None
    with pytest.raises(GroundTruthError, match="geometry ground truth"):
        verifiers.get("geometry")(_boxed("1"), {"answer": "A"})
    with pytest.raises(GroundTruthError, match="choices"):
        verifiers.get("geometry")(_boxed("1"), "A", choices="ABCD")
