"""Crash-and-resume checks shared by the trainer tests: interrupt a run, resume it, and compare it with an
uninterrupted one.

    resumed = crash_then_resume(monkeypatch, lambda: GRPOTrainer(config, items=items), crash_at=3)
    resumed.train()
    assert_same_metrics(read_metrics(full_dir), read_metrics(resumed_dir))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from mmdps.trainer import GRPOTrainer


class Crash(RuntimeError):
    """The stand-in for a killed process."""


def crash_then_resume(monkeypatch: pytest.MonkeyPatch, make_trainer: Callable[[], GRPOTrainer], *,
                      crash_at: int) -> GRPOTrainer:
    """Train a trainer from ``make_trainer()`` that dies as step ``crash_at`` begins (after the checkpoints of
    the steps before it), then return a fresh ``make_trainer()``: it has resumed (``resume=auto``) and is
    not trained yet."""
    real_step = GRPOTrainer.train_step

    def crashing_step(self: GRPOTrainer) -> dict[str, Any]:
        if self.step == crash_at:
            raise Crash(f"killed as step {crash_at} began")
        return real_step(self)

    with monkeypatch.context() as patch:
        patch.setattr(GRPOTrainer, "train_step", crashing_step)
        with pytest.raises(Crash):
            make_trainer().train()
    return make_trainer()


def assert_same_metrics(expected: Sequence[Mapping[str, Any]], got: Sequence[Mapping[str, Any]], *,
                        rel: float = 1e-6, abs: float = 1e-6, ignore: Sequence[str] = ()) -> None:
    """The same steps with the same metrics, key by key (floats within ``rel`` / ``abs``); wall-clock fields
    (``time/*``) and the keys in ``ignore`` aside."""
    assert [record["step"] for record in got] == [record["step"] for record in expected]
    for want, have in zip(expected, got, strict=True):
        keys = {key for key in (*want, *have) if not key.startswith("time/") and key not in ignore}
        for key in sorted(keys):
            assert key in want and key in have, f"step {want['step']}: {key} is logged by one run only"
            a, b = want[key], have[key]
            if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
                assert math.isnan(b), f"step {want['step']}: {key}: {b} != nan"
            elif isinstance(a, (int, float)) and not isinstance(a, bool):
                assert b == pytest.approx(a, rel=rel, abs=abs), f"step {want['step']}: {key}: {b} != {a}"
            else:
                assert b == a, f"step {want['step']}: {key}: {b!r} != {a!r}"
