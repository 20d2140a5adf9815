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
_BROKEN: dict[str, str] = {}  # entry-point name -> why it could not be loaded


def register(cls: type[TaskPack]) -> type[TaskPack]:
    """Class decorator that makes a pack findable by ``cls.name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"task pack {cls.__qualname__} has no `name`")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    """Load the packs of the ``mmdps.tasks`` entry points; one that fails to import (a missing dependency,
    a typo in its target) is recorded in :func:`broken` instead of hiding the others."""
    for ep in entry_points(group="mmdps.tasks"):
        if ep.name in _REGISTRY or ep.name in _BROKEN:
            continue
        try:
            cls = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - a broken plug-in (even one calling sys.exit) is reported
            from mmdps.verifiers import plugin_failure

            _BROKEN[ep.name] = plugin_failure(ep.value, error)
            continue
        if not (isinstance(cls, type) and issubclass(cls, TaskPack)):
            _BROKEN[ep.name] = f"{ep.value} is {cls!r}, not a TaskPack subclass"
            continue
        _REGISTRY.setdefault(ep.name, cls)


def available() -> dict[str, type[TaskPack]]:
    """All packs that load (built-in and entry points), by name; see :func:`broken` for the others."""
    for module in BUILTIN.values():
        importlib.import_module(module)
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def broken() -> dict[str, str]:
    """Entry-point packs that failed to load, by name, with the error."""
    _load_entry_points()
    return dict(sorted(_BROKEN.items()))


def get_class(name: str) -> type[TaskPack]:
    key = ALIASES.get(name, name)
    if key not in _REGISTRY:
        if key in BUILTIN:
            importlib.import_module(BUILTIN[key])
        else:
            _load_entry_points()
    if key not in _REGISTRY and key in _BROKEN:
        raise KeyError(f"task pack {name!r} is installed but fails to load: {_BROKEN[key]}")
    if key not in _REGISTRY:
        known = ", ".join(available())
        raise KeyError(f"unknown task pack {name!r}; known packs: {known}. "
                       "Third-party packs register through the 'mmdps.tasks' entry-point group.")
    return _REGISTRY[key]


def get(name: str, **options) -> TaskPack:
    """Instantiate the pack ``name`` with ``options`` (e.g. ``template=...``)."""
    return get_class(name)(**options)


__all__ = ["TaskPack", "UnknownOptionError", "register", "get", "get_class", "available", "broken"]
