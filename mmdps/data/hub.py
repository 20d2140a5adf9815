"""Reading Hugging Face hub datasets: the one reader behind every source that is not a local path.

A source is a hub id when it is ``owner/name``, optionally ``owner/name@split``, and no local file or
folder of that name exists. :func:`load_hub_dataset` wraps ``datasets.load_dataset`` so that an
unreachable hub fails at once (``datasets`` otherwise retries for about 25 seconds before saying
anything): when ``HF_HUB_OFFLINE`` is set or the hub's host does not answer within a few seconds, the
dataset is read from the local ``datasets`` cache only, and a miss says so.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mmdps.data.row import Row

#: ``owner/name`` as the hub spells dataset ids, with an optional ``@split``.
HUB_ID = re.compile(r"^(?P<id>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<split>[\w.-]+))?$")
PROBE_SECONDS = 3.0
_TRUE = {"1", "on", "yes", "true"}


class HubSourceError(FileNotFoundError):
    """A source is neither a local path nor a hub dataset that can be read."""


def parse_hub_id(source: str) -> tuple[str, str | None] | None:
    """``("owner/name", split or None)`` when ``source`` is spelled like a hub id, else ``None``."""
    match = HUB_ID.match(str(source).strip())
    return (match.group("id"), match.group("split")) if match else None


def is_hub_source(source: str | os.PathLike) -> bool:
    """True when ``source`` does not exist locally and is spelled ``owner/name[@split]``."""
    return not Path(source).expanduser().exists() and parse_hub_id(os.fspath(source)) is not None


def _offline_by_environment() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (offline by environment, no DNS, no connection), or ``None``.

    Checked once per process with a short timeout, in a thread, since a resolver can hang.
    """
    if _offline_by_environment():
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy a direct connection says nothing: let datasets try
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (80 if parsed.scheme == "http" else 443)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_SECONDS):
                outcome.append(None)
        except OSError as error:
            outcome.append(f"{host} is not reachable ({error})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    return outcome[0] if outcome else f"{host} did not answer within {PROBE_SECONDS:.0f} s"


@contextlib.contextmanager
def _offline_mode():
    """``datasets`` and ``huggingface_hub`` read their offline flag once, at import: set both."""
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def load_hub_dataset(hub_id: str, *, split: str | None = None, config: str | None = None) -> Any:
    """``datasets.load_dataset(hub_id, config, split=split)`` that fails fast without a network.

    Returns a ``Dataset`` (``split`` given) or a ``DatasetDict``. Raises :class:`HubSourceError` naming
    the id, the split and why (with the offline fix), or ``ValueError`` for a split the dataset lacks.
    """
    import datasets

    unreachable = hub_unreachable()
    context = _offline_mode() if unreachable else contextlib.nullcontext()
    try:
        with context:
            return datasets.load_dataset(hub_id, config, split=split)
    except ValueError as error:
        if split is not None and "split" in str(error).lower() and "unknown" in str(error).lower():
            raise ValueError(f"hub dataset {hub_id!r} has no split {split!r} ({error})") from error
        raise HubSourceError(_hub_failure(hub_id, split, error, unreachable)) from error
    except Exception as error:  # noqa: BLE001 - connection, auth and cache errors all mean "cannot read it"
        raise HubSourceError(_hub_failure(hub_id, split, error, unreachable)) from error


def _hub_failure(hub_id: str, split: str | None, error: BaseException, unreachable: str | None) -> str:
    offline = f" ({unreachable}; only the local datasets cache was read)" if unreachable else ""
    of_split = f" (split {split!r})" if split else ""
    return (f"could not load the hub dataset {hub_id!r}{of_split}{offline}: {type(error).__name__}: {error}. "
            f"Without internet, download it elsewhere (huggingface-cli download {hub_id} --repo-type dataset "
            f"--local-dir DIR) and pass DIR")


def hub_rows(hub_id: str, split: str, *, config: str | None = None) -> Iterator[Row]:
    """Rows of a hub dataset split (``owner/name@split`` picks the split itself)."""
    parsed = parse_hub_id(hub_id)
    if parsed is not None:
        hub_id, split = parsed[0], parsed[1] or split
    dataset = load_hub_dataset(hub_id, split=split, config=config)
    for index, data in enumerate(dataset):
        yield Row(dict(data), index, f"{hub_id} [{split}] row {index}")


def missing_source_rows(source: str | os.PathLike, split: str, *, config: str | None = None) -> Iterator[Row]:
    """Rows of a source that is not a local path: read as a hub id, or an error naming both readings."""
    text = os.fspath(source)
    if parse_hub_id(text) is None:
        local = Path(text).expanduser().absolute()
        raise HubSourceError(f"data source not found: {local} does not exist, and {text!r} is not a hub dataset "
                             "id either (owner/name, optionally @split); fix the path")
    try:
        yield from hub_rows(text, split, config=config)
    except (HubSourceError, ValueError) as error:
        raise both_readings(text, error) from error


def both_readings(source: str, error: BaseException) -> HubSourceError:
    """The error for a source that is neither a local path nor a readable hub dataset: both readings."""
    local = Path(source).expanduser().absolute()
    return HubSourceError(f"data source {source!r} not found: as a local path, {local} does not exist; as a hub "
                          f"dataset id: {error}")


__all__ = ["HUB_ID", "HubSourceError", "both_readings", "hub_rows", "hub_unreachable", "is_hub_source",
           "load_hub_dataset", "missing_source_rows", "parse_hub_id"]
