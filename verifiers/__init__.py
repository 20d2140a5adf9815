"""Rule-based verifiers, found by name: ``mmdps.verifiers.get("math")(completion, ground_truth, **item)``.

Every verifier returns ``{"score": float, "acc": float, "format": float}`` (see :mod:`.base`), never
raises on model output and returns within a bounded time on any string.

=================  ============================================================================
name               what it grades
=================  ============================================================================
``math``           last ``\\boxed{}`` vs gold with math-verify; score = acc
``math_think``     same, grading only the text after ``</think>`` (DeepScaleR validation)
``math_hashes``    the answer after the last ``####`` (GSM8K), else the last ``\\boxed{}`` (format 0)
``math_answer``    the answer after the last ``Answer:`` (DAPO), else the last ``\\boxed{}`` (format 0)
``countdown``      last ``<answer>`` expression; score 1 / 0.1 (well-formed, wrong) / 0
``geometry``       boxed value or choice letter; score 1 / 0.1 x format / 0
``integer``        the whole completion is the integer answer; score = acc
``format_boxed``   ``<think>...</think>`` then ``\\boxed{}``; score = format
``format_answer``  ``<think>...</think>`` then ``<answer>...</answer>``; score = format
=================  ============================================================================

Aliases: ``gsm8k`` (= ``math_hashes``), ``deepscaler`` (= ``math_think``), ``geo3k``, ``geometry3k``.
Add your own with :func:`register` (it runs in a verifier worker process under a time limit, see
:mod:`.plugins`), or a reward function from a file with :func:`.custom.register_reward_functions`.
Installed packages make theirs visible to every process (a verl reward worker, a TRL script that never
imports the pack) through the entry-point group
``mmdps.verifiers`` (``name = "package.module:function"``); a name not found otherwise is also looked
for in the task packs of the ``mmdps.tasks`` group, which register their verifiers on import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from mmdps.verifiers.base import (
    CORRECT_ACC,
    MAX_ABS_SCORE,
    GroundTruthError,
    InvalidVerdictError,
    NotAVerdictError,
    TimeLimitExceeded,
    Verdict,
    VerdictDict,
    VerifierSetupError,
    is_correct,
    record_error,
    success_rate,
    verdict,
)
from mmdps.verifiers.plugins import PLUGIN_TIME_LIMIT_S, PluginVerifier

Verifier = Callable[..., VerdictDict]

# name -> "module:function", imported on first use (math-verify/sympy import takes ~0.5 s).
_BUILTIN: dict[str, str] = {
    "math": "mmdps.verifiers.math:verify_math",
    "math_think": "mmdps.verifiers.math:verify_math_think",
    "math_hashes": "mmdps.verifiers.math:verify_math_hashes",
    "math_answer": "mmdps.verifiers.math:verify_math_answer_line",
    "countdown": "mmdps.verifiers.countdown:verify_countdown",
    "geometry": "mmdps.verifiers.geometry:verify_geometry",
    "integer": "mmdps.verifiers.integer:verify_integer",
    "format_boxed": "mmdps.verifiers.format:verify_think_boxed",
    "format_answer": "mmdps.verifiers.format:verify_think_answer",
}
_ALIASES: dict[str, str] = {"gsm8k": "math_hashes", "deepscaler": "math_think", "geo3k": "geometry",
                            "geometry3k": "geometry"}
_REGISTRY: dict[str, Verifier] = {}


def register(name: str, fn: Verifier | None = None, *, isolate: bool | None = None,
             time_limit: float = PLUGIN_TIME_LIMIT_S) -> Any:
    """Make ``fn`` findable as ``get(name)``; usable as ``@register("name")`` (which returns ``fn`` itself).

    ``fn(completion, ground_truth, **item_metadata)`` must return a verdict dict and accept and ignore
    unknown keyword arguments. A function from outside mmdps gets the built-ins' guarantees
    (:class:`~mmdps.verifiers.plugins.PluginVerifier`): it runs in a verifier worker process for at most
    ``time_limit`` seconds, and an exception or an invalid verdict scores 0 and is counted. That needs a
    module-level function (of a module or a ``.py`` file); a closure, a lambda or a function of
    ``__main__`` is refused here unless ``isolate=False`` (or ``MMDPS_VERIFIER_ISOLATION=0``), which runs it
    in the calling thread without a time bound.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"verifier name must be a non-empty string, got {name!r}")

    def add(f: Verifier) -> Verifier:
        if not callable(f):
            raise TypeError(f"verifier {name!r} must be callable, got {type(f).__name__}")
        trusted = isolate is None and (getattr(f, "__module__", None) or "").startswith("mmdps.")
        _REGISTRY[name] = f if trusted else PluginVerifier(name, f, isolate=isolate, time_limit=time_limit)
        return f

    return add if fn is None else add(fn)


#: Entry-point group of third-party verifiers: ``name = "package.module:function"``.
ENTRY_POINT_GROUP = "mmdps.verifiers"
_BROKEN: dict[str, str] = {}  # entry-point name -> why it could not be loaded


def _discover() -> None:
    """Load the ``mmdps.verifiers`` entry points, then import the ``mmdps.tasks`` packs (whose modules
    register their verifiers). One that fails to import (an exception, even ``sys.exit``) is remembered
    with its error, not raised: it must not hide the others."""
    for group in (ENTRY_POINT_GROUP, "mmdps.tasks"):
        for ep in entry_points(group=group):
            key = f"{group}:{ep.name}"
            if (group == ENTRY_POINT_GROUP and ep.name in _REGISTRY) or key in _BROKEN:
                continue
            try:
                loaded = ep.load()
                if group == ENTRY_POINT_GROUP:
                    register(ep.name, loaded)
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # noqa: BLE001 - a broken plug-in is reported, not fatal
                _BROKEN[key] = plugin_failure(ep.value, error)


def plugin_failure(target: str, error: BaseException) -> str:
    """How a plug-in failed to load, for listings and errors: ``module:attr: Type: message``."""
    if isinstance(error, SystemExit):
        return f"{target}: SystemExit({error.code!r}) (the module called sys.exit while being imported)"
    return f"{target}: {type(error).__name__}: {error}"


def broken() -> dict[str, str]:
    """Entry points (``group:name``) that failed to load, with why."""
    _discover()
    return dict(sorted(_BROKEN.items()))


def get(name: str) -> Verifier:
    """The verifier registered under ``name`` (or an alias), looking through the installed entry points
    when it is not known yet; ``KeyError`` lists the known names and how to make one visible."""
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY and key in _BUILTIN:
        module, _, attr = _BUILTIN[key].partition(":")
        _REGISTRY[key] = getattr(importlib.import_module(module), attr)
    if key not in _REGISTRY:
        _discover()
    if key not in _REGISTRY:
        broken = "".join(f" Entry point {k} failed to load ({why})." for k, why in sorted(_BROKEN.items()))
        raise KeyError(
            f"unknown verifier {name!r}; known: {', '.join(available())}.{broken} To make a verifier visible, "
            "call mmdps.verifiers.register(name, fn) before the look-up (in every process that scores: a verl "
            "reward worker does not run your training script), import the task pack that registers it, or "
            f'declare it in your package: [project.entry-points."{ENTRY_POINT_GROUP}"] {name} = '
            '"your_package.module:function"')
    return _REGISTRY[key]


def available() -> list[str]:
    """Names of all verifiers (built-in, registered, entry points and aliases), sorted."""
    _discover()
    return sorted(set(_BUILTIN) | set(_REGISTRY) | set(_ALIASES))


def check_environment() -> None:
    """Validate the ``MMDPS_VERIFIER_*`` environment variables now (a :class:`VerifierSetupError` naming the
    variable and the fix), so that a bad one stops a run before the model loads rather than at its first
    verifier call."""
    from mmdps.verifiers.isolation import pool_settings
    from mmdps.verifiers.plugins import isolation_default

    pool_settings()
    isolation_default()


def score_completion(item: Any, completion: str, verify: Verifier | None = None) -> Verdict:
    """Score one completion of ``item`` with its verifier: the one scoring function of the library (the
    trainer, the evaluation and the task packs all call it).

    ``item`` is an :class:`~mmdps.data.item.Item` (or anything with ``verifier``, ``ground_truth``,
    ``metadata``, ``id`` and ``task``); ``verify`` defaults to ``get(item.verifier)`` (pass it to skip the
    look-up in a loop). Every verdict is validated here (:meth:`Verdict.from_verifier`): one with a bad
    value, like a verifier that raises, scores 0 and is counted (:func:`~mmdps.verifiers.base.error_count`).
    What stops the caller, naming the verifier and the item: a :class:`GroundTruthError` (the data is
    wrong), a :class:`VerifierSetupError` (the verifier cannot run as set up) and a result that is not a
    verdict dict at all (:class:`NotAVerdictError`); all three are ``ValueError``.
    """
    verify = verify or get(item.verifier)
    where = f"verifier {item.verifier!r} on item {item.id} (task {item.task!r})"
    try:
        raw = verify(completion, item.ground_truth, **item.metadata)
    except (GroundTruthError, VerifierSetupError, NotAVerdictError) as error:
        raise type(error)(f"verifier {item.verifier!r} failed on item {item.id} (task {item.task!r}): "
                          f"{error}") from error
    except Exception as error:  # noqa: BLE001 - model output must not stop training; counted
        record_error(item.verifier, error)
        return Verdict(0.0, 0.0, 0.0)
    return Verdict.from_verifier(raw, verifier=item.verifier, source=where)


__all__ = ["get", "register", "available", "score_completion", "verdict", "Verdict", "VerdictDict", "Verifier",
           "CORRECT_ACC", "MAX_ABS_SCORE", "is_correct", "success_rate", "GroundTruthError", "TimeLimitExceeded",
           "VerifierSetupError",
           "InvalidVerdictError", "NotAVerdictError", "PluginVerifier", "broken", "plugin_failure", "check_environment"]
