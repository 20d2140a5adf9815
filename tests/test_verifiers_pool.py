"""The verifier worker pool under load and faults: an answer's time limit counts its own time in a
worker only, the wait for a worker has its own bound, both kinds of time-out are counted, a dead worker
is replaced (and the answer retried), and the pool's environment variables are validated."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from mmdps import verifiers
from mmdps.verifiers import base, isolation
from mmdps.verifiers.base import TimeLimitExceeded, VerifierSetupError, call_with_time_limit
from mmdps.verifiers.math import is_equivalent

PATHOLOGICAL = r"\boxed{9^{9^{9}}}"


@pytest.fixture
def small_pool(monkeypatch):
    """A fresh process-wide pool of two workers (restored afterwards)."""
    pools = []

    def make(**kwargs):
        pool = isolation.WorkerPool(**{"size": 2, **kwargs})
        pools.append(pool)
        monkeypatch.setattr(isolation, "_POOL", pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def _in_threads(calls):
    """Run each ``(delay, fn)`` in its own thread; the results in order."""
    results: list = [None] * len(calls)

    def run(index, delay, fn):
        time.sleep(delay)
        results[index] = fn()

    threads = [threading.Thread(target=run, args=(i, delay, fn)) for i, (delay, fn) in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_correct_answers_queued_behind_slow_ones_still_score_correct(small_pool):
    """4 pathological answers, then 12 correct ones (none an exact match, so all go to a worker), from 16
    threads with 2 workers: the correct ones wait about two limits for a worker, which used to count
    against their own limit (0 of 12 scored correct)."""
    small_pool()
    math = verifiers.get("math")
    assert math(r"\boxed{\frac{2}{4}}", "0.5")["acc"] == 1.0  # start the workers off the clock
    before = base.timeout_counts()
    limit = 1.0
    slow = [(0.0, lambda: math(PATHOLOGICAL, "5", time_limit=limit)["acc"]) for _ in range(4)]
    correct = [(0.2, lambda i=i: math(rf"\boxed{{\frac{{{2 * i}}}{{{4 * i}}}}}", "0.5", time_limit=limit)["acc"])
               for i in range(1, 13)]
    results = _in_threads(slow + correct)
    assert results[:4] == [0.0] * 4
    assert results[4:] == [1.0] * 12
    after = base.timeout_counts()
    assert after["limit"] - before["limit"] == 4 and after["queue"] == before["queue"]


def test_the_wait_for_a_worker_has_its_own_bound_and_is_counted(small_pool, caplog):
    """Behind one busy worker, a call gives up after queue_timeout_s (scored 0, counted as a queue
    time-out, with one warning), so a burst of slow answers cannot stall a step without bound."""
    small_pool(size=1, queue_timeout_s=0.5)
    assert call_with_time_limit(is_equivalent, ("5", ("5",)), 30.0, isolate=True) is True
    before = base.timeout_counts()
    total_before = base.timeout_count()
    base.new_run()

    def hostile():
        start = time.perf_counter()
        try:
            call_with_time_limit(is_equivalent, (r"9^{9^{9}}", ("5",)), 1.5, isolate=True)
            outcome = "answered"
        except TimeLimitExceeded as exc:
            outcome = exc.args[0] if exc.args and exc.args[0] == "queued" else "limit"
        return outcome, time.perf_counter() - start

    with caplog.at_level("WARNING", logger="mmdps.verifiers.base"):
        results = _in_threads([(0.0, hostile)] + [(0.2, hostile)] * 3)
    outcomes = [outcome for outcome, _ in results]
    assert outcomes == ["limit", "queued", "queued", "queued"]
    assert all(seconds < 0.2 + 0.5 + 0.5 for _, seconds in results[1:]), results  # the queue bound, not 1.5 s
    after = base.timeout_counts()
    assert after["queue"] - before["queue"] == 3 and after["limit"] - before["limit"] == 1
    assert base.timeout_count() - total_before == 4
    warnings = [r.getMessage() for r in caplog.records if "MMDPS_VERIFIER_QUEUE_TIMEOUT_S" in r.getMessage()]
    assert len(warnings) == 1 and "MMDPS_VERIFIER_WORKERS" in warnings[0]


def test_a_worker_that_died_while_idle_is_replaced(small_pool):
    pool = small_pool(size=1)
    math = verifiers.get("math")
    assert math(r"\boxed{\frac{2}{4}}", "0.5")["acc"] == 1.0
    worker = pool._idle[0]
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)
    errors = base.error_count()
    assert math(r"\boxed{\frac{3}{6}}", "0.5")["acc"] == 1.0  # used to score 0 (and count an error)
    assert base.error_count() == errors
    assert pool._alive == 1 and pool._idle[0] is not worker


def test_an_answer_whose_worker_dies_under_it_is_retried_once(small_pool, monkeypatch):
    """A worker that dies between the liveness check and the answer (or while reading it) costs a
    retry on a fresh worker, not the answer."""
    pool = small_pool(size=1)
    assert pool.call(is_equivalent, ("5", ("5",)), 30.0) is True
    worker = pool._idle[0]
    monkeypatch.setattr(isolation._Worker, "alive", lambda self: True)  # the check misses the death
    os.kill(worker.proc.pid, signal.SIGKILL)
    time.sleep(0.2)
    assert pool.call(is_equivalent, (r"\frac{2}{4}", ("0.5",)), 30.0) is True
    assert pool._alive == 1 and pool._idle[0] is not worker
    # A second death in a row is not the pool's to hide.
    monkeypatch.setattr(isolation._Worker, "call", lambda *a: (_ for _ in ()).throw(isolation.WorkerDied("gone")))
    with pytest.raises(isolation.WorkerDied):
        pool.call(is_equivalent, ("5", ("5",)), 30.0)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", " "])
def test_the_worker_count_is_validated(monkeypatch, value):
    monkeypatch.setenv("MMDPS_VERIFIER_WORKERS", value)
    monkeypatch.setattr(isolation, "_POOL", None)
    if not value.strip():  # blank is unset: the default
        assert isolation.pool_settings()["size"] == isolation.DEFAULT_WORKERS
        return
    with pytest.raises(VerifierSetupError, match=rf"MMDPS_VERIFIER_WORKERS={value!r} is not valid: it must be an "
                                                 r"integer >= 1.*or unset it"):
        isolation.default_pool()
    with pytest.raises(VerifierSetupError, match="MMDPS_VERIFIER_WORKERS"):
        verifiers.check_environment()  # what a trainer calls before loading the model
    # Through a verifier: the error stops the caller instead of scoring every answer 0.
    with pytest.raises(VerifierSetupError, match="MMDPS_VERIFIER_WORKERS"):
        verifiers.get("math")(r"\boxed{\frac{1}{2}}", "0.5")


@pytest.mark.parametrize(("name", "value"), [("MMDPS_VERIFIER_QUEUE_TIMEOUT_S", "0"),
                                             ("MMDPS_VERIFIER_QUEUE_TIMEOUT_S", "nan"),
                                             ("MMDPS_VERIFIER_QUEUE_TIMEOUT_S", "inf"),
                                             ("MMDPS_VERIFIER_WORKER_MEMORY_MB", "12")])
def test_the_other_pool_settings_are_validated(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(VerifierSetupError, match=rf"{name}={value!r} is not valid"):
        isolation.pool_settings()


def test_pool_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("MMDPS_VERIFIER_WORKERS", "3")
    monkeypatch.setenv("MMDPS_VERIFIER_QUEUE_TIMEOUT_S", "12.5")
    assert isolation.pool_settings() == {"size": 3, "queue_timeout_s": 12.5, "memory_limit_mb": 2048}
