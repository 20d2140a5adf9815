"""Atomic, resumable training checkpoints.

A checkpoint is a folder ``<output_dir>/checkpoints/checkpoint-<step>`` holding

| file | what |
|---|---|
| ``model/`` | ``save_pretrained`` output: the full model, or only the LoRA adapter, plus the processor |
| ``optimizer.pt``, ``scheduler.pt`` | optimizer and LR-scheduler state dicts |
| ``rng_state_<rank>.pt`` | python, numpy, torch and CUDA RNG states of each process |
| ``selector.json`` + ``selector_arrays.npz`` | the selector's ``state_dict()`` (no pickle) |
| ``data.json`` | the stable ids of the training items, to refuse resuming onto another dataset |
| ``trainer_state.json`` | step, counters, the config |
| ``manifest.json`` | every other file's size and SHA-256; written last |

Everything is written into a hidden temporary folder that is renamed into place at the end, so a
folder named ``checkpoint-*`` written by mmdps is complete; a crash mid-save leaves only a ``.tmp-*``
folder, which the next run removes at start-up (:func:`lock_output_dir`), and a save that fails (a full
disk) removes it at once and raises :class:`CheckpointSaveError`. A file damaged later (a bad copy), or a
folder without manifest, fails the manifest check: ``resume=auto`` then falls back to the newest intact
checkpoint with a warning, and an explicit ``resume=PATH`` stops with :class:`CheckpointError` naming
the file. :func:`adopt_timeline` moves the checkpoints after a resumed one out of the way.

:func:`lock_output_dir` keeps two runs out of one ``output_dir`` (a save of one would delete the
other's checkpoint in progress); the lock itself is :mod:`mmdps.run_lock`, the manifest and state
files :mod:`mmdps.state_files`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmdps import run_lock
from mmdps.config import resumable_fields
from mmdps.run_lock import LOCK_FILE, OutputDirError, OutputDirInUseError, RunLock, os_error_reason, prepare_output_dir
from mmdps.state_files import (
    MANIFEST_FILE,
    CheckpointError,
    commit_folder,
    load_selector_state,
    load_state_folder,
    read_or_fail,
    save_selector_state,
    save_state_folder,
    summary,
    verify_checkpoint,
    write_manifest,
)

__all__ = [  # the checkpoint API, and the names of mmdps.run_lock / mmdps.state_files it re-exports
    "CHECKPOINTS_DIR", "LOCK_FILE", "MANIFEST_FILE", "RESUMABLE_CHANGES", "CheckpointError", "OutputDirError",
    "OutputDirInUseError", "RunLock", "check_dataset", "checkpoint_root", "dataset_record", "find_latest_checkpoint",
    "list_checkpoints", "load_checkpoint", "load_model_weights", "load_selector_state", "load_state_folder",
    "lock_output_dir", "prepare_output_dir", "read_trainer_state", "rescale_learning_rate", "resolve_resume",
    "resume_changes", "rng_state", "save_checkpoint", "save_selector_state", "save_state_folder", "set_rng_state",
    "verify_checkpoint", "write_manifest", "CheckpointSaveError", "adopt_timeline", "remove_stale_temporaries",
]

CHECKPOINTS_DIR = "checkpoints"
ABANDONED_PREFIX = "abandoned-"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_STATE_FILE = "trainer_state.json"
logger = logging.getLogger(__name__)


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, no permission); names the folder. The partial folder is
    already removed, so a rerun with ``resume=auto`` continues from the newest complete checkpoint."""


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, path)``, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir() and (path / _STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def find_latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``output_dir``, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def resolve_resume(resume: str | None, output_dir: str | os.PathLike) -> Path | None:
    """Turn the ``resume`` setting into a verified checkpoint path.

    ``"auto"``: the newest intact checkpoint in ``output_dir`` (None for a fresh run); damaged or
    incomplete (no manifest) newer ones are skipped with a warning naming each and what was wrong. A
    path: that checkpoint, which must exist and be intact (:class:`CheckpointError` names the damaged
    file). None: None. Checkpoints moved to ``abandoned-*`` folders (:func:`adopt_timeline`) are never
    picked.
    """
    if resume is None:
        return None
    if resume == "auto":
        damaged: list[str] = []
        for _, path in reversed(list_checkpoints(output_dir)):
            problems = verify_checkpoint(path)
            if not problems:
                if damaged:
                    warnings.warn(f"resume=auto: skipped damaged checkpoint(s): {'; '.join(damaged)}; resuming "
                                  f"from {path}", stacklevel=2)
                return path
            damaged.append(f"{path}: {summary(problems)}")
        if damaged:
            raise CheckpointError(f"resume=auto: every checkpoint in {checkpoint_root(output_dir)} is damaged "
                                  f"({'; '.join(damaged)}); restore them, or start fresh with resume=none or "
                                  "another output_dir")
        return None
    path = Path(resume)
    if not (path / _STATE_FILE).is_file():
        raise FileNotFoundError(f"resume={resume!r} is not a complete checkpoint folder (no {_STATE_FILE}); "
                                f"use resume=auto or one of {[str(p) for _, p in list_checkpoints(output_dir)]}")
    problems = verify_checkpoint(path)
    if problems:
        raise CheckpointError(f"resume={resume}: the checkpoint is damaged: {summary(problems)}; resume from "
                              "another checkpoint (resume=auto picks the newest intact one)")
    return path


# ---------------------------------------------------------------------- start-up and timelines
def lock_output_dir(output_dir: str | os.PathLike) -> RunLock:
    """Create ``output_dir`` and lock it for this run (:func:`mmdps.run_lock.lock_output_dir`:
    :class:`OutputDirInUseError` when a live run holds it, :class:`OutputDirError` when it cannot be created
    or written), then remove the temporary folders a crashed or failed save left in its checkpoints
    folder, with a warning naming them (safe only under the lock: no other save is in progress)."""
    lock = run_lock.lock_output_dir(output_dir)
    remove_stale_temporaries(output_dir)
    return lock


def remove_stale_temporaries(output_dir: str | os.PathLike) -> list[Path]:
    """Delete ``.tmp-checkpoint-*`` / ``.old-checkpoint-*`` folders (a save that crashed or failed, e.g. on a
    full disk) with a warning; return the paths removed. One that cannot be deleted is named in a warning,
    and the run goes on."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    removed = []
    for stale in sorted(root.glob(".tmp-checkpoint-*")) + sorted(root.glob(".old-checkpoint-*")):
        shutil.rmtree(stale, ignore_errors=True)
        if stale.exists():
            warnings.warn(f"{stale} is left from an unfinished checkpoint save and cannot be removed; delete it "
                          "by hand to free its space", stacklevel=2)
        else:
            removed.append(stale)
    if removed:
        warnings.warn(f"removed {len(removed)} folder(s) left by an unfinished checkpoint save (a crash or a full "
                      f"disk): {', '.join(str(p) for p in removed)}", stacklevel=2)
    return removed


def adopt_timeline(output_dir: str | os.PathLike, resume_from: str | os.PathLike) -> list[Path]:
    """Make a run resumed from checkpoint ``resume_from`` own the timeline of ``output_dir`` from its step on.

    Every ``checkpoint-<n>`` folder of ``output_dir`` with ``n`` after the resumed step (steps of the run
    that was abandoned by resuming earlier, and damaged or incomplete ones) moves to
    ``checkpoints/abandoned-<step>/`` (``-2``, ``-3``, ... when that exists), together with the sampled
    completions ``samples/step_<n>.jsonl`` of those steps, and ``metrics.jsonl`` loses its lines after the
    step. ``resume=auto``, :func:`list_checkpoints` and pruning ignore abandoned folders, so a rerun with
    ``resume=auto`` continues this timeline, never the abandoned one. Each change is logged as a warning.

    Call it on the main process only, after every process has resolved ``resume`` (the trainer: right after
    :func:`resolve_resume`, behind a barrier). Returns the new paths of the moved checkpoints.
    """
    from mmdps.logging_utils import MetricsLogger, read_metrics

    output_dir = Path(output_dir)
    step = int(read_trainer_state(resume_from)["step"])
    root = checkpoint_root(output_dir)
    newer = sorted((int(m.group(1)), p) for p in root.glob("checkpoint-*")
                   if p.is_dir() and (m := _NAME.match(p.name)) and int(m.group(1)) > step) if root.is_dir() else []
    samples = sorted(p for p in (output_dir / "samples").glob("step_*.jsonl") if _sample_step(p) > step)
    moved: list[Path] = []
    if newer or samples:
        target = root / f"{ABANDONED_PREFIX}{step:06d}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = root / f"{ABANDONED_PREFIX}{step:06d}-{suffix}"
        target.mkdir(parents=True)
        for _, path in newer:
            moved.append(Path(shutil.move(path, target / path.name)))
        if samples:
            (target / "samples").mkdir()
            for path in samples:
                shutil.move(path, target / "samples" / path.name)
        logger.warning("resuming from %s (step %d): the later checkpoint(s) %s and %d sample file(s) belong to the "
                       "abandoned run and were moved to %s", resume_from, step,
                       ", ".join(p.name for _, p in newer) or "(none)", len(samples), target)
    dropped = sorted({int(r.get("step", 0)) for r in read_metrics(output_dir) if int(r.get("step", 0)) > step})
    if dropped:
        metrics = MetricsLogger(output_dir)
        metrics.truncate_after(step)
        metrics.close()
        logger.warning("resuming from %s (step %d): removed the metrics of steps %s from %s (they belong to the "
                       "abandoned run)", resume_from, step, _ranges(dropped), metrics.path)
    return moved


def _sample_step(path: Path) -> int:
    digits = path.stem.removeprefix("step_")
    return int(digits) if digits.isdigit() else -1


def _ranges(steps: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` as ``3-5, 9``."""
    parts: list[str] = []
    start = prev = steps[0]
    for value in [*steps[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ", ".join(parts)


# ---------------------------------------------------------------------- settings on resume
#: Settings a resumed run may change (``metadata["resumable"]`` of the config fields, see
#: :func:`mmdps.config.resumable_fields`); any other change is refused on resume.
RESUMABLE_CHANGES = resumable_fields()


def read_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``trainer_state.json`` (step, counters and the config it was written with)."""
    return read_or_fail(Path(checkpoint) / _STATE_FILE, lambda p: json.loads(p.read_text()))


def resume_changes(checkpoint: str | os.PathLike, current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The settings of ``current`` (a config dict) that differ from the checkpoint's, as
    ``{key: (saved, now)}``; all of them in :data:`RESUMABLE_CHANGES`.

    Raises ValueError naming the checkpoint, each setting a resumed run cannot change with its two
    values, and the two ways out (set them back, or start fresh).
    """
    saved = read_trainer_state(checkpoint).get("config") or {}
    now = json.loads(json.dumps(current, default=_json_default))  # compare as the checkpoint stored it
    changed = {key: (saved[key], now[key]) for key in saved if key in now and saved[key] != now[key]}
    refused = {key: values for key, values in changed.items() if key not in RESUMABLE_CHANGES}
    if refused:
        listing = "; ".join(f"{key}: {old!r} in the checkpoint, {new!r} now" for key, (old, new) in refused.items())
        restore = " ".join(f"{key}={json.dumps(old)}" for key, (old, _) in refused.items())
        raise ValueError(f"checkpoint {checkpoint} was written with other settings, which a resumed run cannot "
                         f"change ({listing}). To continue that run, set them back ({restore}); to train with the "
                         "new values, start fresh with resume=none or another output_dir")
    return changed


def rescale_learning_rate(optimizer, scheduler, old: float, new: float) -> None:
    """Make a restored optimizer and schedule follow learning rate ``new`` instead of ``old``: every
    transformers schedule multiplies the base rate by a factor of the step, so scaling is exact."""
    ratio = new / old
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


# ---------------------------------------------------------------------- dataset identity
def item_digest(item: Any) -> str:
    """A short hash of what a prompt is (its text, images by reference, ground truth): two data sets whose
    rows were reordered or edited differ here even when their ids (row numbers) agree."""
    content = json.dumps([item.text, [str(image) for image in item.images if isinstance(image, (str, os.PathLike))],
                          item.ground_truth], default=str, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:12]


def dataset_record(item_ids: Sequence[int], item_digests: Sequence[str] | None = None) -> dict[str, Any]:
    ids = [int(i) for i in item_ids]
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    record: dict[str, Any] = {"num_items": len(ids), "fingerprint": digest, "ids": ids}
    if item_digests is not None:
        record["content_fingerprint"] = hashlib.sha256(json.dumps(list(item_digests)).encode()).hexdigest()[:16]
        record["contents"] = list(item_digests)
    return record


def check_dataset(checkpoint: str | os.PathLike, item_ids: Sequence[int],
                  item_digests: Sequence[str] | None = None) -> None:
    """Raise ValueError when the checkpoint was written for a different training set (selector ids are
    positions in the training list, so resuming onto other data would silently mix up prompt states): other
    ids, or the same ids over other prompts (rows reordered or edited in a file without an id column). A
    checkpoint written before prompts were fingerprinted is checked on its ids only."""
    saved = read_or_fail(Path(checkpoint) / "data.json", lambda p: json.loads(p.read_text()))
    current = dataset_record(item_ids, item_digests)
    if saved["fingerprint"] == current["fingerprint"]:
        if "contents" not in saved or item_digests is None or \
                saved["content_fingerprint"] == current["content_fingerprint"]:
            return
        first = next(i for i, (a, b) in enumerate(zip(saved["contents"], current["contents"], strict=True)) if a != b)
        detail = (f"same ids, but the prompt at position {first} (id {current['ids'][first]}) has other content (text "
                  "or answer): the rows were reordered or edited")
    elif saved["num_items"] == current["num_items"]:
        first = next(i for i, (a, b) in enumerate(zip(saved["ids"], current["ids"], strict=True)) if a != b)
        detail = f"same size, but position {first} holds id {saved['ids'][first]} in the checkpoint and " \
                 f"{current['ids'][first]} now"
    else:
        detail = f"{saved['num_items']} items vs {current['num_items']} now"
    raise ValueError(f"checkpoint {checkpoint} was written for a different training set ({detail}). Resume with the "
                     "same data (source, split, limit, options, seed), or start fresh with resume=none or another "
                     "output_dir; give rows a stable id column (mmdps data prepare writes item_id) so that a "
                     "re-prepared file keeps its ids.")


# ---------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    legacy = np.random.get_state()
    assert isinstance(legacy, tuple)  # MT19937's (name, keys, pos, has_gauss, cached)
    name, keys, pos, has_gauss, cached = legacy
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------- save / load
def _is_sharded(accelerator) -> bool:
    """FSDP and DeepSpeed shard optimizer (and maybe model) state: accelerate must gather / save them."""
    if accelerator is None:
        return False
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def save_checkpoint(output_dir: str | os.PathLike, step: int, *, model, optimizer, scheduler, selector,
                    item_ids: Sequence[int], trainer_state: dict[str, Any], processor=None, accelerator=None,
                    keep_last: int | None = None, item_digests: Sequence[str] | None = None) -> Path:
    """Write the checkpoint of ``step`` atomically and prune old ones down to ``keep_last``.

    Every process must call this (each saves its RNG state); only the main process writes the rest.
    Returns the final checkpoint path. When writing fails for lack of space or permission, the partial
    folder is removed and :class:`CheckpointSaveError` names the folder and the cause; any other error is
    raised as it is, the partial folder removed too.
    """
    is_main = accelerator is None or accelerator.is_main_process
    rank = 0 if accelerator is None else accelerator.process_index
    root = checkpoint_root(output_dir)
    final = root / f"checkpoint-{step:06d}"
    tmp = root / f".tmp-checkpoint-{step:06d}"
    try:
        if is_main:
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.glob(".tmp-checkpoint-*"):  # leftovers of a crash mid-save
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir()
        _barrier(accelerator)
        _write_checkpoint_files(tmp, step, rank, is_main, model=model, optimizer=optimizer, scheduler=scheduler,
                                selector=selector, item_ids=item_ids, item_digests=item_digests,
                                trainer_state=trainer_state, processor=processor, accelerator=accelerator)
        _barrier(accelerator)  # every process's files are in before the manifest lists them
        if is_main:
            write_manifest(tmp)
            commit_folder(tmp, final)
    except BaseException as exc:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial folder would only fill the disk further
        reason = _storage_failure(exc, root)
        if reason is None:
            raise
        raise CheckpointSaveError(
            f"cannot save checkpoint {final}: {reason} ({type(exc).__name__}: {str(exc)[:200]}); the partial "
            f"folder {tmp} was removed. Free space on that disk or fix the permissions of {root}, then rerun: "
            "resume=auto continues from the newest complete checkpoint") from exc
    if is_main and keep_last is not None:
        for _, old in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier(accelerator)
    return final


def _write_checkpoint_files(tmp: Path, step: int, rank: int, is_main: bool, *, model, optimizer, scheduler, selector,
                            item_ids: Sequence[int], item_digests: Sequence[str] | None,
                            trainer_state: dict[str, Any], processor, accelerator) -> None:
    torch.save(rng_state(), tmp / f"rng_state_{rank}.pt")
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    if _is_sharded(accelerator):
        accelerator.save_state(tmp / "accelerate_state")  # sharded model + optimizer + scheduler
    state_dict = accelerator.get_state_dict(model) if accelerator is not None else None
    if not is_main:
        return
    unwrapped.save_pretrained(tmp / "model", state_dict=state_dict, safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(tmp / "model")
    if not _is_sharded(accelerator):
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    save_selector_state(selector.state_dict(), tmp)
    (tmp / "data.json").write_text(json.dumps(dataset_record(item_ids, item_digests)))
    state = dict(trainer_state, step=int(step))
    (tmp / _STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default))


_LOW_SPACE_BYTES = 64 << 20  # below this, a write error that hides its errno (torch, safetensors) is a full disk


def _storage_failure(exc: BaseException, folder: Path) -> str | None:
    """Why a save failed when the file system is the cause (no space, no permission, read-only), else None.

    torch and safetensors report a failed write as RuntimeError / SafetensorError without the errno, so
    the exception chain is searched for an OSError first, then the free space of ``folder`` is read."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return os_error_reason(seen)
        seen = seen.__cause__ or seen.__context__
    if not isinstance(exc, Exception):
        return None  # KeyboardInterrupt and the like
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return None
    return f"the disk is full ({free / 2**20:.0f} MiB free)" if free < _LOW_SPACE_BYTES else None


def load_checkpoint(path: str | os.PathLike, *, optimizer, scheduler, selector, item_ids: Sequence[int],
                    accelerator=None, item_digests: Sequence[str] | None = None) -> dict[str, Any]:
    """Restore optimizer, scheduler, selector and RNG states from ``path``; return the trainer state.

    Model weights are restored separately (:func:`load_model_weights`), before the model is wrapped.
    Raises ValueError when the checkpoint belongs to another training set, :class:`CheckpointError`
    naming the file when one cannot be read.
    """
    path = Path(path)
    check_dataset(path, item_ids, item_digests)
    if _is_sharded(accelerator):
        accelerator.load_state(path / "accelerate_state")
    else:
        optimizer.load_state_dict(read_or_fail(path / "optimizer.pt", _torch_load))
        scheduler.load_state_dict(read_or_fail(path / "scheduler.pt", _torch_load))
    selector.load_state_dict(load_selector_state(path))
    rank = 0 if accelerator is None else accelerator.process_index
    rng_file = path / f"rng_state_{rank}.pt"
    if rng_file.is_file():  # absent when resuming on more processes than saved: keep the fresh seeds
        set_rng_state(read_or_fail(rng_file, _torch_load))
    return read_trainer_state(path)


def _torch_load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model_weights(path: str | os.PathLike, model) -> None:
    """Load the saved weights of checkpoint ``path`` into ``model`` (a full model, or a peft model whose
    adapter was saved)."""
    from safetensors.torch import load_file

    folder = Path(path) / "model"
    adapter = folder / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, read_or_fail(adapter, load_file))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"{adapter}: adapter weights do not fit the model (unexpected keys {unexpected[:5]})")
        return
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no model weights (*.safetensors)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_or_fail(file, load_file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied weights (lm_head = embed_tokens) are saved once; anything else missing is a real mismatch.
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [key for key in missing if key not in tied and not key.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def _barrier(accelerator) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)  # paths, and objects passed in engine_kwargs from python: recorded, not restored
