"""Finding packs by name, aliases, entry points, and the `mmdps tasks` command."""

from importlib.metadata import EntryPoint

import pytest

import mmdps.tasks as tasks
from mmdps.cli import main
from mmdps.commands.tasks import parse_options
from mmdps.tasks.countdown import CountdownPack
from mmdps.tasks.geometry import GeometryPack
from mmdps.tasks.math import MathPack


class EntryPointPack(tasks.TaskPack):
    name = "from_entry_point"
    verifier = "math"
    description = "a pack registered through an entry point"

    def load(self, source=None, **kwargs):
        return [self.make_item(id=0, question="1+1?", ground_truth="2")]


def test_builtin_packs_and_aliases():
    assert isinstance(tasks.get("math"), MathPack)
    assert isinstance(tasks.get("gsm8k"), MathPack)
    assert isinstance(tasks.get("countdown"), CountdownPack)
    assert isinstance(tasks.get("geometry3k"), GeometryPack) and isinstance(tasks.get("geo3k"), GeometryPack)
    assert {"math", "countdown", "geometry"} <= set(tasks.available())
    assert {(name, cls.verifier) for name, cls in tasks.available().items() if name in tasks.BUILTIN} == \
        {("math", "math"), ("countdown", "countdown"), ("geometry", "geometry"), ("visual", "integer")}
    with pytest.raises(KeyError, match="unknown task pack 'nope'; known packs: .*countdown"):
        tasks.get("nope")


def test_an_entry_point_pack_is_found(monkeypatch):
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    entry = EntryPoint(name="from_entry_point", value=f"{__name__}:EntryPointPack", group="mmdps.tasks")
    monkeypatch.setattr(tasks, "entry_points", lambda group: [entry] if group == "mmdps.tasks" else [])
    pack = tasks.get("from_entry_point")
    assert isinstance(pack, EntryPointPack) and pack.load()[0].ground_truth == "2"
    assert "from_entry_point" in tasks.available()


def test_cli_list_shows_packs_and_entry_points(capsys, monkeypatch):
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    entry = EntryPoint(name="from_entry_point", value=f"{__name__}:EntryPointPack", group="mmdps.tasks")
    monkeypatch.setattr(tasks, "entry_points", lambda group: [entry])
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    for text in ("math (aliases: gsm8k)", "countdown:", "geometry (aliases: geo3k, geometry3k)",
                 "verifier: countdown", "from_entry_point", "entry point (test_tasks_registry)"):
        assert text in out


def test_cli_show_generated_and_file_items(capsys, shared_data):
    assert main(["tasks", "show", "countdown", "--split", "cd4", "--n", "2", "--option", "max_target=50"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- item") == 2 and '"numbers": [' in out and "(2 item(s) shown)" in out
    assert main(["tasks", "show", "geometry", "--source", str(shared_data / "geometry3k_sample"), "--n", "1",
                 "--template", "plain"]) == 0
    out = capsys.readouterr().out
    assert "<image 250x251>" in out and "ground truth: \"80\"" in out and '"problem_type": "Angle"' in out


def test_cli_show_reports_errors(capsys, tmp_path):
    assert main(["tasks", "show", "math", "--source", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps tasks: error:") and "missing.json does not exist" in err
    assert main(["tasks", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdps tasks: error:") and "unknown task pack" in err


def test_parse_options():
    assert parse_options(["num=10", "levels=[0, 1]", "name=x", "flag=true"]) == \
        {"num": 10, "levels": [0, 1], "name": "x", "flag": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["oops"])


def test_a_broken_entry_point_pack_is_listed_with_its_error(capsys, monkeypatch):
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(tasks, "_BROKEN", {})
    good = EntryPoint(name="from_entry_point", value=f"{__name__}:EntryPointPack", group="mmdps.tasks")
    bad = EntryPoint(name="needs_missing_dep", value="mmdps_no_such_package.pack:Pack", group="mmdps.tasks")
    monkeypatch.setattr(tasks, "entry_points", lambda group: [bad, good])
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert "from_entry_point" in out and "countdown:" in out  # the others still work
    assert "needs_missing_dep: BROKEN" in out
    assert "mmdps_no_such_package.pack:Pack: ModuleNotFoundError: No module named 'mmdps_no_such_package'" in out
    assert isinstance(tasks.get("from_entry_point"), EntryPointPack)
    with pytest.raises(KeyError, match="'needs_missing_dep' is installed but fails to load: .*ModuleNotFoundError"):
        tasks.get("needs_missing_dep")
    assert main(["tasks", "show", "needs_missing_dep"]) == 2
    assert "fails to load" in capsys.readouterr().err
