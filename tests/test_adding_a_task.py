"""The worked example of docs/adding_a_task.md is this test's pack, verbatim, and it works."""

import importlib
import json
import re
import sys
import warnings
from pathlib import Path

import pytest

import mmdps.tasks as tasks
from mmdps import verifiers
from mmdps.verifiers import Verdict

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "adding_a_task.md"
EXAMPLE = Path(__file__).with_name("example_pack.py")


@pytest.fixture
def example(monkeypatch):
    """Import the example pack with the task and verifier registries restored afterwards."""
    # Built-in packs register when their module is first imported; import them all now, so that a first
    # import during the test does not register them only into the copy restored away afterwards.
    for name in tasks.BUILTIN:
        tasks.get_class(name)
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(verifiers, "_REGISTRY", dict(verifiers._REGISTRY))
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    sys.modules.pop("example_pack", None)
    module = importlib.import_module("example_pack")
    yield module
    sys.modules.pop("example_pack", None)


def test_the_guide_includes_the_example_file_verbatim():
    blocks = re.findall(r"<!-- example_pack\.py -->\n```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/adding_a_task.md must hold one ```python block after <!-- example_pack.py -->"
    assert blocks[0] == EXAMPLE.read_text()


def test_the_example_pack_registers_loads_and_scores(example, tmp_path):
    pack = tasks.get("modmath")
    assert isinstance(pack, example.ModMathPack) and "modmath" in tasks.available()
    items = pack.load(None, num=20, seed=1)
    assert [i.id for i in items] == list(range(20))
    assert items == pack.load(None, num=20, seed=1)
    with pytest.raises(tasks.UnknownOptionError, match="nmu.*did you mean 'num'|nmu.*num") as typo:
        pack.load(None, nmu=5)  # a typo is a clear error naming the valid options, not a TypeError
    assert typo.value.valid == ["num"]
    with pytest.raises(tasks.UnknownOptionError, match="num"):
        pack.load(tmp_path / "any.jsonl", num=5)  # a generator option with a file
    item = items[0]
    a, b, m = map(int, re.findall(r"\d+", item.text)[:3])
    assert item.ground_truth == a * b % m
    assert pack.reward(item, f"<answer>{item.ground_truth}</answer>") == Verdict(score=1.0, acc=1.0, format=1.0)
    assert pack.reward(item, f"<answer>{item.ground_truth + m}</answer>").score == 0.1
    assert not pack.evaluate(item, "no tags")

    path = tmp_path / "modmath.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"a": 7, "b": 8, "m": 5}, {"a": 1, "b": 2}, {"a": 1, "b": 2,
                                                                                                   "m": 1}]))
    with pytest.raises(ValueError, match=r"modmath\.jsonl line 2: need integer fields"):
        pack.load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pack.load(path, skip_invalid=True)
    assert [i.ground_truth for i in loaded] == [1] and "skipped 2 invalid row(s)" in str(caught[0].message)
