"""The visual pack (digits and labelled triangles) and the ``integer`` verifier."""

from collections import Counter

import numpy as np
import pytest

import mmdps.tasks as tasks
from mmdps import verifiers
from mmdps.tasks.visual import DIGITS_SIZE, FIGURE_SIZE, LEVELS, digit_font
from mmdps.verifiers.base import GroundTruthError


@pytest.fixture(scope="module")
def items():
    return tasks.get("visual").load(None, num=140, seed=3)


def _ink(image) -> int:
    return int((np.asarray(image.convert("L")) < 128).sum())


def expected_answer(item) -> int:
    """The answer recomputed from the drawn facts, independently of the generator's own rule."""
    meta, question = item.metadata, item.text
    if "digits" in meta:
        d = meta["digits"]
        return {"digit=": d[0], "number=": int("".join(map(str, d))), "sum=": sum(d), "max=": max(d)}[question]
    angles, labelled = meta["angles"], meta["labelled"]
    if question == "third=":
        return 180 - sum(angles[i] for i in labelled)
    angle = angles[labelled[0]]
    return {"angle=": angle, "complement=": 90 - angle, "supplement=": 180 - angle}[question]


def test_every_level_mixed_evenly_with_correct_answers(items):
    assert Counter(i.metadata["problem_type"] for i in items) == {level: 20 for level in LEVELS}
    for item in items:
        assert item.ground_truth == expected_answer(item), item.metadata
        assert item.verifier == "integer" and item.task == "visual"
        image = item.messages[0]["content"][0]["image"]
        level = item.metadata["problem_type"]
        assert image.size == (DIGITS_SIZE if level in ("digit", "number", "sum", "max") else FIGURE_SIZE)
        assert _ink(image) > 50  # something is drawn
        if "angles" in item.metadata:
            angles = item.metadata["angles"]
            assert sum(angles) == 180 and min(angles) >= 20 and all(a % 10 == 0 for a in angles)
    questions = {i.text for i in items}
    assert {"complement=", "supplement="} <= questions
    assert all(i.ground_truth > 0 for i in items if i.text == "complement=")
    assert len({i.metadata["digits"][0] for i in items if i.text == "max="}) > 1
    assert all(len(set(i.metadata["digits"])) == 2 for i in items if i.text == "max=")


def test_seeded_split_aware_and_blank_twin(items):
    pack = tasks.get("visual")
    again = pack.load(None, num=140, seed=3)
    assert [i.ground_truth for i in again] == [i.ground_truth for i in items]
    assert np.array_equal(np.asarray(again[5].messages[0]["content"][0]["image"]),
                          np.asarray(items[5].messages[0]["content"][0]["image"]))
    other = pack.load(None, num=140, seed=3, split="test")
    assert [i.metadata for i in other] != [i.metadata for i in items]
    blank = pack.load(None, num=140, seed=3, blank=True)
    assert [(i.id, i.text, i.ground_truth) for i in blank] == [(i.id, i.text, i.ground_truth) for i in items]
    for twin, item in zip(blank, items, strict=True):
        image = twin.messages[0]["content"][0]["image"]
        assert image.size == item.messages[0]["content"][0]["image"].size and _ink(image) == 0


def test_level_subsets_step_and_bad_options():
    pack = tasks.get("visual")
    subset = pack.load(None, num=6, levels=["sum", 6])
    assert [i.metadata["problem_type"] for i in subset] == ["sum", "third"] * 3
    fives = pack.load(None, num=30, levels=["angle"], angle_step=5)
    assert all(a % 5 == 0 for i in fives for a in i.metadata["angles"])
    assert any(a % 10 for i in fives for a in i.metadata["angles"])
    assert len(pack.load(None, num=10, limit=4)) == 4
    with pytest.raises(ValueError, match="unknown visual level 'angles'"):
        pack.load(None, levels=["angles"])
    with pytest.raises(ValueError, match="angle_step must divide 180"):
        pack.load(None, angle_step=7)
    with pytest.raises(ValueError, match="generates its items"):
        pack.load("data.jsonl")
    with pytest.raises(ValueError, match="unknown load option 'nmu'"):
        pack.call_loader(pack.load, {"nmu": 3}, source=None)


def test_font_comes_from_matplotlib():
    import matplotlib

    assert digit_font(30).path.startswith(matplotlib.get_data_path())


@pytest.mark.parametrize("completion, acc, fmt", [
    ("42", 1.0, 1.0), (" 42\n", 1.0, 1.0), ("+42", 1.0, 1.0), ("042", 1.0, 1.0), ("43", 0.0, 1.0),
    ("42 42", 0.0, 0.0), ("42°", 0.0, 0.0), ("", 0.0, 0.0), ("x" * 10**6, 0.0, 0.0), ("4" * 100, 0.0, 0.0),
])
def test_integer_verifier(completion, acc, fmt):
    verdict = verifiers.get("integer")(completion, 42)
    assert verdict == {"score": acc, "acc": acc, "format": fmt}


def test_integer_verifier_rejects_bad_ground_truth():
    verify = verifiers.get("integer")
    assert verify("7", "7")["acc"] == 1.0
    for bad in (None, 4.5, "seven", True):
        with pytest.raises(GroundTruthError):
            verify("7", bad)


def test_draw_triangle_checks_its_input_and_labels_only_what_is_asked():
    from mmdps.tasks.geometry_procedural import draw_triangle

    plain = draw_triangle((60, 60, 60), [None, None, None], size=(112, 112))
    labelled = draw_triangle((60, 60, 60), ["60°", None, None], size=(112, 112), font_size=22)
    assert plain.size == labelled.size == (112, 112) and _ink(plain) > 0
    assert not np.array_equal(np.asarray(plain), np.asarray(labelled))  # an arc and a label were drawn
    with pytest.raises(ValueError, match="add up to 180"):
        draw_triangle((60, 60, 70), [None] * 3)
    with pytest.raises(ValueError, match="3 angles and 3 labels"):
        draw_triangle((90, 90), [None] * 2)


def test_an_unknown_option_is_named_with_its_close_match():
    """An unknown generator option is the packs' own UnknownOptionError (a clear CLI error, not a traceback)."""
    with pytest.raises(tasks.UnknownOptionError, match=r"unknown load option 'nmu'.*did you mean 'num'"):
        tasks.get("visual").load(None, nmu=3)
