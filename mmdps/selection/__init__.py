"""Prompt selectors for active RL finetuning: DPS and its baselines, vectorised with numpy.

``make_selector(name, num_prompts, **kwargs)`` builds one by name; ``SELECTORS`` maps names to classes.
See ``base.py`` for the interface and the per-step protocol, ``docs/selection.md`` for the equations.
"""

from __future__ import annotations

from mmdps.selection.base import STATE_NAMES, Selector, observed_states
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


def make_selector(name: str, num_prompts: int, **kwargs) -> Selector:
    """Build the selector called ``name`` (see ``SELECTORS``) for a pool of ``num_prompts`` prompts.

    ``rollouts_per_prompt`` is dropped for selectors that do not use it, so a trainer can always pass it;
    so is ``candidate_ratio=None``. A ``candidate_ratio`` for a selector that does not rank candidates
    (everything but ``dps`` and ``mopps``) is an error.
    """
    key = name.lower()
    if key not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; choose one of {sorted(SELECTORS)}")
    cls = SELECTORS[key]
    if cls in (DPSSelector, UniformSelector, CDASSelector):
        kwargs.pop("rollouts_per_prompt", None)
    if "candidate_ratio" in kwargs and not cls.takes_candidates:
        if kwargs.pop("candidate_ratio") is not None:
            raise ValueError(f"selector {name!r} does not rank candidates, so candidate_ratio does not apply; "
                             "leave it None (selectors that rank candidates: dps, mopps)")
    try:
        return cls(num_prompts, **kwargs)
    except TypeError as err:  # unknown keyword: say which selector and what it accepts
        raise ValueError(f"bad arguments for selector {name!r}: {err}") from err


__all__ = [
    "SELECTORS", "STATE_NAMES", "CDASSelector", "DPSSelector", "DoPRSelector", "DynamicSamplingSelector",
    "GRESOSelector", "MoPPSSelector", "Selector", "UniformSelector", "make_selector", "observed_states",
]
