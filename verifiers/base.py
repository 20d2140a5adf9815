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
run long (sympy) runs under :func:`call_with_time_limit`. An exception inside a verifier, or a verdict
with a bad value (NaN, ``acc`` 7, a string), still scores 0, but is counted (:func:`error_count`; the
trainer logs it as ``reward/verifier_errors``) and the first one of a run per verifier is logged as a
warning, so a verifier that zeroes every reward cannot go unnoticed. Time-outs are counted apart
(:func:`timeout_count`, ``reward/verifier_timeouts``).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mmdps.verifiers import limits
from mmdps.verifiers.limits import (
    GroundTruthError,
    TimeLimitExceeded,
    VerifierSetupError,
    call_with_signal_limit,
    signal_guard_usable,
)

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
        """The typed form of a verifier's dict, validated: :class:`NotAVerdictError` naming ``source`` when it is
        not a dict with ``score``, ``acc`` and ``format``, and :class:`InvalidVerdictError` when a value is not a
        finite real number (a string, NaN, inf), ``acc`` or ``format`` is outside [0, 1], or ``|score|``
        exceeds :data:`MAX_ABS_SCORE`."""
        if not isinstance(raw, Mapping) or any(key not in raw for key in ("score", "acc", "format")):
            raise NotAVerdictError(f"{source} returned {raw!r}, which is not a verdict: it must be a dict of "
                                   "floats {'score', 'acc', 'format'} (mmdps.verifiers.verdict builds one)")
        values = {key: _checked_value(raw[key], key, source) for key in ("score", "acc", "format")}
        return cls(**values)

    @classmethod
    def from_verifier(cls, raw: Any, *, verifier: str, source: str | None = None) -> Verdict:
        """:meth:`from_dict` for what verifier ``verifier`` returned, in the one place every verdict passes:
        a verdict with a bad value scores 0 and is counted as a verifier error (logged once per run and
        verifier, with the example); one that is not a verdict at all raises :class:`NotAVerdictError`."""
        try:
            return cls.from_dict(raw, source=source or f"verifier {verifier!r}")
        except InvalidVerdictError as error:
            example = InvalidVerdictError(f"{error}; the verdict was {raw!r}"[:500])
            _ERRORS.add(verifier, example, kind="returned an invalid verdict:")
            return cls(0.0, 0.0, 0.0)

    def as_dict(self) -> VerdictDict:
        """The plain-dict form verifiers return (for TRL / verl and JSON)."""
        return {"score": self.score, "acc": self.acc, "format": self.format}


#: Largest ``|score|`` accepted. The built-in verifiers give [0, 1]; shaped rewards (-1, 0.1, a weighted sum
#: of a few terms) fit easily; a larger value is almost always a unit bug (a token count) that would
#: swamp the other rewards of a weighted sum.
MAX_ABS_SCORE = 1000.0


class NotAVerdictError(ValueError):
    """A verifier returned something that is not a verdict dict at all (no ``format`` key, a float): no call
    of it can be scored, so this stops the caller instead of scoring 0."""


class InvalidVerdictError(ValueError):
    """A verdict field is not a finite real number in its range (a string, NaN, ``acc`` 7, ``score`` 1e6)."""


def _checked_value(value: Any, key: str, source: str) -> float:
    number = math.nan
    if not isinstance(value, (str, bytes)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if key == "score" and abs(number) > MAX_ABS_SCORE:
                raise InvalidVerdictError(f"{source} returned score {number:g}, outside [-{MAX_ABS_SCORE:g}, "
                                          f"{MAX_ABS_SCORE:g}]")
            if key != "score" and not 0.0 <= number <= 1.0 and math.isfinite(number):
                raise InvalidVerdictError(f"{source} returned {key} {number:g}, outside [0, 1]")
            if math.isfinite(number):
                return number
            raise InvalidVerdictError(f"{source} returned {key} {number}, not a finite number")
    raise InvalidVerdictError(f"{source} returned {key} {value!r} ({type(value).__name__}), not a number")


def verdict(*, acc: float | bool, format: float | bool, score: float | None = None) -> VerdictDict:
    """Build a verdict; ``score`` defaults to ``acc``. All values are floats in [0, 1]."""
    acc_f = 1.0 if acc else 0.0
    format_f = 1.0 if format else 0.0
    score_f = acc_f if score is None else min(1.0, max(0.0, float(score)))
    return {"score": score_f, "acc": acc_f, "format": format_f}


ZERO: VerdictDict = {"score": 0.0, "acc": 0.0, "format": 0.0}


class _Counter:
    """Calls of this process that scored 0 for a reason other than the answer (or that timed out), and the
    (verifier, kind) pairs already warned about in this run."""

    def __init__(self) -> None:
        self.count = 0
        self.by_kind: dict[str, int] = {}
        self.warned: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def bump(self, name: str, kind: str) -> bool:
        """Count one; True when this (verifier, kind) was not warned about yet in this run."""
        with self.lock:
            self.count += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            first = (name, kind) not in self.warned
            self.warned.add((name, kind))
        return first

    def add(self, name: str, exc: BaseException, *, kind: str = "raised") -> None:
        if self.bump(name, kind):
            detail = f"{type(exc).__name__}: {exc}" if kind == "raised" else str(exc)
            logger.warning("verifier %s %s %s; the completion scored 0. Later ones are not logged but counted "
                           "(reward/verifier_errors in the training metrics, verifier_errors in an evaluation "
                           "report); a verifier that fails on every completion gives no learning signal",
                           name, kind, detail, exc_info=exc if kind == "raised" else None)


_ERRORS = _Counter()
_TIMEOUTS = _Counter()


def error_count() -> int:
    """How many verifier calls of this process scored 0 because the verifier raised or returned an invalid
    verdict, so far (the trainer logs the per-step difference as ``reward/verifier_errors``). Time-outs are
    not errors: :func:`timeout_count`."""
    return _ERRORS.count


def record_error(name: str, exc: BaseException, *, kind: str = "raised") -> None:
    """Count a verifier call that scored 0 because verifier ``name`` failed (logged once per run)."""
    _ERRORS.add(name, exc, kind=kind)


def timeout_count() -> int:
    """How many guarded calls of this process timed out so far, both kinds together (the trainer logs the
    per-step difference as ``reward/verifier_timeouts``): see :func:`timeout_counts`."""
    return _TIMEOUTS.count


def timeout_counts() -> dict[str, int]:
    """Time-outs so far by kind: ``limit`` (the call ran its own ``time_limit``: usually a pathological
    answer) and ``queue`` (it waited ``MMDPS_VERIFIER_QUEUE_TIMEOUT_S`` for a free worker process without
    getting one: the pool is too small for the load, not the answer's fault)."""
    with _TIMEOUTS.lock:
        return {"limit": _TIMEOUTS.by_kind.get("limit", 0), "queue": _TIMEOUTS.by_kind.get("queue", 0)}


def _count_timeout(exc: TimeLimitExceeded, seconds: float) -> None:
    if exc.args == ("queued",):
        if _TIMEOUTS.bump("pool", "queue"):
            logger.warning("a verifier call waited more than MMDPS_VERIFIER_QUEUE_TIMEOUT_S for a free worker "
                           "process and scored 0 without being graded: raise MMDPS_VERIFIER_WORKERS (or "
                           "MMDPS_VERIFIER_QUEUE_TIMEOUT_S). Counted in reward/verifier_timeouts")
    else:
        _TIMEOUTS.bump("call", "limit")
        logger.debug("a guarded verifier call hit its %.2fs limit", seconds)


def new_run() -> None:
    """Start a run: the next verifier error (per verifier and kind) is logged as a warning again."""
    for counter in (_ERRORS, _TIMEOUTS):
        with counter.lock:
            counter.warned.clear()


def never_raise(fn: Callable[..., VerdictDict]) -> Callable[..., VerdictDict]:
    """Wrap a verifier so that any error (bad ground truth aside) becomes a zero verdict.

    Errors in the *ground truth* are the caller's bug, so :class:`GroundTruthError` propagates, and so does
    :class:`VerifierSetupError` (the verifier cannot run as set up at all). A
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
        except (GroundTruthError, VerifierSetupError):
            raise
        except (TimeLimitExceeded, RecursionError, MemoryError):
            logger.debug("verifier %s gave up on a completion; scored 0", fn.__name__, exc_info=True)
            return dict(ZERO)
        except Exception as exc:  # noqa: BLE001 - untrusted input must not stop training
            _ERRORS.add(fn.__name__, exc)
            return dict(ZERO)

    return wrapper


def call_with_time_limit(fn: Callable[..., T], args: tuple, seconds: float = DEFAULT_TIME_LIMIT_S, *,
                         isolate: bool | None = None, kwargs: Mapping[str, Any] | None = None) -> T:
    """Run the module-level function ``fn(*args, **kwargs)`` for at most ``seconds`` from any thread.

    * main thread (and ``isolate`` not True): in-process under a SIGALRM timer (cheapest; microseconds);
    * other threads, or ``isolate=True``: in a worker process of :mod:`mmdps.verifiers.isolation`,
      killed and replaced when it overruns (works for C-level hangs too; ~0.1 ms of IPC per call).
      ``seconds`` is the call's own time there; the wait for a free worker has its own bound
      (``MMDPS_VERIFIER_QUEUE_TIMEOUT_S``);
    * inside a worker process already: in-process, nested under the worker's alarm.

    ``fn`` must be importable by name (``module:qualname``) and its args and result picklable.
    Raises :class:`TimeLimitExceeded` when a limit is hit; every time-out is counted
    (:func:`timeout_counts`).
    """
    call = functools.partial(fn, **kwargs) if kwargs else fn
    try:
        if limits.IN_WORKER:
            return call_with_signal_limit(call, args, seconds)
        if isolate is None:
            isolate = not signal_guard_usable()
        if not isolate and signal_guard_usable():
            return call_with_signal_limit(call, args, seconds)
        from mmdps.verifiers.isolation import default_pool

        return default_pool().call(fn, args, seconds, kwargs)
    except TimeLimitExceeded as exc:
        _count_timeout(exc, seconds)
        raise
