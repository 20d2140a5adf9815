"""The in-process side of a verifier's time bound: the exceptions a guarded call raises and the SIGALRM
timer. Both the caller (:mod:`.base`) and the worker processes (:mod:`.isolation`) use it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class GroundTruthError(ValueError):
    """The ground truth (not the model output) is unusable; the message says which field and how to fix it."""


class VerifierSetupError(ValueError):
    """The verifier cannot run as set up (a bad ``MMDPS_VERIFIER_*`` variable, a closure that cannot run in a
    worker process, a reward function whose scores need a ``success_threshold``): the message names the
    setting and the fix. It stops the run instead of scoring 0, since no answer could be scored."""


class TimeLimitExceeded(BaseException):
    """Raised inside a guarded call when its time is up.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that the ``except Exception`` blocks inside
    sympy and math-verify cannot swallow it.
    """


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def signal_guard_usable() -> bool:
    """True when a SIGALRM timer can guard a call here: main thread, POSIX, and no timer already armed."""
    if not hasattr(signal, "setitimer") or not _in_main_thread():
        return False
    # Do not clobber somebody else's alarm (pytest-timeout, an outer guard).
    return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def _raise_time_limit(signum, frame):  # noqa: ARG001 - signal handler signature
    raise TimeLimitExceeded()


#: True inside a verifier worker process: guarded calls there nest under the worker's own alarm.
IN_WORKER = False


def call_with_signal_limit(fn: Callable[..., T], args: tuple, seconds: float) -> T:
    """Run ``fn(*args)`` in this (main) thread; raise :class:`TimeLimitExceeded` after ``seconds``.

    Interrupts Python code between bytecodes only: a single long C call (a huge integer power)
    finishes before the alarm is handled. :func:`call_with_time_limit` therefore screens inputs
    (the verifiers cap sizes) or isolates the call in a worker process. Nests: under an armed timer
    that ends sooner, ``fn`` runs under that one; otherwise the outer timer is re-armed afterwards
    with what is left of it.
    """
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
    if outer_left and outer_left <= seconds:
        return fn(*args)  # the outer alarm fires first and is the outer call's
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _raise_time_limit)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 1e-3))
