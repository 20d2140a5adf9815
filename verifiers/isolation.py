"""A small pool of worker processes that runs verifier functions with a hard time limit.

Why: math-verify's own timeout uses ``signal.alarm``, which only works in the main thread and cannot
stop a long C call. Trainers score rewards from worker threads, so calls from those threads come
here. Each worker is a plain ``python -m mmdps.verifiers.isolation`` subprocess (no fork of a
process that holds CUDA state, no re-import of the user's ``__main__``) that imports only the
verifiers, with an address-space limit so a runaway bignum fails with ``MemoryError`` instead of
eating the machine. A worker that overruns its deadline is killed and replaced.

Protocol on the worker's stdin/stdout: 8-byte big-endian length, then a pickle.
Requests ``("module:qualname", args)``; replies ``(True, result)`` or ``(False, repr_of_error)``.
Only functions of ``mmdps.verifiers`` modules may be called.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from mmdps.verifiers.base import TimeLimitExceeded

_HEADER = struct.Struct(">Q")
_ALLOWED_PREFIX = "mmdps.verifiers."
_READY = b"R"
#: Seconds a fresh worker may take to import sympy and math-verify.
STARTUP_TIMEOUT_S = 60.0
#: Extra seconds beyond the call's limit before the parent kills the worker (the worker first tries
#: its own in-process alarm, which keeps it alive and warm).
KILL_GRACE_S = 1.0


class WorkerError(RuntimeError):
    """The worker process died or answered garbage (not a time-out)."""


def _qualified_name(fn: Callable[..., Any]) -> str:
    name = f"{fn.__module__}:{fn.__qualname__}"
    if not fn.__module__.startswith(_ALLOWED_PREFIX) or "<" in fn.__qualname__:
        raise ValueError(f"{name} cannot run in a verifier worker: only module-level functions of "
                         f"{_ALLOWED_PREFIX}* can")
    return name


def _resolve(name: str) -> Callable[..., Any]:
    module, _, qualname = name.partition(":")
    if not module.startswith(_ALLOWED_PREFIX):
        raise ValueError(f"refusing to call {name!r}")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _Worker:
    def __init__(self, memory_limit_mb: int):
        env = dict(os.environ, MMDPS_VERIFIER_WORKER_MEMORY_MB=str(memory_limit_mb))
        self.proc = subprocess.Popen([sys.executable, "-m", "mmdps.verifiers.isolation"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0)
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None  # both are pipes
        self.stdin, self.stdout = stdin, stdout
        self._read_exact(1, time.monotonic() + STARTUP_TIMEOUT_S)  # the worker's "ready" byte

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd = self.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeLimitExceeded()
            chunk = os.read(fd, n - got)
            if not chunk:
                raise WorkerError(f"verifier worker exited with code {self.proc.poll()}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def call(self, name: str, args: tuple, seconds: float) -> Any:
        payload = pickle.dumps((name, args, seconds), protocol=pickle.HIGHEST_PROTOCOL)
        self.stdin.write(_HEADER.pack(len(payload)) + payload)
        deadline = time.monotonic() + seconds + KILL_GRACE_S
        (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline))
        ok, value = pickle.loads(self._read_exact(size, deadline))
        if ok == "timeout":
            raise TimeLimitExceeded("soft")  # the worker stopped itself and is still usable
        if not ok:
            raise WorkerError(value)
        return value

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.stdin, self.stdout):
            stream.close()


class WorkerPool:
    """Up to ``size`` warm worker processes shared by all threads of this process.

    A call's time limit covers its wait for a free worker as well as the work: when many threads
    verify pathological answers at once, the queue behind ``size`` workers does not stretch one call
    beyond ``seconds`` (plus :data:`KILL_GRACE_S`). Only starting a worker (the first calls of a
    process, or after a worker was killed for overrunning) is off the clock: that is up to about a
    second of imports, bounded by :data:`STARTUP_TIMEOUT_S`.

    Args:
        size: most workers alive at once (a caller waits for a free one beyond that).
        memory_limit_mb: address-space limit of each worker (``RLIMIT_AS``).
    """

    def __init__(self, size: int = 2, memory_limit_mb: int = 2048):
        self.size = size
        self.memory_limit_mb = memory_limit_mb
        self._idle: list[_Worker] = []
        self._alive = 0
        self._changed = threading.Condition()
        self._pid = os.getpid()

    def _acquire(self, deadline: float) -> tuple[_Worker, bool]:
        """An idle worker, or a new one while fewer than ``size`` live; ``(worker, fresh)``. Raises
        :class:`TimeLimitExceeded` when ``deadline`` passes first."""
        with self._changed:
            while True:
                if os.getpid() != self._pid:  # we were forked: the workers belong to the parent
                    self._idle, self._alive, self._pid = [], 0, os.getpid()
                if self._idle:
                    return self._idle.pop(), False
                if self._alive < self.size:
                    self._alive += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeLimitExceeded("queued")
                self._changed.wait(left)
        try:
            return _Worker(self.memory_limit_mb), True
        except BaseException:
            self._forget()
            raise

    def _release(self, worker: _Worker) -> None:
        with self._changed:
            self._idle.append(worker)
            self._changed.notify()

    def _forget(self) -> None:
        with self._changed:
            self._alive -= 1
            self._changed.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        self._forget()

    def call(self, fn: Callable[..., Any], args: tuple, seconds: float) -> Any:
        """Run ``fn(*args)`` in a worker; raise :class:`TimeLimitExceeded` once ``seconds`` have passed
        since this call began, waiting for a free worker included."""
        name = _qualified_name(fn)
        start = time.monotonic()
        worker, fresh = self._acquire(start + seconds)
        # A worker's start-up is off the clock (see the class docstring); a wait in the queue is not.
        left = seconds if fresh else start + seconds - time.monotonic()
        if left <= 0:
            self._release(worker)
            raise TimeLimitExceeded("queued")
        try:
            result = worker.call(name, args, left)
        except TimeLimitExceeded as exc:
            if exc.args == ("soft",):
                self._release(worker)
            else:
                self._discard(worker)
            raise
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        return result

    def close(self) -> None:
        """Kill the idle workers (busy ones are killed by their callers or at exit)."""
        with self._changed:
            idle, self._idle = self._idle, []
        for worker in idle:
            self._discard(worker)


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide pool used by :func:`mmdps.verifiers.base.call_with_time_limit`."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool(size=int(os.environ.get("MMDPS_VERIFIER_WORKERS", "2")))
            atexit.register(_POOL.close)
        return _POOL


# ------------------------------------------------------------------------------ worker side
def _serve() -> None:  # pragma: no cover - runs in the subprocess
    import logging
    import resource

    from mmdps.verifiers.base import call_with_signal_limit

    logging.disable(logging.WARNING)  # math-verify logs every time-out; the parent counts them
    limit = int(os.environ.get("MMDPS_VERIFIER_WORKER_MEMORY_MB", "2048")) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    importlib.import_module("mmdps.verifiers.math").warm_up()  # imports and grammar load off the clock
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(_READY)
    stdout.flush()
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        name, args, seconds = pickle.loads(stdin.read(_HEADER.unpack(header)[0]))
        try:
            reply: tuple[Any, Any] = (True, call_with_signal_limit(_resolve(name), args, seconds))
        except TimeLimitExceeded:
            reply = ("timeout", None)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            reply = (False, f"{type(exc).__name__}: {exc}"[:2000])
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_HEADER.pack(len(data)) + data)
        stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    _serve()
