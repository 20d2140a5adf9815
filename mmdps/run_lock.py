"""One run per ``output_dir``: an exclusive lock file, and a clear error when the folder cannot be made.

Two runs in one folder would delete each other's checkpoints (a save prunes old ones), so the trainer's
main process takes :func:`lock_output_dir` before anything is written there.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

LOCK_FILE = ".mmdps-run.lock"


class OutputDirInUseError(ValueError):
    """Another live run holds the ``output_dir`` lock; the message names its pid and host."""


class OutputDirError(ValueError):
    """``output_dir`` cannot be created or written (a file in the way, no permission, a read-only or full disk)."""


class RunLock:
    """An exclusive ``flock`` on ``<output_dir>/.mmdps-run.lock`` holding the owner's pid and host.

    The kernel drops the lock when its process dies (kill -9 included), so a lock left by a dead run
    is taken over with a warning. Held per process: a second trainer of the same process on the same
    folder (a resume test, a notebook) shares it. :meth:`release` lets it go.
    """

    _held: dict[str, list[Any]] = {}  # resolved lock path -> [fd, holders]
    _guard = threading.Lock()

    def __init__(self, path: Path):
        self.path = path
        self._released = False

    def release(self) -> None:
        with self._guard:
            if self._released:
                return
            self._released = True
            key = str(self.path.resolve())
            entry = self._held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._held[key]
            fd = entry[0]
            # Empty the file but keep it: unlinking a locked file lets two runs lock two different files.
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def os_error_reason(exc: OSError) -> str:
    """A short, plain cause of a file-system error, for messages that also say what to do."""
    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EACCES: "no permission", errno.EPERM: "no permission", errno.EROFS: "a read-only file system"}
    return reasons.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def prepare_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir``; :class:`OutputDirError` names the folder when it or a parent is a file, or when
    it cannot be created (no permission, read-only file system)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"output_dir={os.fspath(output_dir)} is a file, not a folder; choose another output_dir "
                             "or move the file away")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise OutputDirError(f"output_dir={os.fspath(output_dir)} cannot be created: a parent path is a file "
                             f"({exc.filename}); choose another output_dir") from exc
    except OSError as exc:
        raise OutputDirError(f"output_dir={os.fspath(output_dir)} cannot be created ({os_error_reason(exc)}: "
                             f"{exc.filename or path}); choose a folder you can write to") from exc
    return path


def lock_output_dir(output_dir: str | os.PathLike) -> RunLock:
    """Create ``output_dir`` and lock it for this run; :class:`OutputDirInUseError` when a live run holds it,
    :class:`OutputDirError` when the folder cannot be created or written."""
    folder = prepare_output_dir(output_dir)
    path = folder / LOCK_FILE
    key = str(path.resolve())
    with RunLock._guard:
        entry = RunLock._held.get(key)
        if entry is not None:
            entry[1] += 1
            return RunLock(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputDirError(f"output_dir={os.fspath(output_dir)} is not writable ({os_error_reason(exc)}: "
                                 f"cannot create {path}); choose a folder you can write to") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise OutputDirInUseError(
                f"output_dir {folder} is in use by another run ({holder}); wait for it to finish or choose another "
                f"output_dir (two runs in one folder delete each other's checkpoints)") from None
        previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if previous:
            warnings.warn(f"{path}: taking over a stale lock ({_describe(previous)}; that run ended without "
                          "releasing it)", stacklevel=2)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except OSError as exc:
            os.close(fd)  # closing drops the flock
            raise OutputDirError(f"output_dir={os.fspath(output_dir)} is not writable ({os_error_reason(exc)}: "
                                 f"cannot write {path}); free space or choose another output_dir") from exc
        RunLock._held[key] = [fd, 1]
        return RunLock(path)


def _lock_holder(fd: int) -> str:
    return _describe(os.pread(fd, 4096, 0).decode("utf-8", "replace"))


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "owner unknown"
