"""Bring your own reward function: ``path/to/file.py:fn`` instead of a task pack's verifier.

What verl (``custom_reward_function.path`` / ``name``), EasyR1 (``path:fn``) and TRL (``reward_funcs`` with
``reward_weights``) offer, with mmdps's guarantees: each function runs in a verifier worker process (the
worker imports the file itself) under a time limit, and one that raises or times out scores 0 and is
counted (``reward/verifier_errors``, ``reward/verifier_timeouts``).

The contract::

    def fn(completion: str, ground_truth, **metadata) -> dict | float

* a dict must have ``score`` and may have ``acc`` (1 correct, 0 not: what selectors and pass@k count)
  and ``format`` (1 when the layout is right);
* a float (or int, bool) is the score; it is also the accuracy when it is exactly 0 or 1. Any other
  value needs ``success_threshold`` (``acc = score >= success_threshold``); without one, the first such
  value stops the run (:class:`RewardFunctionError`, naming the function and both fixes), since a
  selector fed a made-up accuracy would select prompts on noise.

With several functions: ``score = sum(weight_i * score_i)``; ``acc`` comes from the first function (list
the accuracy reward first; the threshold applies to it alone); ``format`` from the first function whose
dict has one, else 1.

The trainer and ``mmdps eval`` call :func:`register_reward_functions` once and point every item at the
name it returns (``dataclasses.replace(item, verifier=name)``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmdps.verifiers.base import ZERO, Verdict, VerdictDict, VerifierSetupError
from mmdps.verifiers.plugins import FAILED, PLUGIN_TIME_LIMIT_S, PluginVerifier, guarded

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class RewardFunctionError(VerifierSetupError):
    """A reward function cannot be used as given (a bad spec, a missing file or function, a return value
    that is neither a dict with ``score`` nor a number, a shaped float without ``success_threshold``).
    Stops the run: no answer could be scored right."""


def parse_spec(spec: Any, *, key: str = "reward_function") -> tuple[Path, str]:
    """``"path/to/file.py:fn"`` -> ``(Path, "fn")``, checked: the file exists and ``:fn`` is a name."""
    if not isinstance(spec, str) or not spec.strip():
        raise RewardFunctionError(f"{key} entries must be strings 'path/to/file.py:function', got {spec!r}")
    path, sep, name = spec.strip().rpartition(":")
    if not sep or not path or not _IDENTIFIER.fullmatch(name):
        raise RewardFunctionError(f"{key}={spec!r} does not name a function: write 'path/to/file.py:function' "
                                  "(the function after the last ':')")
    file = Path(path).expanduser()
    if file.suffix != ".py":
        raise RewardFunctionError(f"{key}={spec!r}: {path} is not a .py file; write 'path/to/file.py:function'")
    if not file.is_file():
        raise RewardFunctionError(f"{key}={spec!r}: file {file.resolve()} not found (relative paths are read "
                                  "from the current folder)")
    return file.resolve(), name


def check_reward_settings(reward_function: Any, reward_weights: Any = None, success_threshold: Any = None) -> None:
    """The config checks of ``reward_function``, ``reward_weights`` and ``success_threshold``: a
    :class:`RewardFunctionError` (a ``ValueError``) naming the key and the fix."""
    if reward_function is None:
        for key, value in (("reward_weights", reward_weights), ("success_threshold", success_threshold)):
            if value is not None:
                raise RewardFunctionError(f"{key} applies to reward_function, which is not set: set reward_function "
                                          f"or remove {key}")
        return
    specs = [reward_function] if isinstance(reward_function, str) else list(reward_function)
    if not specs:
        raise RewardFunctionError("reward_function is an empty list: name at least one 'path/to/file.py:function'")
    for spec in specs:
        parse_spec(spec)
    if reward_weights is not None:
        weights = list(reward_weights)
        if len(weights) != len(specs):
            raise RewardFunctionError(f"reward_weights has {len(weights)} weight(s) for {len(specs)} reward "
                                      "function(s): give one weight per function (or none: all 1)")
        for weight in weights:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise RewardFunctionError(f"reward_weights entries must be finite numbers, got {weight!r}")
    if success_threshold is not None and (isinstance(success_threshold, bool)
                                          or not isinstance(success_threshold, (int, float))
                                          or not math.isfinite(success_threshold)):
        raise RewardFunctionError(f"success_threshold must be a finite number (acc = score >= it), "
                                  f"got {success_threshold!r}")


def load_reward_function(spec: str) -> Callable[..., Any]:
    """Import the file of ``spec`` (once per process, under a name derived from its path, which a verifier
    worker reuses) and return its function."""
    file, name = parse_spec(spec)
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    module_name = f"mmdps_reward_{re.sub(r'[^0-9A-Za-z_]', '_', file.stem)}_{digest}"
    module = sys.modules.get(module_name)
    if module is None:
        module_spec = importlib.util.spec_from_file_location(module_name, file)
        if module_spec is None or module_spec.loader is None:
            raise RewardFunctionError(f"reward_function={spec!r}: {file} cannot be imported as a module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException as error:
            del sys.modules[module_name]
            if isinstance(error, KeyboardInterrupt):
                raise
            raise RewardFunctionError(f"reward_function={spec!r}: importing {file} failed: "
                                      f"{type(error).__name__}: {error}") from error
    fn: Any = module
    for part in name.split("."):
        fn = getattr(fn, part, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module_name)
        raise RewardFunctionError(f"reward_function={spec!r}: {file} has no function {name!r} "
                                  f"(functions there: {', '.join(found) or 'none'})")
    return fn


class RewardFunctionVerifier:
    """Reward functions as one verifier (see the module docstring for the combination rule)."""

    def __init__(self, name: str, specs: Sequence[str], weights: Sequence[float], success_threshold: float | None,
                 *, isolate: bool | None, time_limit: float):
        self.name, self.specs = name, list(specs)
        self.weights = [float(w) for w in weights]
        self.success_threshold = success_threshold
        self.functions = [PluginVerifier(f"{name} ({spec})", load_reward_function(spec), isolate=isolate,
                                         time_limit=time_limit) for spec in self.specs]

    def __repr__(self) -> str:
        return f"RewardFunctionVerifier({self.name!r})"

    def __call__(self, completion: Any, ground_truth: Any = None, /, **metadata: Any) -> VerdictDict:
        if not isinstance(completion, str):
            return dict(ZERO)
        score, acc, format_ = 0.0, 0.0, None
        for index, (spec, weight, function) in enumerate(zip(self.specs, self.weights, self.functions, strict=True)):
            raw = guarded(function.name, function.run, completion, ground_truth, metadata)
            if raw is FAILED:  # a time-out or an exception (counted): the whole verdict is 0, as for a verifier
                return dict(ZERO)
            part_score, part_acc, part_format = self._parts(raw, spec, accuracy=index == 0)
            score += weight * part_score
            if index == 0:
                acc = part_acc
            if format_ is None:
                format_ = part_format
        raw_verdict = {"score": score, "acc": acc, "format": 1.0 if format_ is None else format_}
        return Verdict.from_verifier(raw_verdict, verifier=self.name).as_dict()

    def _parts(self, raw: Any, spec: str, *, accuracy: bool) -> tuple[Any, Any, Any]:
        """``(score, acc, format)`` of one function's return value; ``format`` None when it gave none."""
        if isinstance(raw, Mapping):
            if "score" not in raw:
                raise RewardFunctionError(f"reward function {spec} returned {raw!r}, a dict without 'score': return "
                                          "{'score': s} (optionally with 'acc' and 'format') or a float")
            score, acc, format_ = raw["score"], raw.get("acc"), raw.get("format")
        elif isinstance(raw, (int, float)) or _is_number(raw):
            score, acc, format_ = raw, None, None
        else:
            raise RewardFunctionError(f"reward function {spec} returned {type(raw).__name__} {raw!r:.80}: it must "
                                      "return a float or a dict with 'score' (and optionally 'acc', 'format')")
        if accuracy and acc is None:
            acc = self._acc_from_score(score, spec)
        return score, acc, format_

    def _acc_from_score(self, score: Any, spec: str) -> Any:
        if not _is_number(score) or not math.isfinite(float(score)):
            return score  # not a number: the verdict check counts it as invalid
        value = float(score)
        if value in (0.0, 1.0):
            return value
        if self.success_threshold is not None:
            return 1.0 if value >= self.success_threshold else 0.0
        raise RewardFunctionError(
            f"reward function {spec} returned the score {value:g}, which is neither 0 nor 1, so mmdps cannot tell "
            "whether the answer is correct (acc: what the prompt selector, success rates and pass@k count). "
            "Either set success_threshold (acc = score >= threshold: config key success_threshold, or "
            "register_reward_functions(..., success_threshold=0.5)), or return a dict with the accuracy: "
            "{'score': score, 'acc': 1.0 if correct else 0.0}")


def _is_number(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def register_reward_functions(specs: str | Sequence[str], weights: Sequence[float] | None = None,
                              success_threshold: float | None = None, *, isolate: bool | None = None,
                              time_limit: float = PLUGIN_TIME_LIMIT_S) -> str:
    """Register reward functions (``"path/to/file.py:fn"``, one or several) as one verifier; return its name.

    Point items at it with ``dataclasses.replace(item, verifier=name)``. ``weights`` (default all 1) weight
    the scores; ``success_threshold`` turns the first function's shaped scores into an accuracy. Each
    function runs in a verifier worker process for at most ``time_limit`` seconds unless ``isolate=False``
    (or ``MMDPS_VERIFIER_ISOLATION=0``). Bad specs raise :class:`RewardFunctionError` now.
    """
    from mmdps.verifiers import register

    spec_list = [specs] if isinstance(specs, str) else list(specs)
    check_reward_settings(spec_list, weights, success_threshold)
    weight_list = [1.0] * len(spec_list) if weights is None else [float(w) for w in weights]
    parts = [spec if weight == 1.0 else f"{weight:g}*{spec}"
             for spec, weight in zip(spec_list, weight_list, strict=True)]
    threshold = "" if success_threshold is None else f"@{success_threshold:g}"
    name = f"reward_function:{'+'.join(parts)}{threshold}"
    # Registered as it is: each function is guarded (isolated, counted) by its own PluginVerifier.
    register(name, RewardFunctionVerifier(name, spec_list, weight_list, success_threshold, isolate=isolate,
                                          time_limit=time_limit))
    return name
