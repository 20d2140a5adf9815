"""Stopping a run on SIGTERM (preemption, ``kill``, a scheduler's time limit): the signal only sets a flag; the
trainer finishes the step it is in, all ranks agree to stop at the same step, it saves a checkpoint and returns.
A second SIGTERM ends the process at once (the default action)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

logger = logging.getLogger(__name__)


class StopOnSignal:
    """While installed (or entered), SIGTERM sets :attr:`signal_name` instead of ending the process. Outside
    the main thread (a notebook's worker, a test runner's thread) signals cannot be caught: it does nothing."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self.signal_name: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is None:
            self.signal_name = name
            logger.warning("%s received: stopping after the current step with a checkpoint (send it again to "
                           "stop at once, without one)", name)
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Put the handlers found by :meth:`install` back."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> StopOnSignal:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()
