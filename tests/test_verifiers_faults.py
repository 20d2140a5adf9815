"""Verifier faults found by hostile probing: numpy fields, equations that state no value, NaN golds,
swallowed exceptions that must be counted (the worker pool's faults: test_verifiers_pool.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mmdps import verifiers
from mmdps.verifiers import base
from mmdps.verifiers.base import GroundTruthError

THINK = "<think>reasoning</think> "


def test_geometry_choices_may_be_any_sequence_including_numpy_arrays():
    geometry = verifiers.get("geometry")
    for choices in (["3", "5", "7"], ("3", "5", "7"), np.array(["3", "5", "7"]), np.array([3.0, 5.0, 7.0])):
        assert geometry(THINK + r"\boxed{B}", "B", choices=choices)["acc"] == 1.0, type(choices)
        assert geometry(THINK + r"\boxed{5}", "B", choices=choices)["acc"] == 1.0, type(choices)
        assert geometry(THINK + r"\boxed{C}", "B", choices=choices)["acc"] == 0.0, type(choices)
    with pytest.raises(GroundTruthError, match="choices must be a list"):
        geometry(r"\boxed{B}", "B", choices=3)


@pytest.mark.parametrize("name", ["math", "geometry"])
def test_an_equation_counts_only_when_its_left_side_is_a_name(name):
    verify = verifiers.get(name)
    for right in (r"x = 2", r"y_1 = 2", r"m\angle ABC = 2", r"\theta = 2", r"AB = 2", "P(A) = 2", "x = 1 + 1 = 2"):
        assert verify(THINK + rf"\boxed{{{right}}}", "2")["acc"] == 1.0, right
    for wrong in ("1 = 2", "2 = 2", "3 = 2", "1 + 1 = 2", r"\frac{4}{2} = 2", "= 2"):
        assert verify(THINK + rf"\boxed{{{wrong}}}", "2")["acc"] == 0.0, wrong


def test_equation_helpers():
    from mmdps.verifiers.math import equation_value, is_name

    assert equation_value("x = 4") == "4" and equation_value("4") == "4" and equation_value("1 = 2") is None
    assert equation_value(r"\{x \mid x = 2\}") == r"\{x \mid x = 2\}"  # "=" inside brackets is not the answer's
    assert equation_value("x <= 2") == "x <= 2"
    assert is_name(r"\overline{CD}") and is_name("f(3)") and not is_name("3x") and not is_name(r"\pi")
    assert verifiers.get("math")(r"\boxed{y = 2x + 1}", "y = 2x + 1")["acc"] == 1.0  # equation golds still compare


@pytest.mark.parametrize("name", ["math", "geometry"])
def test_a_nan_gold_is_a_ground_truth_error_not_a_reward_for_nan(name):
    with pytest.raises(GroundTruthError, match="not a finite number"):
        verifiers.get(name)(r"\boxed{nan}", float("nan"))
    with pytest.raises(GroundTruthError, match="not a finite number"):
        verifiers.get(name)(r"\boxed{nan}", np.float64("nan"))


def test_numpy_golds_from_parquet_rows_are_plain_values():
    assert verifiers.get("math")(r"\boxed{2}", np.int64(2))["acc"] == 1.0
    assert verifiers.get("math")(r"\boxed{2}", np.array(["2", "x=2"]))["acc"] == 1.0
    assert verifiers.get("geometry")(r"\boxed{2}", np.int64(2))["acc"] == 1.0
    countdown = verifiers.get("countdown")
    assert countdown("<think>a</think><answer>1+2</answer>",
                     {"target": np.int64(3), "numbers": np.array([1, 2])})["acc"] == 1.0


def test_verifier_exceptions_are_counted_and_the_first_of_a_run_is_a_warning(caplog):
    @verifiers.register("test_broken_verifier")
    @base.never_raise
    def broken(completion, ground_truth, /, **item):
        raise KeyError("choices")

    base.new_run()
    before = base.error_count()
    with caplog.at_level(logging.WARNING, logger="mmdps.verifiers.base"):
        for _ in range(3):
            assert verifiers.get("test_broken_verifier")("x", "1") == {"score": 0.0, "acc": 0.0, "format": 0.0}
    assert base.error_count() - before == 3
    warned = [r for r in caplog.records if r.name == "mmdps.verifiers.base"]
    assert len(warned) == 1 and "raised KeyError" in warned[0].getMessage()
    assert "reward/verifier_errors" in warned[0].getMessage()
    caplog.clear()
    base.new_run()
    with caplog.at_level(logging.WARNING, logger="mmdps.verifiers.base"):
        verifiers.get("test_broken_verifier")("x", "1")
    assert len(caplog.records) == 1  # a new run warns again
    # A time-out is the limit working, not an error.
    before = base.error_count()
    verifiers.get("math")(r"\boxed{9^{9^{9}}}", "5", time_limit=0.3)
    assert base.error_count() == before
