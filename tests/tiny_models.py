"""Tiny offline models for tests, built once per test process and shared by every test file.

    from tiny_models import build, text_item, image_item
    path = build("qwen2.5-vl")             # a folder; load with mmdps.models.loading.load_policy(path)

``build`` caches by its arguments under one temporary folder removed at exit, so each model is
built at most once per pytest process (~1 s each). Load a fresh model per test that trains it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from mmdps.data.item import Item

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # also when used outside pytest

_ROOT: Path | None = None
_CACHE: dict[tuple, Path] = {}


def build(arch: str, **options) -> Path:
    """Path of a tiny ``arch`` model ("qwen2", "qwen2-vl", "qwen2.5-vl") built with ``options``
    (keyword arguments of :func:`mmdps.models.tiny.build_tiny_model`)."""
    global _ROOT
    from mmdps.models.tiny import build_tiny_model

    key = (arch, tuple(sorted(options.items())))
    if key not in _CACHE:
        if _ROOT is None:
            _ROOT = Path(tempfile.mkdtemp(prefix="mmdps-tiny-"))
            atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
        out = _ROOT / f"{arch}-{len(_CACHE)}"
        _CACHE[key] = build_tiny_model(arch, out, **options)
    return _CACHE[key]


def text_item(id: int, text: str, **fields) -> Item:
    """A text-only item with one user message."""
    return Item(id=id, messages=[{"role": "user", "content": text}], ground_truth=fields.pop("ground_truth", "0"),
                verifier=fields.pop("verifier", "math"), **fields)


def image_item(id: int, text: str, size: tuple[int, int] = (56, 56), color=(200, 30, 30), **fields) -> Item:
    """An item with one solid-colour image (``size`` = width, height) before the text."""
    image = Image.new("RGB", size, color)
    content = [{"type": "image", "image": image}, {"type": "text", "text": text}]
    return Item(id=id, messages=[{"role": "user", "content": content}], ground_truth=fields.pop("ground_truth", "0"),
                verifier=fields.pop("verifier", "math"), **fields)

