"""Image loading and the one resize rule shared by rollout and the training forward pass.

``load_image`` turns whatever a dataset row holds (a path, bytes, an HF ``{"bytes", "path"}`` dict, a
PIL image) into an RGB PIL image, or raises :class:`ImageError` saying what was wrong and where. Images
larger than :data:`MAX_IMAGE_PIXELS` (a decompression bomb: a few KB of PNG can claim 20000x20000
pixels) are refused from the file header, before any pixel is decoded; so are image shapes the Qwen2-VL
resize rule cannot take (a side of 0 pixels, an aspect ratio over :data:`MAX_RATIO`), and paths that are not
regular files (a FIFO would block the reader forever). Transparent images (RGBA, LA, P with a transparent
colour) are composited on white, as qwen-vl-utils does, so black lines on a transparent background stay
visible; 16-bit and floating-point greyscale images are scaled to 8 bits instead of clipping to white.
``resize_for_model`` applies Qwen2-VL's ``smart_resize`` (both sides multiples of ``factor``, pixel
count inside [min_pixels, max_pixels]); qwen-vl-utils' version is used when it imports, and the
equivalent rule below otherwise (qwen-vl-utils imports torchvision, which some CPU setups lack).
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
from typing import Any

import numpy as np
from PIL import Image

IMAGE_FACTOR = 28  # patch 14 x spatial merge 2
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28
MAX_RATIO = 200
#: Most pixels an image file may hold (width x height, read from its header before decoding). Far above
#: any benchmark image (Geometry3K diagrams are under 1 MP, MathVista's largest about 12 MP), far below
#: a decompression bomb. Override per call (``max_image_pixels=``) or per process with the
#: ``MMDPS_MAX_IMAGE_PIXELS`` environment variable.
MAX_IMAGE_PIXELS = 64_000_000
PIXEL_LIMIT_ENV = "MMDPS_MAX_IMAGE_PIXELS"


class ImageError(ValueError):
    """A dataset image is missing, unreadable or of an unknown kind."""


def default_max_image_pixels() -> int:
    """The pixel limit of :func:`load_image`: ``MMDPS_MAX_IMAGE_PIXELS`` when set, else :data:`MAX_IMAGE_PIXELS`."""
    value = os.environ.get(PIXEL_LIMIT_ENV)
    if value is None or not value.strip():
        return MAX_IMAGE_PIXELS
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ValueError(f"{PIXEL_LIMIT_ENV}={value!r} must be a positive whole number of pixels "
                         f"(default {MAX_IMAGE_PIXELS})")
    return limit


def _too_large(prefix: str, what: str, pixels: int, size: str, limit: int) -> ImageError:
    return ImageError(f"{prefix}{what} has {pixels:,} pixels{size}, above the limit of {limit:,} (a decompression "
                      f"bomb, or a scan far larger than a model can use); shrink the image, or raise the limit "
                      f"with {PIXEL_LIMIT_ENV} if it is genuine")


def _check_pixels(image: Image.Image, limit: int, prefix: str, what: str) -> None:
    width, height = image.size
    if width * height > limit:
        raise _too_large(prefix, what, width * height, f" ({width}x{height})", limit)


def _check_shape(image: Image.Image, prefix: str, what: str) -> None:
    """The shapes Qwen2-VL's smart_resize refuses, found at load time where the row is still known."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{prefix}{what} is {width}x{height} pixels: an empty image; fix or drop the row")
    if max(width, height) / min(width, height) > MAX_RATIO:
        raise ImageError(f"{prefix}{what} is {width}x{height} pixels, an aspect ratio of "
                         f"{max(width, height) / min(width, height):.0f}:1; the Qwen2-VL resize rule takes at most "
                         f"{MAX_RATIO}:1: crop or pad the image, or drop the row")


def _grey_to_8_bits(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale as 8-bit ``L``: PIL's own conversion clips every value above
    255 to white. Integers over 255 are taken as 16-bit (0-65535); floats in [0, 1] as fractions; any
    other range is stretched to 0-255."""
    values = np.asarray(image, dtype=np.float64)
    values = np.where(np.isfinite(values), values, 0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif low >= 0 and high <= 255:
        pass
    elif image.mode != "F" and low >= 0 and high <= 65535:
        values = values / 257
    else:
        values = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB: transparency composited on white, high-bit-depth greyscale scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        return _grey_to_8_bits(image).convert("RGB")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("PA", "La"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _decode(opener: Any, limit: int, prefix: str, what: str) -> Image.Image:
    """Open (header only), check the pixel count and shape, then decode; any decoder failure becomes
    ImageError."""
    try:
        with Image.open(opener) as image:
            _check_pixels(image, limit, prefix, what)
            _check_shape(image, prefix, what)
            image.load()
            return to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        # PIL's own limit (2 x Image.MAX_IMAGE_PIXELS) fires inside Image.open, before our check can.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 0
        pil_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise _too_large(prefix, what, pixels, "", min(limit, pil_limit) if pil_limit else limit) from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL plugins raise SyntaxError, struct.error, EOFError, ...
        raise ImageError(f"{prefix}{what} is corrupt or not an image ({type(exc).__name__}: {exc})") from exc


def load_image(source: Any, *, base_dir: str | os.PathLike | None = None, where: str = "",
               max_image_pixels: int | None = None) -> Image.Image:
    """Load ``source`` as an RGB PIL image.

    Args:
        source: a PIL image, a file path (absolute, or relative to ``base_dir``), raw bytes, or a
            dict with ``bytes`` and/or ``path`` (the HF ``datasets`` Image layout).
        base_dir: folder that relative paths are resolved against.
        where: a description of the item (file and row) used in error messages.
        max_image_pixels: most pixels (width x height) accepted, checked from the header before
            decoding; default :func:`default_max_image_pixels`.

    Raises:
        ImageError: (a ``ValueError``, so ``skip_invalid`` skips the row) naming ``where`` and the file.
    """
    prefix = f"{where}: " if where else ""
    limit = default_max_image_pixels() if max_image_pixels is None else max_image_pixels
    if isinstance(source, Image.Image):
        _check_pixels(source, limit, prefix, "image")
        _check_shape(source, prefix, "image")
        return to_rgb(source)
    if isinstance(source, dict):
        if source.get("bytes"):
            return load_image(source["bytes"], base_dir=base_dir, where=where, max_image_pixels=limit)
        if source.get("path"):
            return load_image(source["path"], base_dir=base_dir, where=where, max_image_pixels=limit)
        raise ImageError(f"{prefix}image dict has neither 'bytes' nor 'path' (keys: {sorted(source)})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(source)), limit, prefix, "image bytes")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.startswith(("http://", "https://")):
            raise ImageError(f"{prefix}image is a URL ({path}); download it first, mmdps reads local files only")
        if path.startswith("file://"):
            path = path[len("file://"):]
        if base_dir is not None and not os.path.isabs(path):
            path = os.path.join(os.fspath(base_dir), path)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise ImageError(f"{prefix}image file not found: {path} (fix the path or pass the right image_dir)") \
                from None
        if not stat.S_ISREG(mode):  # a FIFO or device would block the reader forever
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
            raise ImageError(f"{prefix}image path {path} is {kind}; point it at an image file")
        return _decode(path, limit, prefix, f"image file {path}")
    raise ImageError(f"{prefix}cannot load an image from {type(source).__name__}")


def smart_resize(height: int, width: int, factor: int = IMAGE_FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen2-VL's resize rule: sides divisible by ``factor``, area in [min_pixels, max_pixels],
    aspect ratio kept as closely as possible."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        ratio = max(height, width) / min(height, width)
        raise ImageError(f"image aspect ratio must be below {MAX_RATIO}, got {ratio:.1f}")
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
