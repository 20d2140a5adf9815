"""Image loading and the one resize rule shared by rollout and the training forward pass.

``load_image`` turns whatever a dataset row holds (a path, bytes, an HF ``{"bytes", "path"}`` dict, a
PIL image) into an RGB PIL image, or raises :class:`ImageError` saying what was wrong and where.
``resize_for_model`` applies Qwen2-VL's ``smart_resize`` (both sides multiples of ``factor``, pixel
count inside [min_pixels, max_pixels]); qwen-vl-utils' version is used when it imports, and the
equivalent rule below otherwise (qwen-vl-utils imports torchvision, which some CPU setups lack).
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

from PIL import Image, UnidentifiedImageError

IMAGE_FACTOR = 28  # patch 14 x spatial merge 2
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28
MAX_RATIO = 200


class ImageError(ValueError):
    """A dataset image is missing, unreadable or of an unknown kind."""


def load_image(source: Any, *, base_dir: str | os.PathLike | None = None, where: str = "") -> Image.Image:
    """Load ``source`` as an RGB PIL image.

    Args:
        source: a PIL image, a file path (absolute, or relative to ``base_dir``), raw bytes, or a
            dict with ``bytes`` and/or ``path`` (the HF ``datasets`` Image layout).
        base_dir: folder that relative paths are resolved against.
        where: a description of the item (file and row) used in error messages.
    """
    prefix = f"{where}: " if where else ""
    if isinstance(source, Image.Image):
        return source.convert("RGB") if source.mode != "RGB" else source
    if isinstance(source, dict):
        if source.get("bytes"):
            return load_image(source["bytes"], base_dir=base_dir, where=where)
        if source.get("path"):
            return load_image(source["path"], base_dir=base_dir, where=where)
        raise ImageError(f"{prefix}image dict has neither 'bytes' nor 'path' (keys: {sorted(source)})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            image = Image.open(io.BytesIO(bytes(source)))
            image.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise ImageError(f"{prefix}image bytes are not a readable image ({exc})") from exc
        return image.convert("RGB")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.startswith(("http://", "https://")):
            raise ImageError(f"{prefix}image is a URL ({path}); download it first, mmdps reads local files only")
        if path.startswith("file://"):
            path = path[len("file://"):]
        if base_dir is not None and not os.path.isabs(path):
            path = os.path.join(os.fspath(base_dir), path)
        if not os.path.exists(path):
            raise ImageError(f"{prefix}image file not found: {path} (fix the path or pass the right image_dir)")
        try:
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ImageError(f"{prefix}image file is corrupt or not an image: {path} ({exc})") from exc
    raise ImageError(f"{prefix}cannot load an image from {type(source).__name__}")


def smart_resize(height: int, width: int, factor: int = IMAGE_FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen2-VL's resize rule: sides divisible by ``factor``, area in [min_pixels, max_pixels],
    aspect ratio kept as closely as possible."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ImageError(f"image aspect ratio must be below {MAX_RATIO}, got {max(height, width) / min(height, width):.1f}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_for_model(image: Image.Image, *, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                     factor: int = IMAGE_FACTOR) -> Image.Image:
    """Resize ``image`` with :func:`smart_resize`. Rollout and the training forward pass both call
    this, so the model sees the same pixels in both."""
    try:  # prefer the reference implementation when it imports (needs torchvision)
        from qwen_vl_utils.vision_process import smart_resize as _reference_resize
    except Exception:  # noqa: BLE001 - a broken torchvision raises RuntimeError, not ImportError
        _reference_resize = None
    resize = _reference_resize or smart_resize
    height, width = resize(image.height, image.width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    if (height, width) == (image.height, image.width):
        return image
    return image.resize((width, height), Image.Resampling.BICUBIC)
