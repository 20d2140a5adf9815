"""Benchmark presets, found by name: ``mmdps.presets.get("mathvista").load(...)``.

=================  ==========================================================================
name               benchmark
=================  ==========================================================================
``mathvista``      MathVista testmini (Lu et al., 2024): choice letters, free-form with precision
``mathverse``      MathVerse testmini (Zhang et al., 2024): five problem versions
``geoqa``          GeoQA test (Chen et al., 2021): the release's pickle / json layouts
``geoqa_plus``     GeoQA+ test (Cao and Xiao, 2022): the same layouts
``geometry3k``     Geometry3K test (Lu et al., 2021): InterGPS folders or hiyouga rows
=================  ==========================================================================

Each preset is a task pack (:class:`~mmdps.presets.base.BenchmarkPreset`); ``mmdps eval --benchmark
NAME --data PATH_OR_HUB_ID`` loads it. It follows its benchmark's published protocol (samples, decoding,
prompt: :mod:`mmdps.presets.protocols`) unless built with ``protocol="dps"`` (the DPS paper's validation
protocol). See docs/evaluation.md for each one and for adding another.
"""

from __future__ import annotations

import importlib

from mmdps.presets.base import BREAKDOWNS_KEY, BenchmarkPreset

# name -> module that defines (and registers) it; imported on first use.
BUILTIN: dict[str, str] = {
    "mathvista": "mmdps.presets.mathvista",
    "mathverse": "mmdps.presets.mathverse",
    "geoqa": "mmdps.presets.geoqa",
    "geoqa_plus": "mmdps.presets.geoqa",
    "geometry3k": "mmdps.presets.geometry3k",
}
ALIASES: dict[str, str] = {"geoqa+": "geoqa_plus", "geoqa-plus": "geoqa_plus", "geo3k": "geometry3k"}

_REGISTRY: dict[str, type[BenchmarkPreset]] = {}


def register(cls: type[BenchmarkPreset]) -> type[BenchmarkPreset]:
    """Class decorator that makes a preset findable by ``cls.name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"benchmark preset {cls.__qualname__} has no `name`")
    _REGISTRY[cls.name] = cls
    return cls


def get_class(name: str) -> type[BenchmarkPreset]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY and key in BUILTIN:
        importlib.import_module(BUILTIN[key])
    if key not in _REGISTRY:
        raise KeyError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(available())}")
    return _REGISTRY[key]


def get(name: str, **options) -> BenchmarkPreset:
    """The preset ``name`` (or an alias), built with ``options`` (``template``, ``system_prompt``,
    ``protocol``)."""
    return get_class(name)(**options)


def available() -> list[str]:
    """Names of all presets (built-in and registered), sorted."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


__all__ = ["BREAKDOWNS_KEY", "BUILTIN", "BenchmarkPreset", "available", "get", "get_class", "register"]
