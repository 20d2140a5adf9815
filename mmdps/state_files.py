"""The files of a checkpoint folder: manifests (sizes and SHA-256), atomic commit by rename, and nested
state dicts as JSON + npz (no pickle).

Used by :mod:`mmdps.checkpoint` and for the selector state mmdps adds to another trainer's checkpoint
(TRL, :func:`save_state_folder`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

MANIFEST_FILE = "manifest.json"
_ARRAY_TAG = "__ndarray__"
T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint is damaged or unreadable; the message names the file and what to do."""


# ---------------------------------------------------------------------- integrity
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record every file of ``folder`` (size and SHA-256) in ``manifest.json``."""
    files = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        files[file.relative_to(folder).as_posix()] = {"size": file.stat().st_size, "sha256": _sha256(file)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=1))


def verify_checkpoint(folder: str | os.PathLike) -> list[str]:
    """What is wrong with checkpoint ``folder`` per its manifest, one line per file (empty: intact).

    The manifest is written last, so a folder without one is incomplete (a save that did not finish, a
    folder made by hand): that is reported as a problem too.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        return [f"{manifest} is missing (an incomplete save, or a folder mmdps did not write)"]
    try:
        files = json.loads(manifest.read_text())["files"]
        entries = [(name, int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{manifest} is unreadable ({exc})"]
    problems = []
    for name, size, checksum in entries:
        file = folder / name
        if not file.is_file():
            problems.append(f"{file} is missing")
        elif file.stat().st_size != size:
            problems.append(f"{file} is {file.stat().st_size:,} bytes, the manifest says {size:,} (truncated?)")
        elif _sha256(file) != checksum:
            problems.append(f"{file} does not match its checksum (corrupted)")
    return problems


def summary(problems: Sequence[str]) -> str:
    """The first problem, and how many more there are."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


def read_or_fail(path: Path, reader: Callable[[Path], T]) -> T:
    """``reader(path)``, with any failure turned into a one-line :class:`CheckpointError` naming ``path``."""
    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - torch / numpy / safetensors raise many kinds on bad files
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); the checkpoint "
                              "is damaged: resume from another one (resume=auto picks the newest intact "
                              "one)") from exc


def commit_folder(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; an existing ``final`` (a re-save of the same step) is replaced."""
    if final.exists():
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- selector state (JSON + npz, no pickle)
def save_selector_state(state: dict[str, Any], folder: Path) -> None:
    arrays: dict[str, np.ndarray] = {}

    def encode(value: Any, key: str) -> Any:
        if isinstance(value, np.ndarray):
            arrays[key] = value
            return {_ARRAY_TAG: key}
        if isinstance(value, dict):
            return {str(k): encode(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v, f"{key}.{i}") for i, v in enumerate(value)]
        if isinstance(value, np.generic):
            return value.item()
        return value

    document = {key: encode(value, key) for key, value in state.items()}
    (folder / "selector.json").write_text(json.dumps(document, indent=1))
    np.savez(folder / "selector_arrays.npz", allow_pickle=False, **arrays)


def load_selector_state(folder: Path) -> dict[str, Any]:
    document = read_or_fail(folder / "selector.json", lambda p: json.loads(p.read_text()))

    def read_arrays(path: Path) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as loaded:
            return {key: loaded[key] for key in loaded.files}

    arrays = read_or_fail(folder / "selector_arrays.npz", read_arrays)

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {_ARRAY_TAG}:
                return arrays[value[_ARRAY_TAG]]
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return {key: decode(value) for key, value in document.items()}


def save_state_folder(folder: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a selector-style ``state`` (see :func:`save_selector_state`) as ``folder``, atomically: into a
    hidden sibling with a manifest, then renamed into place (replacing an older ``folder``). Used for the
    selector state that mmdps adds to another trainer's checkpoint (TRL)."""
    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_selector_state(state, tmp)
    write_manifest(tmp)
    commit_folder(tmp, folder)
    return folder


def load_state_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """Read a folder written by :func:`save_state_folder`; :class:`CheckpointError` names a damaged file."""
    folder = Path(folder)
    problems = verify_checkpoint(folder)
    if problems:
        raise CheckpointError(f"{folder} is damaged: {summary(problems)}; resume from another checkpoint")
    return load_selector_state(folder)
