"""Image loading and the one preprocessing function shared by training, evaluation and serving."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from classifier.errors import ClassifierError

MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
MIN_SIDE = 32
MAX_BYTES = 30 * 1024 * 1024
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "MPO"}
# The file names of those formats: what folders and zips are searched for (the loader itself goes by content)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".mpo"})
# ... and of image types it does not read: listed too where each input gets a row, so they get a clear error
IMAGE_LIKE_SUFFIXES = IMAGE_SUFFIXES | {".ico", ".heic", ".heif", ".avif", ".jp2", ".psd", ".pcx", ".svg"}
# The first bytes of the accepted formats: a file that starts like one of them but that Pillow cannot open is
# a damaged file of that format, not some other kind of file.
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
              b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ClassifierError):
    """An input that is not a usable image; the message says why, for a person to read."""


def load_image(source, draft_size: int | None = None) -> Image.Image:
    """Open a path, bytes, numpy array or PIL image as an upright 8-bit RGB image.

    Policies: EXIF orientation is applied; only the first frame of an animation is used;
    transparent pixels are flattened onto black (the colour of a dermatoscope's vignette);
    16-bit images are scaled to 8 bits. ``draft_size`` lets large JPEGs decode at a reduced
    scale that still covers that many pixels per side.
    """
    prefix = ""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image, name = _open(source)
        prefix = f"{name}: "
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(f"{prefix}image is too large ({image.width}x{image.height}); at most {MAX_PIXELS:,} pixels")
    try:
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        try:
            image.seek(0)
        except (AttributeError, EOFError, ValueError):
            pass
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, struct.error, ...) for bad data
        raise ImageError(f"{prefix}could not decode the image ({exc}); the file is truncated or corrupted") from exc
    if min(image.size) < MIN_SIDE:
        raise ImageError(
            f"{prefix}image is too small ({image.width}x{image.height}); each side needs at least {MIN_SIDE} pixels"
        )
    return image


def _open(source) -> tuple[Image.Image, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "upload"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        check_regular_file(path)
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
        # Pillow warns above MAX_IMAGE_PIXELS (load_image then refuses the image) and raises above twice that.
        # No warnings.catch_warnings here: it changes process-wide state and is not thread-safe.
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        shown = f"{int(pixels.group(1)):,} pixels" if pixels else str(exc)
        raise ImageError(f"{name}: image is too large ({shown}); at most {MAX_PIXELS:,} pixels") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: {_not_an_image(data)}") from exc
    except Exception as exc:  # a recognised header with broken data behind it
        raise ImageError(f"{name}: could not read the image ({exc}); the file is truncated or corrupted") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(f"{name}: {image.format} images are not supported; use JPEG, PNG, WebP, TIFF, BMP or GIF")
    return image, name


def check_regular_file(path: Path) -> None:
    """Nothing for a regular file; else an ImageError that says what ``path`` is: missing, a folder, or a pipe,
    socket or device (which are never opened: a pipe would wait for a writer, /dev/zero never ends)."""
    if path.is_file():
        return
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    raise ImageError(f"{path}: not a regular file (a pipe, socket or device); give an image file")


def _not_an_image(data: bytes) -> str:
    """Why unrecognised bytes are not an image, in words."""
    for signature, fmt in SIGNATURES.items():
        if data.startswith(signature):
            return f"the {fmt} file is corrupted (its header is damaged); it cannot be read"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "the WebP file is corrupted (its header is damaged); it cannot be read"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "this is a web page (HTML), not an image; save the picture itself, not the page"
    if head.startswith(b"<svg") or (head.startswith((b"<?xml", b"<!doctype svg", b"<!--")) and b"<svg" in head):
        return "SVG vector images are not supported; convert it to PNG or JPEG"
    if head.startswith(b"%pdf"):
        return "this is a PDF document, not an image"
    text = data[:4096].decode("utf-8", errors="replace")[:-4]  # the cut may split a character
    if text.strip() and "\x00" not in text and "\ufffd" not in text:
        return "this is a text file, not an image"
    return "not an image in a supported format (JPEG, PNG, WebP, TIFF, BMP, GIF)"


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype.kind not in "buif":  # bool, unsigned, integer, floating
        raise ImageError(f"an image array must hold pixel values (numbers), not {array.dtype} values; "
                         "pass a file path as a str or Path, not inside an array")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"an image array must be HxW, HxWx3 or HxWx4, not {array.shape}")
    if array.dtype == np.uint16:
        array = _sixteen_to_eight_bits(array)  # as for 16-bit files
    elif array.dtype != np.uint8 and np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
        array = array * 255.0
    if array.dtype != np.uint8:
        array = np.clip(np.nan_to_num(array.astype(np.float64)), 0, 255).round().astype(np.uint8)
    return Image.fromarray(array)


def _sixteen_to_eight_bits(array: np.ndarray) -> np.ndarray:
    """Values 0..65535 as uint8 0..255 (rounded), in blocks of rows so that a 50-megapixel image needs a few
    megabytes on top of its input and output, not several float64 copies of it."""
    out = np.empty(array.shape, np.uint8)
    rows = max(1, 2**20 // max(1, array[:1].size))  # about a million values per block
    for top in range(0, len(array), rows):
        block = np.clip(array[top:top + rows], 0, 65535).astype(np.uint32)
        out[top:top + rows] = (block * 255 + 32767) // 65535  # round(value * 255 / 65535): no ties
    return out


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image)
        if array.max() > 255:
            image = Image.fromarray(_sixteen_to_eight_bits(array))
        else:  # 8-bit values stored in 16 bits: kept as they are
            image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # also palette and colour-key (tRNS) transparency
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def prepare(image: Image.Image, size: int) -> np.ndarray:
    """The model's view of an RGB image: the largest centred square, resized to ``size`` x ``size``.

    Returns uint8 pixels (size, size, 3); the model normalises them itself. A full HAM10000 frame
    (4:3) and its published 450x450 centre crop give the same view. Turning or mirroring the image turns or
    mirrors the view exactly (pixel for pixel), so averaging the eight symmetries of the square gives every
    orientation of a picture the same answer.
    """
    factor = min(image.size) // (4 * size)
    if factor >= 2:  # a huge picture (not a JPEG, which draft decoding reduced): average blocks first, in 8 bits,
        # so that the float channels below stay small (7000 px: 196 MB each). Turning it then gives exactly the
        # turned view only where the factor divides both sides.
        image = image.reduce(factor)
    width, height = image.size
    side = min(width, height)
    # a float box centres the square exactly even when (width - side) is odd: an integer crop would shift by
    # one pixel, differently for the image and its mirror
    left, top = (width - side) / 2, (height - side) / 2
    if side == size and left.is_integer() and top.is_integer():
        left, top = int(left), int(top)
        return np.asarray(image.crop((left, top, left + side, top + side)), dtype=np.uint8)
    # Each channel is resampled in float, twice: as it is and transposed, and the two averaged. 8-bit resampling
    # rounds between its horizontal and vertical passes, and a turned image swaps the passes (one pixel in nine
    # moved by one level); float resampling still rounds its intermediate to float32, which moved a few pixels
    # across a rounding boundary. The average of both orders is the same for an image and its transpose.
    box = (left, top, left + side, top + side)
    box_transposed = (top, left, top + side, left + side)
    bands = []
    for band in image.split():
        band = band.convert("F")
        direct = np.asarray(band.resize((size, size), Image.BICUBIC, box=box))
        swapped = np.asarray(band.transpose(Image.Transpose.TRANSPOSE).resize((size, size), Image.BICUBIC,
                                                                             box=box_transposed)).T
        bands.append((direct + swapped) / 2)
    return np.clip(np.rint(np.stack(bands, axis=-1)), 0, 255).astype(np.uint8)


def draft_side(size: int) -> int:
    """The pixels per side that JPEG draft decoding keeps for a ``size``-pixel view: twice the view, so draft
    decoding only ever applies to photos at least four times the view's side (a phone's 4000x3000 decodes at
    1/4 scale), where the resize that follows still averages over two or more decoded pixels. A draft to the
    view's size itself changed the answer (docs/training.md, the decode-path measurement)."""
    return 2 * size


def shades_of_gray(pixels: np.ndarray, power: int = 6) -> np.ndarray:
    """Shades-of-gray colour constancy (Finlayson and Trezzi, 2004): each channel scaled so that the picture's
    illuminant, estimated per channel as the Minkowski ``power``-mean of its values, becomes grey (the channel
    gains average 1, so brightness stays). The means come from each channel's histogram, so they do not depend on
    the pixels' order: a turned or mirrored picture gets exactly the turned or mirrored result."""
    index = (pixels.reshape(-1, 3) + np.array([0, 256, 512], np.uint16)).ravel()  # channel c's value v: 256c + v
    counts = np.bincount(index, minlength=768).reshape(3, 256)
    values = np.arange(256, dtype=np.float64)
    illuminant = np.maximum((counts @ values ** power / (len(index) // 3)) ** (1 / power), 1.0)
    gains = illuminant.mean() / illuminant
    # a lookup table per channel: the same rounding as np.rint(pixels * gains), without a float copy of the picture
    tables = np.clip(np.rint(values[None, :] * gains[:, None]), 0, 255).astype(np.uint8)
    return tables.ravel()[index].reshape(pixels.shape)


def load_and_prepare(source, size: int, colour_constancy: int | None = None) -> np.ndarray:
    """:func:`load_image` then :func:`prepare` (then :func:`shades_of_gray` of that power, where the model folder
    asks for it): the one decode path of training, evaluation and serving."""
    prepared = prepare(load_image(source, draft_size=draft_side(size)), size)
    return shades_of_gray(prepared, colour_constancy) if colour_constancy else prepared
