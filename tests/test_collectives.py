"""Collectives with a timeout (mmdps.training.collectives) across two real CPU processes (gloo): a rank that
raises or hangs makes the other fail with an error naming its rank and the collective, within the timeout."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from mmdps.training import collectives
from two_processes import run_two

TIMEOUT_S = 3.0


def _rank_main(rank: int, port: int, fault: str, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=TIMEOUT_S))
    try:
        assert collectives.gather_with_timeout({"rank": rank}, TIMEOUT_S, "warming up") == [{"rank": 0}, {"rank": 1}]
        if rank == 1:
            if fault == "raises":
                raise RuntimeError("a verifier crashed on rank 1")
            time.sleep(4 * TIMEOUT_S)  # hangs (a stuck generate), past the other rank's timeout
        started = time.monotonic()
        try:
            collectives.gather_with_timeout(["rollouts"], TIMEOUT_S, "step 7: gathering the rollouts")
        except collectives.CollectiveError as exc:
            results.put((rank, ("CollectiveError", str(exc), time.monotonic() - started)))
        else:
            results.put((rank, ("returned", "", time.monotonic() - started)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((rank, (type(exc).__name__, str(exc), 0.0)))


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["raises", "hangs"])
def test_a_fault_on_one_rank_fails_the_other_with_a_named_error_within_the_timeout(fault):
    # the hanging rank is killed once rank 0 has failed
    reports = run_two(_rank_main, (fault,), expect={0, 1} if fault == "raises" else {0}, timeout_s=40)
    kind, message, waited = reports[0]
    assert kind == "CollectiveError", reports
    assert message.startswith("rank 0 of 2: step 7: gathering the rollouts "), message
    assert "collective_timeout_s=3" in message
    assert waited < TIMEOUT_S + 5  # the backend's own timeout ends it, not the watchdog's exit
    if fault == "raises":
        assert reports[1][0] == "RuntimeError"


def test_one_process_needs_no_process_group():
    assert collectives.gather_with_timeout("x", 1.0, "gathering") == ["x"]
    assert collectives.any_rank(True, 1.0, "stopping") is True
    assert collectives.any_rank(False, 1.0, "stopping") is False
    collectives.barrier(1.0, "waiting")


def test_a_backend_error_becomes_a_collective_error_naming_the_rank_and_the_collective():
    with pytest.raises(collectives.CollectiveError, match=r"^rank 0 of 1: saving checkpoint 3 failed \(RuntimeError: "
                                                          r"Connection closed by peer\); another rank failed"):
        with collectives.guarded("saving checkpoint 3", 5.0):
            raise RuntimeError("Connection closed by peer")


def test_the_watchdog_names_a_collective_that_outlasts_the_timeout(caplog, monkeypatch):
    monkeypatch.setattr(collectives, "EXIT_GRACE_S", 30.0)
    with caplog.at_level("ERROR", logger="mmdps.training.collectives"):
        with collectives.guarded("step 2: agreeing whether to stop", 0.05):
            time.sleep(0.3)  # a backend that ignores its timeout; it returns before the grace ends
    assert "rank 0 of 1: step 2: agreeing whether to stop has waited 0.05 s for the other ranks" in caplog.text
