"""A small pool of worker processes that runs verifier functions with a hard time limit.

Why: math-verify's own timeout uses ``signal.alarm``, which only works in the main thread and cannot
stop a long C call. Trainers score rewards from worker threads, so calls from those threads come
here, and so do plug-in verifiers (:func:`mmdps.verifiers.register`), which may hang or call
``sys.exit``. Each worker is a plain ``python -m mmdps.verifiers.isolation`` subprocess (no fork of a
process that holds CUDA state, no re-import of the user's ``__main__``) with an address-space limit,
so a runaway bignum fails with ``MemoryError`` instead of eating the machine. A worker that overruns
its deadline is killed and replaced; one found dead is replaced and the call retried once.

Protocol on the worker's stdin/stdout: 8-byte big-endian length, then a pickle.
Requests ``((module, qualname, file), args, kwargs, seconds)``: the function is imported by module
name, else loaded from ``file`` under that name (a plug-in beside the user's script, a reward file).
Replies ``(kind, value)``: ``ok`` with the result, ``timeout``, ``memory``, ``error`` (the function
raised), ``ground_truth`` (it raised :class:`GroundTruthError`) or ``setup`` (it cannot be imported).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mmdps.verifiers import limits
from mmdps.verifiers.limits import GroundTruthError, TimeLimitExceeded, VerifierSetupError

_HEADER = struct.Struct(">Q")
_READY = b"R"
#: Seconds a fresh worker may take to import sympy and math-verify.
STARTUP_TIMEOUT_S = 60.0
#: Extra seconds beyond the call's limit before the parent kills the worker (the worker first tries
#: its own in-process alarm, which keeps it alive and warm).
KILL_GRACE_S = 1.0
#: Default of ``MMDPS_VERIFIER_QUEUE_TIMEOUT_S``: how long one call may wait for a free worker.
DEFAULT_QUEUE_TIMEOUT_S = 60.0
DEFAULT_WORKERS = 2
DEFAULT_MEMORY_MB = 2048

Target = tuple[str, str, "str | None"]


class WorkerError(RuntimeError):
    """The function raised in the worker (the message starts with the exception's type), or the worker
    answered garbage."""


class WorkerDied(WorkerError):
    """The worker process was gone (killed, crashed) before it answered: not the answer's fault."""


class NotIsolatable(VerifierSetupError):
    """A function a worker process cannot import by name (a closure, a lambda, one of ``__main__``)."""


def worker_target(fn: Callable[..., Any]) -> Target:
    """``(module, qualname, file)`` by which a worker process finds ``fn``; :class:`NotIsolatable`
    (saying why and what to do) when it cannot: only module-level functions can run in a worker."""
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", None) or ""
    name = f"{module}:{qualname}" if qualname else repr(fn)
    fix = ("define it with def at the top level of a module (or a .py file), or run it in-process without a "
           "time bound (register(..., isolate=False), or MMDPS_VERIFIER_ISOLATION=0)")
    if not qualname or "<" in qualname or not module:
        what = "a lambda" if "<lambda>" in qualname else "a closure or local function" if "<locals>" in qualname \
            else f"a {type(fn).__name__}"
        raise NotIsolatable(f"{name} cannot run in a verifier worker process: it is {what}; only module-level "
                            f"functions can. To fix: {fix}")
    if module == "__main__":
        raise NotIsolatable(f"{name} cannot run in a verifier worker process: it is defined in the script being "
                            "run (__main__), which a worker cannot import without running it; only module-level "
                            "functions of an importable module or file can. To fix: move it into a module of its "
                            "own and import it from there, or run it in-process without a time bound "
                            "(register(..., isolate=False), or MMDPS_VERIFIER_ISOLATION=0)")
    try:
        resolved = _resolve((module, qualname, None))
    except Exception as error:  # noqa: BLE001 - any failure means a worker could not find it either
        raise NotIsolatable(f"{name} cannot run in a verifier worker process: it is not reachable by that name "
                            f"({type(error).__name__}: {error}); only module-level functions can. To fix: {fix}") \
            from error
    if resolved is not fn and getattr(fn, "__wrapped__", None) is not resolved:
        raise NotIsolatable(f"{name} cannot run in a verifier worker process: that name holds another object "
                            f"({resolved!r}), so a worker would call something else. To fix: {fix}")
    return module, qualname, getattr(sys.modules.get(module), "__file__", None)


def _resolve(target: Target) -> Callable[..., Any]:
    """The function named by ``target``: imported by module name, else loaded from its file (and kept in
    ``sys.modules`` under the same name, so it is loaded once)."""
    module_name, qualname, file = target
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            if not file:
                raise
            spec = importlib.util.spec_from_file_location(module_name, file)
            if spec is None or spec.loader is None:
                raise
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
    obj: Any = module
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

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd = self.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeLimitExceeded()
            chunk = os.read(fd, n - got)
            if not chunk:
                raise WorkerDied(f"verifier worker exited with code {self.proc.poll()}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def call(self, target: Target, args: tuple, kwargs: Mapping[str, Any], seconds: float) -> Any:
        payload = pickle.dumps((target, args, dict(kwargs), seconds), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.stdin.write(_HEADER.pack(len(payload)) + payload)
        except (BrokenPipeError, ConnectionResetError) as error:
            raise WorkerDied(f"verifier worker exited with code {self.proc.poll()}") from error
        deadline = time.monotonic() + seconds + KILL_GRACE_S
        (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline))
        kind, value = pickle.loads(self._read_exact(size, deadline))
        if kind == "ok":
            return value
        if kind == "timeout":
            raise TimeLimitExceeded("soft")  # the worker stopped itself and is still usable
        raise _REPLY_ERRORS.get(kind, WorkerError)(value)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.stdin, self.stdout):
            stream.close()


_REPLY_ERRORS: dict[str, type[BaseException]] = {"memory": MemoryError, "ground_truth": GroundTruthError,
                                                 "setup": VerifierSetupError, "error": WorkerError}


class WorkerPool:
    """Up to ``size`` warm worker processes shared by all threads of this process.

    Two bounds per call, counted apart (:func:`mmdps.verifiers.base.timeout_counts`):

    * ``seconds``, the call's own time in a worker, from the request to the answer: a slow answer
      cannot take more (plus :data:`KILL_GRACE_S` when the worker must be killed);
    * ``queue_timeout_s``, the wait for a free worker, per call: behind many slow answers a call waits
      its turn (so a correct answer queued behind pathological ones is still graded) but not forever.

    Starting a worker (about a second of imports: the first calls of a process, or after a worker was
    killed or died) counts in neither; it is bounded by :data:`STARTUP_TIMEOUT_S`. A worker found dead
    (killed by the OOM killer, say) is replaced, and a call whose worker died under it is retried once
    on a fresh one.

    Args:
        size: most workers alive at once (a caller waits for a free one beyond that).
        memory_limit_mb: address-space limit of each worker (``RLIMIT_AS``).
        queue_timeout_s: most seconds one call waits for a free worker.
    """

    def __init__(self, size: int = DEFAULT_WORKERS, memory_limit_mb: int = DEFAULT_MEMORY_MB,
                 queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S):
        if size < 1:
            raise ValueError(f"WorkerPool size must be at least 1, got {size}")
        self.size = size
        self.memory_limit_mb = memory_limit_mb
        self.queue_timeout_s = queue_timeout_s
        self._idle: list[_Worker] = []
        self._alive = 0
        self._changed = threading.Condition()
        self._pid = os.getpid()

    def _acquire(self) -> _Worker:
        """An idle live worker, or a new one while fewer than ``size`` live. Raises
        :class:`TimeLimitExceeded` ``("queued")`` when none is free within ``queue_timeout_s``."""
        deadline = time.monotonic() + self.queue_timeout_s
        with self._changed:
            while True:
                if os.getpid() != self._pid:  # we were forked: the workers belong to the parent
                    self._idle, self._alive, self._pid = [], 0, os.getpid()
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()  # died while idle: replace it rather than fail the next answer
                    self._alive -= 1
                if self._alive < self.size:
                    self._alive += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeLimitExceeded("queued")
                self._changed.wait(left)
        try:
            return _Worker(self.memory_limit_mb)
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

    def call(self, fn: Callable[..., Any], args: tuple, seconds: float, kwargs: Mapping[str, Any] | None = None,
             *, target: Target | None = None) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker; :class:`TimeLimitExceeded` once it has run ``seconds``
        there (``args == ()`` or ``("soft",)``) or after waiting ``queue_timeout_s`` for a worker
        (``("queued",)``). ``fn`` must be a module-level function (:func:`worker_target`; pass ``target``
        when it is already known)."""
        target = target or worker_target(fn)
        for attempt in (1, 2):
            worker = self._acquire()
            try:
                result = worker.call(target, args, kwargs or {}, seconds)
            except TimeLimitExceeded as exc:
                if exc.args == ("soft",):
                    self._release(worker)
                else:
                    self._discard(worker)
                raise
            except WorkerDied:
                self._discard(worker)
                if attempt == 2:
                    raise
                continue  # the worker was gone before the answer ran: once more on a fresh one
            except (WorkerError, GroundTruthError, VerifierSetupError):
                self._release(worker)  # the function raised; the worker is fine
                raise
            except BaseException:
                self._discard(worker)
                raise
            self._release(worker)
            return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Kill the idle workers (busy ones are killed by their callers or at exit)."""
        with self._changed:
            idle, self._idle = self._idle, []
        for worker in idle:
            self._discard(worker)


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def _env_number(name: str, default: float, *, integer: bool, minimum: float, what: str) -> Any:
    """The environment variable ``name`` as a number >= ``minimum`` (``default`` when unset);
    :class:`VerifierSetupError` naming the variable and the fix otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not value >= minimum or value == float("inf"):
        kind = "an integer" if integer else "a number of seconds"
        raise VerifierSetupError(f"{name}={raw!r} is not valid: it must be {kind} >= {minimum:g} ({what}; "
                                 f"default {default:g}). Set it to such a value, or unset it")
    return value


def pool_settings() -> dict[str, Any]:
    """The worker pool's settings from the environment, validated: ``MMDPS_VERIFIER_WORKERS`` (processes,
    >= 1), ``MMDPS_VERIFIER_QUEUE_TIMEOUT_S`` (seconds a call may wait for a worker, > 0) and
    ``MMDPS_VERIFIER_WORKER_MEMORY_MB`` (address space of each, >= 256). A trainer can call it up front so
    that a bad value stops the run before the model loads."""
    return {
        "size": _env_number("MMDPS_VERIFIER_WORKERS", DEFAULT_WORKERS, integer=True, minimum=1,
                            what="how many verifier worker processes"),
        "queue_timeout_s": _env_number("MMDPS_VERIFIER_QUEUE_TIMEOUT_S", DEFAULT_QUEUE_TIMEOUT_S, integer=False,
                                       minimum=0.001, what="seconds one verifier call may wait for a free worker"),
        "memory_limit_mb": _env_number("MMDPS_VERIFIER_WORKER_MEMORY_MB", DEFAULT_MEMORY_MB, integer=True,
                                       minimum=256, what="address space of each verifier worker, in MiB"),
    }


def default_pool() -> WorkerPool:
    """The process-wide pool used by :func:`mmdps.verifiers.base.call_with_time_limit`, sized by
    :func:`pool_settings` (a bad environment variable raises :class:`VerifierSetupError`)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool(**pool_settings())
            atexit.register(_POOL.close)
        return _POOL


# ------------------------------------------------------------------------------ worker side
def _serve() -> None:  # pragma: no cover - runs in the subprocess
    import logging
    import resource

    logging.disable(logging.WARNING)  # math-verify logs every time-out; the parent counts them
    limits.IN_WORKER = True  # nested guarded calls (a plug-in calling the math verifier) stay in this process
    limit = int(os.environ.get("MMDPS_VERIFIER_WORKER_MEMORY_MB", str(DEFAULT_MEMORY_MB))) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    importlib.import_module("mmdps.verifiers.math").warm_up()  # imports and grammar load off the clock
    # The protocol gets private copies of stdin/stdout: a plug-in that prints (or reads input) must not
    # corrupt it, so fds 0 and 1 now point at /dev/null and stderr.
    stdin, stdout = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdout.write(_READY)
    stdout.flush()
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        target, args, kwargs, seconds = pickle.loads(stdin.read(_HEADER.unpack(header)[0]))
        reply: tuple[str, Any]
        try:
            fn = _resolve(target)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            reply = ("setup", f"{target[0]}:{target[1]} cannot be imported in a verifier worker process "
                              f"({type(exc).__name__}: {exc}); a worker has {limit >> 20} MiB of address space "
                              "(MMDPS_VERIFIER_WORKER_MEMORY_MB) and cannot load torch: keep the verifier's "
                              "module light, or run it in-process (register(..., isolate=False))"[:2000])
        else:
            try:
                reply = ("ok", limits.call_with_signal_limit(functools.partial(fn, **kwargs), args, seconds))
            except TimeLimitExceeded:
                reply = ("timeout", None)
            except MemoryError as exc:
                reply = ("memory", str(exc)[:2000])
            except GroundTruthError as exc:
                reply = ("ground_truth", str(exc)[:2000])
            except VerifierSetupError as exc:
                reply = ("setup", str(exc)[:2000])
            except BaseException as exc:  # noqa: BLE001 - sys.exit in a plug-in too: reported to the parent
                reply = ("error", f"{type(exc).__name__}: {exc}"[:2000])
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result
            data = pickle.dumps(("error", f"the result cannot be sent back: {type(exc).__name__}: {exc}"[:2000]))
        stdout.write(_HEADER.pack(len(data)) + data)
        stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    _serve()
