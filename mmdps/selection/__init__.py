"""Prompt selectors for active RL finetuning: DPS and its baselines, vectorised with numpy.

``make_selector(name, num_prompts, selector_kwargs, candidate_ratio=..., **kwargs)`` builds one by name
and ``check_selector`` checks the same arguments before any data exists; ``SELECTORS`` maps names to classes.
See ``base.py`` for the interface and the per-step protocol, ``docs/selection.md`` for the equations.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

from mmdps.selection.base import STATE_NAMES, Selector, check_candidate_ratio, observed_states
from mmdps.selection.cdas import CDASSelector
from mmdps.selection.dopr import DoPRSelector
from mmdps.selection.dps import DPSSelector
from mmdps.selection.dynamic_sampling import DynamicSamplingSelector
from mmdps.selection.greso import GRESOSelector
from mmdps.selection.mopps import MoPPSSelector
from mmdps.selection.uniform import UniformSelector

SELECTORS: dict[str, type[Selector]] = {
    "uniform": UniformSelector,
    "ds": DynamicSamplingSelector,
    "dapo": DynamicSamplingSelector,
    "mopps": MoPPSSelector,
    "dps": DPSSelector,
    "cdas": CDASSelector,
    "dopr": DoPRSelector,
    "greso": GRESOSelector,
}


def make_selector(name: str, num_prompts: int, selector_kwargs: Mapping[str, Any] | None = None, *,
                  candidate_ratio: float | None = None, **kwargs: Any) -> Selector:
    """Build the selector called ``name`` (see ``SELECTORS``) for a pool of ``num_prompts`` prompts.

    Options come from ``selector_kwargs`` (a user's mapping, such as a config's ``selector_kwargs``) and from
    ``kwargs`` (what the calling trainer supplies, such as ``seed`` and ``rollouts_per_prompt``); an option
    in both is an error. ``rollouts_per_prompt`` from ``kwargs`` is dropped for the selectors that do not use
    it, so a trainer can always pass it.

    ``candidate_ratio`` is set in one place: this keyword or ``selector_kwargs["candidate_ratio"]``, never
    both. ``None`` (the default) ranks the whole pool, for every selector that ranks candidates (``dps``,
    ``mopps``); a number r >= 1 ranks ``ceil(r x batch)`` candidates; a number is refused for the other
    selectors. Every error is a ``ValueError`` naming the selector and the option.
    """
    cls = _selector_class(name)
    options = dict(selector_kwargs or {})
    both = sorted(set(options) & set(kwargs))
    if both:
        raise ValueError(f"selector {name!r}: option(s) {', '.join(both)} given twice, in selector_kwargs "
                         f"({', '.join(f'{k}={options[k]!r}' for k in both)}) and by the caller "
                         f"({', '.join(f'{k}={kwargs[k]!r}' for k in both)}); keep one")
    if "candidate_ratio" in options and candidate_ratio is not None:
        raise ValueError(f"candidate_ratio is set twice for selector {name!r}: {candidate_ratio!r} at the top level "
                         f"and {options['candidate_ratio']!r} in selector_kwargs; keep one")
    ratio = check_candidate_ratio(options.pop("candidate_ratio", candidate_ratio), name, cls.takes_candidates)
    params = inspect.signature(cls.__init__).parameters
    if "rollouts_per_prompt" not in params:
        kwargs.pop("rollouts_per_prompt", None)
    options.update(kwargs)
    _check_options(name, cls, options)
    if cls.takes_candidates:
        options["candidate_ratio"] = ratio
    try:
        return cls(num_prompts, **options)
    except TypeError as err:  # a constructor's own check that met an unexpected type
        raise ValueError(f"bad arguments for selector {name!r}: {err}") from err


def check_selector(name: str, selector_kwargs: Mapping[str, Any] | None = None, *,
                   candidate_ratio: float | None = None, **kwargs: Any) -> None:
    """Raise the ``ValueError`` that ``make_selector`` would raise for these arguments, without a prompt
    pool (before any model or data exists): the name, the option names, types and values, candidate_ratio."""
    make_selector(name, 1, selector_kwargs, candidate_ratio=candidate_ratio, **kwargs)


def _selector_class(name: str) -> type[Selector]:
    key = name.lower() if isinstance(name, str) else name
    if key not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; choose one of {sorted(SELECTORS)}")
    return SELECTORS[key]


# What a constructor annotation accepts, and how to say it.
_ACCEPTS: dict[Any, tuple[str, Any]] = {
    float: ("a number", lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)),
    int: ("an integer", lambda v: (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
          or (isinstance(v, (float, np.floating)) and float(v).is_integer())),
    bool: ("true or false", lambda v: isinstance(v, (bool, np.bool_))),
    str: ("a string", lambda v: isinstance(v, str)),
    np.ndarray: ("a list of numbers", lambda v: isinstance(v, (list, tuple, np.ndarray))),
    type(None): ("None", lambda v: v is None),
}


def _check_options(name: str, cls: type[Selector], options: dict[str, Any]) -> None:
    """Unknown option names and values of the wrong type, named with what the option takes (a selector
    registered from elsewhere with ``**kwargs`` or unresolvable annotations is left to its constructor)."""
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "num_prompts")]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):
        hints = {}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in options.items():
        if key not in valid and not open_ended:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            raise ValueError(f"bad arguments for selector {name!r}: unexpected keyword argument {key!r}"
                             f"{f' (did you mean {close[0]!r}?)' if close else ''}; its options: {', '.join(valid)}")
        if key not in hints:
            continue
        kinds = typing.get_args(hints[key]) or (hints[key],)
        accepted = [_ACCEPTS[kind] for kind in kinds if kind in _ACCEPTS]
        if accepted and not any(check(value) for _, check in accepted):
            raise ValueError(f"selector {name!r}: option {key} must be {' or '.join(what for what, _ in accepted)}, "
                             f"got {value!r}")


__all__ = [
    "SELECTORS", "STATE_NAMES", "CDASSelector", "DPSSelector", "DoPRSelector", "DynamicSamplingSelector",
    "GRESOSelector", "MoPPSSelector", "Selector", "UniformSelector", "check_candidate_ratio", "check_selector",
    "make_selector", "observed_states",
]
