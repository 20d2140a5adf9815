"""Verifiers found by name without importing their package first: the ``mmdps.verifiers`` entry-point
group, and task packs (``mmdps.tasks`` entry points) that register their verifier when imported."""

import sys
from importlib.metadata import EntryPoint

import pytest

import mmdps.verifiers as verifiers
from mmdps.verifiers import verdict
from mmdps.verifiers.adapters import trl_reward_func, verl_compute_score


def says_yes(completion, ground_truth=None, **item):
    return verdict(acc=completion.strip() == str(ground_truth), format=True)


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(verifiers, "_REGISTRY", dict(verifiers._REGISTRY))
    monkeypatch.setattr(verifiers, "_BROKEN", {})

    def install(*entries):
        monkeypatch.setattr(verifiers, "entry_points", lambda group: [e for e in entries if e.group == group])

    return install


def test_an_entry_point_verifier_is_found_by_trl_and_verl(fresh_registry):
    fresh_registry(EntryPoint(name="exact", value=f"{__name__}:says_yes", group="mmdps.verifiers"))
    assert trl_reward_func("exact")(completions=["42", "41"], solution=["42", "42"]) == [1.0, 0.0]
    assert verl_compute_score("my/source", "42", "42", {"verifier": "exact"})["acc"] == 1.0
    assert "exact" in verifiers.available()


def test_a_pack_registers_its_verifier_when_discovered(fresh_registry, tmp_path, monkeypatch):
    module = tmp_path / "mmdps_test_modpack.py"
    module.write_text(
        "from mmdps.tasks import TaskPack\n"
        "from mmdps.verifiers import register, verdict\n\n"
        "@register('modular')\n"
        "def modular(completion, ground_truth=None, **item):\n"
        "    return verdict(acc=completion.strip() == str(ground_truth % 7), format=True)\n\n"
        "class ModPack(TaskPack):\n"
        "    name = 'modpack'\n"
        "    verifier = 'modular'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mmdps_test_modpack", raising=False)
    fresh_registry(EntryPoint(name="modpack", value="mmdps_test_modpack:ModPack", group="mmdps.tasks"))
    # nothing imported the pack: the look-up does
    assert verl_compute_score("modpack", "3", 10, {"verifier": "modular"})["acc"] == 1.0


def test_unknown_verifier_says_how_to_make_one_visible(fresh_registry):
    fresh_registry(EntryPoint(name="broken", value="mmdps_no_such_package:fn", group="mmdps.verifiers"))
    with pytest.raises(KeyError) as error:
        verifiers.get("mine")
    message = error.value.args[0]
    assert "unknown verifier 'mine'" in message and "mmdps.verifiers.register(name, fn)" in message
    assert '[project.entry-points."mmdps.verifiers"] mine = "your_package.module:function"' in message
    assert "mmdps.verifiers:broken failed to load" in message and "ModuleNotFoundError" in message
    assert verifiers.get("math") is not None  # a broken plug-in does not hide the others
