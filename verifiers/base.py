"""What every verifier shares: the verdict shape, the never-raise wrapper and the time limit.

A verifier is any callable ``f(completion: str, ground_truth, **item_metadata) -> VerdictDict`` where a
verdict is a plain dict ``{"score": float, "acc": float, "format": float}`` (plain, so that the TRL and
verl adapters can hand it on as it is):

* ``acc``    1.0 when the answer is correct, else 0.0 (what selectors and pass@k count);
* ``format`` 1.0 when the completion has the layout the prompt asked for, else 0.0;
* ``score``  the reward the trainer optimises (each verifier documents its rule).

Inside the library a verdict is the typed :class:`Verdict`, made from the dict in one place
(:func:`mmdps.verifiers.score_completion`, used by the trainer, the evaluation and the task packs);
:attr:`Verdict.correct` is the one definition of a correct completion.

Model output is untrusted, so verifiers are wrapped with :func:`never_raise` and anything that can
run long (sympy) runs under :func:`call_with_time_limit`. An exception inside a verifier still scores 0,
but is counted (:func:`error_count`; the trainer logs it as ``reward/verifier_errors``) and the first
one of a run is logged as a warning, so a verifier that zeroes every reward cannot go unnoticed.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

VerdictDict = dict[str, float]
T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Default wall-clock limit of one guarded call (seconds). Real answers take milliseconds.
DEFAULT_TIME_LIMIT_S = 2.0


#: ``acc`` at or above this counts as correct (verifiers give 0 or 1; a partial-credit verifier's 0.5 is not).
CORRECT_ACC = 1.0


def is_correct(acc: Any) -> Any:
    """``acc >= CORRECT_ACC``: the one definition of a correct completion, for a float or a numpy array."""
    return acc >= CORRECT_ACC


def success_rate(accs: Any) -> float:
    """The share of a prompt's rollouts that are correct (:func:`is_correct`): the one definition of a
    success rate, which the trainer, the evaluation, the selectors' inputs and the integrations all use."""
    values = [float(acc) for acc in accs]
    if not values:
        raise ValueError("success_rate: a group needs at least one rollout")
    return sum(bool(is_correct(value)) for value in values) / len(values)


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one completion (see the module docstring for the three fields)."""

    score: float
    acc: float
    format: float

    @property
    def correct(self) -> bool:
        """Whether the answer is correct (what success rates, selectors and pass@k count)."""
        return bool(is_correct(self.acc))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "verifier") -> Verdict:
        """The typed form of a verifier's dict; a ``ValueError`` naming ``source`` when a field is missing or
        not a number."""
        try:
            return cls(score=float(raw["score"]), acc=float(raw["acc"]), format=float(raw["format"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source} returned {raw!r}, which is not a verdict: it must be a dict of floats "
                             "{'score', 'acc', 'format'} (mmdps.verifiers.verdict builds one)") from error

    def as_dict(self) -> VerdictDict:
        """The plain-dict form verifiers return (for TRL / verl and JSON)."""
        return {"score": self.score, "acc": self.acc, "format": self.format}


def verdict(*, acc: float | bool, format: float | bool, score: float | None = None) -> VerdictDict:
    """Build a verdict; ``score`` defaults to ``acc``. All values are floats in [0, 1]."""
    acc_f = 1.0 if acc else 0.0
    format_f = 1.0 if format else 0.0
    score_f = acc_f if score is None else min(1.0, max(0.0, float(score)))
    return {"score": score_f, "acc": acc_f, "format": format_f}


ZERO: VerdictDict = {"score": 0.0, "acc": 0.0, "format": 0.0}


class _ErrorCounter:
    """Exceptions swallowed by :func:`never_raise` in this process, and whether the run was warned."""

    def __init__(self) -> None:
        self.count = 0
        self.warned = False
        self.lock = threading.Lock()

    def add(self, name: str, exc: BaseException) -> None:
        with self.lock:
            self.count += 1
            first, self.warned = not self.warned, True
        if first:
            logger.warning("verifier %s raised %s: %s; the completion scored 0. Later errors are not logged but "
                           "counted (reward/verifier_errors in the training metrics); a verifier that raises on "
                           "every completion gives no learning signal", name, type(exc).__name__, exc,
                           exc_info=exc)


_ERRORS = _ErrorCounter()


def error_count() -> int:
    """How many verifier calls of this process raised (and scored 0) so far; time-outs are not errors."""
    return _ERRORS.count


def new_run() -> None:
    """Start a run: the next verifier error is logged as a warning again (one warning per run)."""
    with _ERRORS.lock:
        _ERRORS.warned = False


def never_raise(fn: Callable[..., VerdictDict]) -> Callable[..., VerdictDict]:
    """Wrap a verifier so that any error (bad ground truth aside) becomes a zero verdict.

    Errors in the *ground truth* are the caller's bug, so :class:`GroundTruthError` propagates. A
    time-out, a recursion or memory blow-up (pathological model output) scores 0 quietly; any other
    exception scores 0, is counted by :func:`error_count` and the first one of a run is logged as a
    warning (it is more likely a bug or an unexpected field type than the model's fault).
    """

    @functools.wraps(fn)
    def wrapper(completion: Any, ground_truth: Any = None, /, **kwargs: Any) -> VerdictDict:
        if not isinstance(completion, str):
            return dict(ZERO)
        try:
            return fn(completion, ground_truth, **kwargs)
        except GroundTruthError:
            raise
        except (TimeLimitExceeded, RecursionError, MemoryError):
            logger.debug("verifier %s gave up on a completion; scored 0", fn.__name__, exc_info=True)
            return dict(ZERO)
        except Exception as exc:  # noqa: BLE001 - untrusted input must not stop training
            _ERRORS.add(fn.__name__, exc)
            return dict(ZERO)

    return wrapper


class GroundTruthError(ValueError):
    """The ground truth (not the model output) is unusable; the message says which field and how to fix it."""


class TimeLimitExceeded(BaseException):
    """Raised inside a guarded call when its time is up.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that the ``except Exception`` blocks inside
    sympy and math-verify cannot swallow it.
    """


# ---------------------------------------------------------------------------------- time limit
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


def call_with_signal_limit(fn: Callable[..., T], args: tuple, seconds: float) -> T:
    """Run ``fn(*args)`` in this (main) thread; raise :class:`TimeLimitExceeded` after ``seconds``.

    Interrupts Python code between bytecodes only: a single long C call (a huge integer power)
    finishes before the alarm is handled. :func:`call_with_time_limit` therefore screens inputs
    (the verifiers cap sizes) or isolates the call in a worker process.
    """
    previous = signal.signal(signal.SIGALRM, _raise_time_limit)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call_with_time_limit(fn: Callable[..., T], args: tuple, seconds: float = DEFAULT_TIME_LIMIT_S, *,
                         isolate: bool | None = None) -> T:
    """Run the module-level function ``fn(*args)`` for at most ``seconds`` from any thread.

    * main thread (and ``isolate`` not True): in-process under a SIGALRM timer (cheapest; microseconds);
    * other threads, or ``isolate=True``: in a worker process of :mod:`mmdps.verifiers.isolation`,
      killed and replaced when it overruns (works for C-level hangs too; ~0.1 ms of IPC per call).

    ``fn`` must be importable by name (``module:qualname``) and its args and result picklable.
    Raises :class:`TimeLimitExceeded` when the limit is hit.
    """
    if isolate is None:
        isolate = not signal_guard_usable()
    if not isolate and signal_guard_usable():
        return call_with_signal_limit(fn, args, seconds)
    from mmdps.verifiers.isolation import default_pool

    return default_pool().call(fn, args, seconds)
