"""Collectives that cannot hang forever: a rank that raises or stops answering makes the others fail with an
error naming their rank and the collective they were in, instead of waiting without end.

Two layers: the process group's own timeout (:func:`process_group_kwargs`, passed to ``Accelerator``; gloo and
NCCL end a collective that outlasts it), and a watchdog around each call here that names the collective when
it has waited ``timeout_s`` and ends the process ``EXIT_GRACE_S`` later if the backend still has not given up.
Without ``torch.distributed`` initialised (one process) every function returns at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["CollectiveError", "DEFAULT_TIMEOUT_S", "any_rank", "barrier", "gather_with_timeout",
           "process_group_kwargs", "reduce_with_timeout"]

DEFAULT_TIMEOUT_S = 1800.0
EXIT_GRACE_S = 60.0  # after the named error, how long the backend gets to raise before the process ends
EXIT_CODE = 124  # the exit status of a process ended by the watchdog (as `timeout` uses)


class CollectiveError(RuntimeError):
    """A collective failed or timed out on this rank, because another rank failed, hung or left."""


def process_group_kwargs(timeout_s: float):
    """The ``kwargs_handlers`` entry that gives accelerate's process group ``timeout_s``: DDP's gradient
    all-reduce and accelerate's own ``gather`` / ``reduce`` / ``wait_for_everyone`` then end after it too."""
    from accelerate.utils import InitProcessGroupKwargs

    return InitProcessGroupKwargs(timeout=timedelta(seconds=float(timeout_s)))


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _message(rank: int, world: int, what: str, timeout_s: float, detail: str) -> str:
    return (f"rank {rank} of {world}: {what} {detail}; another rank failed, hangs or left (see its log; the first "
            f"error there is the cause). Waiting is bounded by collective_timeout_s={timeout_s:g}; raise it if a "
            "rank legitimately works longer between collectives (e.g. a long evaluation)")


@contextlib.contextmanager
def guarded(what: str, timeout_s: float) -> Iterator[None]:
    """Run a collective with a watchdog: a backend error becomes a :class:`CollectiveError` naming the rank and
    ``what``; past ``timeout_s`` the watchdog logs that error, and ``EXIT_GRACE_S`` later ends the process (exit
    status ``EXIT_CODE``) if the collective is still blocked, so a rank never waits forever."""
    rank, world = rank_and_world()
    done = threading.Event()

    def watch() -> None:
        if done.wait(timeout_s):
            return
        message = _message(rank, world, what, timeout_s, f"has waited {timeout_s:g} s for the other ranks")
        logger.error("%s", message)
        if done.wait(EXIT_GRACE_S):
            return
        print(f"mmdps: {message}; ending this process (exit status {EXIT_CODE})", file=sys.stderr, flush=True)
        os._exit(EXIT_CODE)  # the main thread is blocked inside the backend: nothing else can stop it

    watchdog = threading.Thread(target=watch, name=f"mmdps-collective-watchdog-{rank}", daemon=True)
    watchdog.start()
    try:
        yield
    except CollectiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - every backend error means the same thing here
        raise CollectiveError(_message(rank, world, what, timeout_s, f"failed ({type(exc).__name__}: {exc})")) \
            from exc
    finally:
        done.set()


def gather_with_timeout(obj: Any, timeout_s: float, what: str) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process); raises :class:`CollectiveError` naming
    this rank and ``what`` when another rank does not take part within ``timeout_s``."""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    with guarded(what, timeout_s):
        dist.all_gather_object(out, obj)
    return out


def reduce_with_timeout(tensor: torch.Tensor, timeout_s: float, what: str, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over the ranks (``op``: sum, max or min), a new tensor; the input is unchanged."""
    rank, world = rank_and_world()
    if world == 1:
        return tensor.clone()
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    if op not in ops:
        raise ValueError(f"reduce_with_timeout: op must be one of {sorted(ops)}, got {op!r}")
    out = tensor.detach().clone()
    with guarded(what, timeout_s):
        dist.all_reduce(out, op=ops[op])
    return out


def any_rank(flag: bool, timeout_s: float, what: str, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. a stop request that reached one rank).
    ``device``: where the backend reduces (the accelerator's device under NCCL)."""
    _, world = rank_and_world()
    if world == 1:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(reduce_with_timeout(value, timeout_s, what, op="max").item() > 0)


def barrier(timeout_s: float, what: str, device: torch.device | str = "cpu") -> None:
    """``wait_for_everyone`` with the watchdog (an all-reduce, so that NCCL needs no barrier device guess)."""
    any_rank(False, timeout_s, what, device=device)
