"""Plug-in verifiers get the built-ins' guarantees: they run in a worker process under a time limit (a
hang, ``sys.exit`` or a print costs one answer, not the run), a function a worker cannot import is
refused unless isolation is switched off, an exception scores 0 and is counted on every call, and a
plug-in that calls ``sys.exit`` while being imported is reported instead of killing discovery."""

from __future__ import annotations

import importlib.util
import sys
import time
import types
from importlib.metadata import EntryPoint

import pytest

from mmdps import tasks, verifiers
from mmdps.cli import main
from mmdps.data.item import Item
from mmdps.verifiers import base, isolation
from mmdps.verifiers.base import VerifierSetupError

PLUGIN = '''
import os, signal, sys, time

from mmdps import verifiers

def hang(completion, ground_truth, **item):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # not even the worker's own alarm stops it
    time.sleep(120)

def exits(completion, ground_truth, **item):
    sys.exit(3)

def chatty(completion, ground_truth, **item):
    print("debugging output on stdout", completion)
    return {"score": 1.0, "acc": 1.0, "format": 1.0}

def with_math(completion, ground_truth, **item):
    inner = verifiers.get("math")(completion, ground_truth)
    return {"score": inner["acc"] + 0.1, "acc": inner["acc"], "format": 1.0, }

def bad_gold(completion, ground_truth, **item):
    raise verifiers.GroundTruthError("ground truth must be an int")

def where(completion, ground_truth, **item):
    return {"score": float(os.getpid() % 997) / 997, "acc": 0.0, "format": float(item.get("flag", 0))}
'''


@pytest.fixture
def isolated(monkeypatch):
    """Isolation on (the suite runs plug-ins in-process), a fresh registry and a fresh pool of one worker."""
    monkeypatch.setenv("MMDPS_VERIFIER_ISOLATION", "1")
    monkeypatch.setattr(verifiers, "_REGISTRY", dict(verifiers._REGISTRY))
    pool = isolation.WorkerPool(size=1)
    monkeypatch.setattr(isolation, "_POOL", pool)
    yield pool
    pool.close()


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A plug-in module loaded from a file the worker cannot import by name (not on its sys.path)."""
    path = tmp_path / "mmdps_test_plugin_mod.py"
    path.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("mmdps_test_plugin_mod", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mmdps_test_plugin_mod", module)
    spec.loader.exec_module(module)
    return module


def test_a_plugin_that_hangs_exits_or_prints_costs_one_answer(isolated, plugin_module):
    for name in ("hang", "exits", "chatty", "with_math", "where", "bad_gold"):
        verifiers.register(f"plugin_{name}", getattr(plugin_module, name), time_limit=1.0)
    zero = {"score": 0.0, "acc": 0.0, "format": 0.0}
    # Its prints go to stderr, not into the worker's answer (this also starts the worker off the clock).
    assert verifiers.get("plugin_chatty")("x", "1") == {"score": 1.0, "acc": 1.0, "format": 1.0}
    timeouts, errors = base.timeout_count(), base.error_count()
    start = time.perf_counter()
    assert verifiers.get("plugin_hang")("x", "1") == zero
    assert time.perf_counter() - start < 1.0 + isolation.KILL_GRACE_S + 1.0
    assert base.timeout_count() == timeouts + 1 and base.error_count() == errors
    assert verifiers.get("plugin_exits")("x", "1") == zero  # SystemExit in the worker: an error, counted
    assert base.error_count() == errors + 1
    # A plug-in may call a built-in verifier inside its worker (nested under the worker's alarm).
    assert verifiers.get("plugin_with_math")(r"\boxed{\frac{1}{2}}", "0.5")["acc"] == 1.0
    # A bad ground truth in the worker is still the caller's error, not a counted one.
    with pytest.raises(verifiers.GroundTruthError, match="ground truth must be an int"):
        verifiers.get("plugin_bad_gold")("x", "1")
    # It ran in the worker, with the item's metadata as keywords.
    ran = verifiers.get("plugin_where")("x", "1", flag=1)
    assert ran["format"] == 1.0 and ran["score"] == float(isolated._idle[0].proc.pid % 997) / 997


def test_functions_a_worker_cannot_import_are_refused_unless_isolation_is_off(isolated, monkeypatch):
    def local(completion, ground_truth, **item):
        return {"score": 1.0, "acc": 1.0, "format": 1.0}

    with pytest.raises(VerifierSetupError, match=r"verifier 'mine'.*it is a closure or local function.*"
                                                 r"isolate=False.*MMDPS_VERIFIER_ISOLATION=0"):
        verifiers.register("mine", local)
    with pytest.raises(VerifierSetupError, match="it is a lambda"):
        verifiers.register("mine", lambda completion, ground_truth, **item: {})
    in_main = types.FunctionType(local.__code__, {}, "in_main")
    in_main.__module__, in_main.__qualname__ = "__main__", "in_main"
    with pytest.raises(VerifierSetupError, match=r"script being run \(__main__\).*move it into a module"):
        verifiers.register("mine", in_main)
    assert "mine" not in verifiers._REGISTRY
    # Explicitly in-process: accepted, and still guarded (an exception scores 0).
    verifiers.register("mine", local, isolate=False)
    assert verifiers.get("mine")("x", None)["acc"] == 1.0
    # Isolation switched off for the process, then back on before the first use: refused at that use.
    monkeypatch.setenv("MMDPS_VERIFIER_ISOLATION", "0")
    verifiers.register("later", local)
    assert verifiers.get("later")("x", None)["acc"] == 1.0
    monkeypatch.setenv("MMDPS_VERIFIER_ISOLATION", "1")
    with pytest.raises(VerifierSetupError, match="verifier 'later'.*closure"):
        verifiers.get("later")("x", None)
    monkeypatch.setenv("MMDPS_VERIFIER_ISOLATION", "maybe")
    with pytest.raises(VerifierSetupError, match=r"MMDPS_VERIFIER_ISOLATION='maybe' is not valid: use 1.*or 0"):
        verifiers.register("other", local)


def test_a_verifier_that_raises_scores_zero_and_is_counted_every_time(monkeypatch):
    monkeypatch.setattr(verifiers, "_REGISTRY", dict(verifiers._REGISTRY))
    calls = []

    def flaky(completion, ground_truth, **item):  # not wrapped in never_raise
        calls.append(completion)
        if len(calls) == 11:
            raise KeyError("eleventh")
        return {"score": 1.0, "acc": 1.0, "format": 1.0}

    item = Item(id=5, messages=[{"role": "user", "content": "q"}], ground_truth=1, verifier="flaky", task="t")
    errors = base.error_count()
    # Passed straight to score_completion (the trainer's path) and registered in-process: the same.
    scored = [verifiers.score_completion(item, "x", flaky).score for _ in range(12)]
    assert scored == [1.0] * 10 + [0.0, 1.0] and base.error_count() == errors + 1
    calls.clear()
    verifiers.register("flaky", flaky, isolate=False)
    scored = [verifiers.score_completion(item, "x").score for _ in range(12)]
    assert scored == [1.0] * 10 + [0.0, 1.0] and base.error_count() == errors + 2


def _exiting_module(tmp_path, monkeypatch, name, body=""):
    (tmp_path / f"{name}.py").write_text("import sys\nsys.exit(4)\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_a_plugin_calling_sys_exit_at_import_is_reported_not_fatal(tmp_path, monkeypatch, capsys):
    _exiting_module(tmp_path, monkeypatch, "mmdps_test_exiting_plugin")
    tasks.available()  # the built-in packs register now, in the real registry, not in the copy below
    monkeypatch.setattr(verifiers, "_REGISTRY", dict(verifiers._REGISTRY))
    monkeypatch.setattr(verifiers, "_BROKEN", {})
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(tasks, "_BROKEN", {})
    eps = [EntryPoint(name="exiting", value="mmdps_test_exiting_plugin:verify", group="mmdps.verifiers"),
           EntryPoint(name="exiting_pack", value="mmdps_test_exiting_plugin:Pack", group="mmdps.tasks")]
    monkeypatch.setattr(verifiers, "entry_points", lambda group: [e for e in eps if e.group == group])
    monkeypatch.setattr(tasks, "entry_points", lambda group: [e for e in eps if e.group == group])
    with pytest.raises(KeyError, match=r"mmdps_test_exiting_plugin:verify: SystemExit\(4\) \(the module called "
                                       r"sys.exit while being imported\)"):
        verifiers.get("exiting")
    assert verifiers.get("math") is not None
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert "countdown:" in out
    assert "exiting_pack: BROKEN" in out and "verifier exiting: BROKEN" in out
    assert "mmdps_test_exiting_plugin:Pack: SystemExit(4)" in out


def test_a_closure_entry_point_is_listed_as_broken(monkeypatch):
    monkeypatch.setenv("MMDPS_VERIFIER_ISOLATION", "1")
    monkeypatch.setattr(verifiers, "_REGISTRY", dict(verifiers._REGISTRY))
    monkeypatch.setattr(verifiers, "_BROKEN", {})
    ep = EntryPoint(name="lambda_ep", value=f"{__name__}:LAMBDA", group="mmdps.verifiers")
    monkeypatch.setattr(verifiers, "entry_points", lambda group: [ep] if group == ep.group else [])
    assert "NotIsolatable" in verifiers.broken()["mmdps.verifiers:lambda_ep"]


LAMBDA = lambda completion, ground_truth=None, **item: {"score": 1.0, "acc": 1.0, "format": 1.0}  # noqa: E731
