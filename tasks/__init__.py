"""Task packs, found by name: ``mmdps.tasks.get("countdown")``.

Built-in packs register themselves on import; third-party packs register through the entry-point
group ``mmdps.tasks`` (``name = "package.module:PackClass"``). See ``docs/adding_a_task.md``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from mmdps.tasks.base import TaskPack, UnknownOptionError

# Built-in packs: name -> module that defines (and registers) it. Imported lazily.
BUILTIN: dict[str, str] = {
    "math": "mmdps.tasks.math",
    "countdown": "mmdps.tasks.countdown",
    "geometry": "mmdps.tasks.geometry",
    "visual": "mmdps.tasks.visual",
}
ALIASES: dict[str, str] = {"geometry3k": "geometry", "geo3k": "geometry", "gsm8k": "math"}

_REGISTRY: dict[str, type[TaskPack]] = {}


def register(cls: type[TaskPack]) -> type[TaskPack]:
    """Class decorator that makes a pack findable by ``cls.name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"task pack {cls.__qualname__} has no `name`")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for ep in entry_points(group="mmdps.tasks"):
        if ep.name not in _REGISTRY:
            cls = ep.load()
            _REGISTRY.setdefault(ep.name, cls)


def available() -> dict[str, type[TaskPack]]:
    """All known packs (built-in and entry points), by name."""
    for module in BUILTIN.values():
        importlib.import_module(module)
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get_class(name: str) -> type[TaskPack]:
    key = ALIASES.get(name, name)
    if key not in _REGISTRY:
        if key in BUILTIN:
            importlib.import_module(BUILTIN[key])
        else:
            _load_entry_points()
    if key not in _REGISTRY:
        known = ", ".join(available())
        raise KeyError(f"unknown task pack {name!r}; known packs: {known}. "
                       "Third-party packs register through the 'mmdps.tasks' entry-point group.")
    return _REGISTRY[key]


def get(name: str, **options) -> TaskPack:
    """Instantiate the pack ``name`` with ``options`` (e.g. ``template=...``)."""
    return get_class(name)(**options)


__all__ = ["TaskPack", "UnknownOptionError", "register", "get", "get_class", "available"]
