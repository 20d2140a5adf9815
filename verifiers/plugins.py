"""Third-party verifiers (registered, entry points, reward functions) with the built-ins' guarantees.

A built-in verifier bounds its own slow work (sympy in a worker process) and never raises on model
output. A plug-in promises neither, so :func:`mmdps.verifiers.register` wraps it in a
:class:`PluginVerifier`, which

* runs it in a worker process of :mod:`mmdps.verifiers.isolation` under a time limit, so one that
  hangs, loops in C or calls ``sys.exit`` costs one answer (scored 0, counted as a time-out or an
  error) instead of the run. That needs a function a fresh process can import by name: a module-level
  function of a module or a ``.py`` file. A closure, a lambda or a function of ``__main__`` is refused
  (:class:`~mmdps.verifiers.isolation.NotIsolatable`) unless isolation is switched off for it
  (``register(..., isolate=False)``) or for the process (``MMDPS_VERIFIER_ISOLATION=0``): then it runs
  in the calling thread with no time bound;
* scores 0 and counts (``reward/verifier_errors``) any exception but :class:`GroundTruthError` and
  :class:`VerifierSetupError`, and any verdict with a bad value (:meth:`Verdict.from_verifier`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mmdps.verifiers.base import (
    ZERO,
    GroundTruthError,
    TimeLimitExceeded,
    Verdict,
    VerdictDict,
    VerifierSetupError,
    call_with_time_limit,
    record_error,
)

#: Seconds one plug-in call may run in its worker (its own time; the wait for a worker is bounded apart).
#: Above the math verifier's 2 s, so a plug-in that calls it still answers when that one times out.
PLUGIN_TIME_LIMIT_S = 5.0
ISOLATION_ENV = "MMDPS_VERIFIER_ISOLATION"
_ON, _OFF = {"1", "true", "on", "yes"}, {"0", "false", "off", "no"}


def isolation_default() -> bool:
    """``MMDPS_VERIFIER_ISOLATION`` (default on): whether plug-in verifiers run in worker processes."""
    raw = os.environ.get(ISOLATION_ENV, "").strip().lower()
    if not raw or raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise VerifierSetupError(f"{ISOLATION_ENV}={raw!r} is not valid: use 1 (default: plug-in verifiers run in "
                             "worker processes under a time limit) or 0 (they run in the calling thread, unbounded)")


class PluginVerifier:
    """``fn`` as a verifier that never raises on model output and, when isolated, is bounded in time.

    Args:
        name: the registered name (in warnings and errors).
        fn: ``fn(completion, ground_truth, **item_metadata)`` returning a verdict dict.
        isolate: run in a worker process (True), in the calling thread (False), or as
            ``MMDPS_VERIFIER_ISOLATION`` says (None, the default). Checked now: a function that cannot
            be isolated is refused here, with the fix.
        time_limit: seconds of one call in the worker.
        to_verdict: turns ``fn``'s return value into a verdict dict (a reward function's float), in the
            parent; its :class:`VerifierSetupError` propagates.
    """

    def __init__(self, name: str, fn: Callable[..., Any], *, isolate: bool | None = None,
                 time_limit: float = PLUGIN_TIME_LIMIT_S,
                 to_verdict: Callable[[Any], Any] | None = None):
        if not callable(fn):
            raise TypeError(f"verifier {name!r} must be callable, got {type(fn).__name__}")
        self.name, self.fn, self.isolate, self.time_limit = name, fn, isolate, time_limit
        self.to_verdict = to_verdict
        self._isolatable = False
        self.__wrapped__ = fn
        self.__doc__ = getattr(fn, "__doc__", None)
        if self.isolated:
            self._check_isolatable()

    @property
    def isolated(self) -> bool:
        return isolation_default() if self.isolate is None else self.isolate

    def _check_isolatable(self) -> None:
        from mmdps.verifiers.isolation import NotIsolatable, worker_target

        if self._isolatable:
            return
        try:
            worker_target(self.fn)
        except NotIsolatable as error:
            raise NotIsolatable(f"verifier {self.name!r}: {error}") from None
        self._isolatable = True

    def __repr__(self) -> str:
        return f"PluginVerifier({self.name!r}, {self.fn!r}, isolated={self.isolated})"

    def run(self, completion: str, ground_truth: Any, metadata: dict[str, Any]) -> Any:
        """``fn``'s raw return value, in a worker when isolated; raises what it raises (a time-out as
        :class:`TimeLimitExceeded`, counted where it happens)."""
        if self.isolated:
            self._check_isolatable()
            return call_with_time_limit(self.fn, (completion, ground_truth), self.time_limit, isolate=True,
                                        kwargs=metadata)
        return self.fn(completion, ground_truth, **metadata)

    def __call__(self, completion: Any, ground_truth: Any = None, /, **metadata: Any) -> VerdictDict:
        if not isinstance(completion, str):
            return dict(ZERO)
        raw = guarded(self.name, self.run, completion, ground_truth, metadata)
        if raw is FAILED:
            return dict(ZERO)
        if self.to_verdict is not None:
            raw = self.to_verdict(raw)
        return Verdict.from_verifier(raw, verifier=self.name).as_dict()


#: What :func:`guarded` returns for a call that timed out or raised.
FAILED: Any = object()


def guarded(name: str, run: Callable[..., Any], *args: Any) -> Any:
    """``run(*args)``, or :data:`FAILED` when it timed out (counted where it happened) or raised (counted here as an
    error of verifier ``name``). :class:`GroundTruthError` and :class:`VerifierSetupError` propagate."""
    try:
        return run(*args)
    except (GroundTruthError, VerifierSetupError):
        raise
    except (TimeLimitExceeded, RecursionError, MemoryError):
        return FAILED
    except Exception as exc:  # noqa: BLE001 - a plug-in's bug must not stop training
        record_error(name, exc)
        return FAILED
