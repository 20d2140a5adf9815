"""Run a function in two real CPU processes (spawned, each its own interpreter) and collect what each reports.

    reports = run_two(worker, args, expect={0, 1})   # worker(rank, port, *args, results); results.put((rank, x))

``port`` is a free TCP port for the ranks' rendezvous (``tcp://127.0.0.1:{port}``, or ``MASTER_PORT``). Ranks
that have not reported once every rank in ``expect`` has are killed (a rank meant to hang).
"""

from __future__ import annotations

import multiprocessing
import queue
import socket
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two(worker: Callable[..., None], args: tuple = (), *, expect: set[int] = frozenset({0, 1}),
            timeout_s: float = 240) -> dict[int, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    port = free_port()
    procs = [context.Process(target=worker, args=(rank, port, *args, results), daemon=True) for rank in (0, 1)]
    for proc in procs:
        proc.start()
    reports: dict[int, Any] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while not set(expect) <= set(reports) and time.monotonic() < deadline:
            try:
                rank, report = results.get(timeout=1)
            except queue.Empty:
                continue
            reports[rank] = report
    finally:
        for proc in procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
    assert set(expect) <= set(reports), f"ranks {sorted(set(expect) - set(reports))} never reported: {reports}"
    return reports
