"""Atomic, resumable training checkpoints.

A checkpoint is a folder ``<output_dir>/checkpoints/checkpoint-<step>`` holding

| file | what |
|---|---|
| ``model/`` | ``save_pretrained`` output: the full model, or only the LoRA adapter, plus the processor |
| ``optimizer.pt``, ``scheduler.pt`` | optimizer and LR-scheduler state dicts |
| ``rng_state_<rank>.pt`` | python, numpy, torch and CUDA RNG states of each process |
| ``selector.json`` + ``selector_arrays.npz`` | the selector's ``state_dict()`` (no pickle) |
| ``data.json`` | the stable ids of the training items, to refuse resuming onto another dataset |
| ``trainer_state.json`` | step, counters, the config; written last |

Everything is written into a hidden temporary folder that is renamed into place at the end, so a
folder named ``checkpoint-*`` is always complete; a crash mid-save leaves only a ``.tmp-*`` folder,
which the next save removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

CHECKPOINTS_DIR = "checkpoints"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_STATE_FILE = "trainer_state.json"
_ARRAY_TAG = "__ndarray__"


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
    """Turn the ``resume`` setting into a checkpoint path: ``"auto"`` -> newest in ``output_dir`` (or None
    for a fresh run), a path -> that checkpoint (which must exist), None -> None."""
    if resume is None:
        return None
    if resume == "auto":
        return find_latest_checkpoint(output_dir)
    path = Path(resume)
    if not (path / _STATE_FILE).is_file():
        raise FileNotFoundError(f"resume={resume!r} is not a complete checkpoint folder (no {_STATE_FILE}); "
                                f"use resume=auto or one of {[str(p) for _, p in list_checkpoints(output_dir)]}")
    return path


# ---------------------------------------------------------------------- dataset identity
def dataset_record(item_ids: Sequence[int]) -> dict[str, Any]:
    ids = [int(i) for i in item_ids]
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    return {"num_items": len(ids), "fingerprint": digest, "ids": ids}


def check_dataset(checkpoint: str | os.PathLike, item_ids: Sequence[int]) -> None:
    """Raise ValueError when the checkpoint was written for a different training set (selector ids are
    positions in the training list, so resuming onto other data would silently mix up prompt states)."""
    saved = json.loads((Path(checkpoint) / "data.json").read_text())
    current = dataset_record(item_ids)
    if saved["fingerprint"] == current["fingerprint"]:
        return
    detail = f"{saved['num_items']} items vs {current['num_items']} now"
    if saved["num_items"] == current["num_items"]:
        first = next(i for i, (a, b) in enumerate(zip(saved["ids"], current["ids"])) if a != b)
        detail = f"same size, but position {first} holds id {saved['ids'][first]} in the checkpoint and " \
                 f"{current['ids'][first]} now"
    raise ValueError(f"checkpoint {checkpoint} was written for a different training set ({detail}). Resume with the "
                     "same data (source, split, limit, options, seed), or start fresh with resume=none or another "
                     "output_dir.")


# ---------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
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
    np.savez(folder / "selector_arrays.npz", **arrays)


def load_selector_state(folder: Path) -> dict[str, Any]:
    document = json.loads((folder / "selector.json").read_text())
    with np.load(folder / "selector_arrays.npz", allow_pickle=False) as arrays:
        arrays = {key: arrays[key] for key in arrays.files}

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {_ARRAY_TAG}:
                return arrays[value[_ARRAY_TAG]]
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return {key: decode(value) for key, value in document.items()}


# ---------------------------------------------------------------------- save / load
def _is_sharded(accelerator) -> bool:
    """FSDP and DeepSpeed shard optimizer (and maybe model) state: accelerate must gather / save them."""
    if accelerator is None:
        return False
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def save_checkpoint(output_dir: str | os.PathLike, step: int, *, model, optimizer, scheduler, selector,
                    item_ids: Sequence[int], trainer_state: dict[str, Any], processor=None, accelerator=None,
                    keep_last: int | None = None) -> Path:
    """Write the checkpoint of ``step`` atomically and prune old ones down to ``keep_last``.

    Every process must call this (each saves its RNG state); only the main process writes the rest.
    Returns the final checkpoint path.
    """
    is_main = accelerator is None or accelerator.is_main_process
    rank = 0 if accelerator is None else accelerator.process_index
    root = checkpoint_root(output_dir)
    final = root / f"checkpoint-{step:06d}"
    tmp = root / f".tmp-checkpoint-{step:06d}"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-checkpoint-*"):  # leftovers of a crash mid-save
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    _barrier(accelerator)

    torch.save(rng_state(), tmp / f"rng_state_{rank}.pt")
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    if _is_sharded(accelerator):
        accelerator.save_state(tmp / "accelerate_state")  # sharded model + optimizer + scheduler
    state_dict = accelerator.get_state_dict(model) if accelerator is not None else None
    if is_main:
        unwrapped.save_pretrained(tmp / "model", state_dict=state_dict, safe_serialization=True)
        if processor is not None:
            processor.save_pretrained(tmp / "model")
        if not _is_sharded(accelerator):
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        save_selector_state(selector.state_dict(), tmp)
        (tmp / "data.json").write_text(json.dumps(dataset_record(item_ids)))
        state = dict(trainer_state, step=int(step))
        (tmp / _STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default))
        _commit(tmp, final)
        if keep_last is not None:
            for _, old in list_checkpoints(output_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    _barrier(accelerator)
    return final


def _commit(tmp: Path, final: Path) -> None:
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


def load_checkpoint(path: str | os.PathLike, *, optimizer, scheduler, selector, item_ids: Sequence[int],
                    accelerator=None) -> dict[str, Any]:
    """Restore optimizer, scheduler, selector and RNG states from ``path``; return the trainer state.

    Model weights are restored separately (:func:`load_model_weights`), before the model is wrapped.
    Raises ValueError when the checkpoint belongs to another training set.
    """
    path = Path(path)
    check_dataset(path, item_ids)
    if _is_sharded(accelerator):
        accelerator.load_state(path / "accelerate_state")
    else:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    selector.load_state_dict(load_selector_state(path))
    rank = 0 if accelerator is None else accelerator.process_index
    rng_file = path / f"rng_state_{rank}.pt"
    if rng_file.is_file():  # absent when resuming on more processes than saved: keep the fresh seeds
        set_rng_state(torch.load(rng_file, weights_only=True))
    return json.loads((path / _STATE_FILE).read_text())


def load_model_weights(path: str | os.PathLike, model) -> None:
    """Load the saved weights of checkpoint ``path`` into ``model`` (a full model, or a peft model whose
    adapter was saved)."""
    from safetensors.torch import load_file

    folder = Path(path) / "model"
    adapter = folder / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(adapter))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"{adapter}: adapter weights do not fit the model (unexpected keys {unexpected[:5]})")
        return
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no model weights (*.safetensors)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied weights (lm_head = embed_tokens) are saved once; anything else missing is a real mismatch.
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [key for key in missing if key not in tied and not key.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def _barrier(accelerator) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()


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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)  # paths, and objects passed in engine_kwargs from python: recorded, not restored
