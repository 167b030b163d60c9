"""Image loading and the one preprocessing function shared by training, evaluation and serving."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
MIN_SIDE = 32
MAX_BYTES = 30 * 1024 * 1024
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "MPO"}

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """An input that is not a usable image; the message says why, for a person to read."""


def load_image(source, draft_size: int | None = None) -> Image.Image:
    """Open a path, bytes, numpy array or PIL image as an upright 8-bit RGB image.

    Policies: EXIF orientation is applied; only the first frame of an animation is used;
    transparent pixels are flattened onto black (the colour of a dermatoscope's vignette);
    16-bit images are scaled to 8 bits. ``draft_size`` lets large JPEGs decode at a reduced
    scale that still covers that many pixels per side.
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image = _open(source)
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(f"image is too large ({image.width}x{image.height}); at most {MAX_PIXELS:,} pixels")
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.seek(0)
    except (AttributeError, EOFError, ValueError):
        pass
    try:
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"could not decode the image ({exc}); is the file complete?") from exc
    if min(image.size) < MIN_SIDE:
        raise ImageError(
            f"image is too small ({image.width}x{image.height}); each side needs at least {MIN_SIDE} pixels"
        )
    return image


def _open(source) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "upload"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        if path.stat().st_size > MAX_BYTES:
            raise ImageError(f"{path.name}: file is larger than {MAX_BYTES // 2**20} MB")
        data, name = path.read_bytes(), path.name
    else:
        raise ImageError(f"cannot read an image from {type(source).__name__}")
    if not data:
        raise ImageError(f"{name}: the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{name}: file is larger than {MAX_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: image is too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image in a supported format (JPEG, PNG, WebP, TIFF, BMP, GIF)") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(f"{name}: {image.format} images are not supported; use JPEG, PNG, WebP, TIFF, BMP or GIF")
    return image


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"an image array must be HxW, HxWx3 or HxWx4, not {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / scale * 255.0, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def prepare(image: Image.Image, size: int) -> np.ndarray:
    """The model's view of an RGB image: the largest centred square, resized to ``size`` x ``size``.

    Returns uint8 pixels (size, size, 3); the model normalises them itself. A full HAM10000 frame
    (4:3) and its published 450x450 centre crop give the same view.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def load_and_prepare(source, size: int) -> np.ndarray:
    """:func:`load_image` then :func:`prepare`."""
    return prepare(load_image(source, draft_size=2 * size), size)
