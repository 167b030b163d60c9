"""A corpus of awkward and broken image files, written with Pillow, numpy and zlib into a folder.

``build_corpus(folder)`` writes the files and returns ``CASES`` (``{file name: Case}``); each case says
whether ``load_image`` should accept the file (and at what upright size) or refuse it with an
``ImageError`` whose message contains ``message``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112
UPRIGHT = (96, 64)  # width, height of the upright orientation test pictures
MARK = (230, 20, 20)  # red block in the upright top-left corner
GREY = (128, 128, 128)


@dataclass(frozen=True)
class Case:
    size: tuple[int, int] | None = None  # upright (width, height) for an accepted file
    message: str | None = None  # text the ImageError must contain for a refused file

    @property
    def accepted(self) -> bool:
        return self.message is None


def rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth, colourful RGB picture (compresses well, survives JPEG)."""
    yy, xx = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).normal(0, 6, (height, width, 1))
    array = np.stack([150 + 80 * np.sin(xx / 17), 90 + 60 * np.cos(yy / 13), 70 + 40 * np.sin((xx + yy) / 29)], -1)
    return Image.fromarray((array + noise).clip(0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, **options)
    return out.getvalue()


def oriented(orientation: int, upright: tuple[int, int] = UPRIGHT) -> Image.Image:
    """The stored pixels of a picture whose upright view has the red mark top-left, for an EXIF orientation.

    Placed from the EXIF definitions, not from Pillow's transposes: 3 = stored upside down (mark bottom-right);
    6 = stored row 0 is the visual right side, column 0 the visual top (mark bottom-left);
    8 = stored row 0 is the visual left side, column 0 the visual bottom (mark top-right).
    """
    width, height = upright if orientation == 3 else upright[::-1]
    image = Image.new("RGB", (width, height), GREY)
    block = min(width, height) // 3
    left = 0 if orientation == 6 else width - block
    top = height - block if orientation in (3, 6) else 0
    image.paste(MARK, (left, top, left + block, top + block))
    return image


def exif_jpeg(orientation: int, upright: tuple[int, int] = UPRIGHT) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return jpeg_bytes(oriented(orientation, upright), exif=exif.tobytes())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 30_000) -> bytes:
    """A valid side x side 1-bit PNG of zeros: ~100 kB on disk, 900 megapixels once decoded."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = bytes(1 + (side + 7) // 8)  # filter byte 0 + packed pixels
    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(row * 1000) for _ in range(side // 1000)) + packer.compress(row * (side % 1000))
    data = rows + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def sixteen_bit_png(width: int, height: int) -> bytes:
    """A valid 16-bit greyscale PNG whose rows are all the same ramp: small on disk, width x height x 2 bytes once
    decoded (7000 x 7000: 49 megapixels, just under the 50-megapixel cap)."""
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16-bit greyscale
    ramp = np.linspace(0, 65535, width).astype(">u2").tobytes()
    packer = zlib.compressobj(6)
    row = b"\x00" + ramp  # filter byte 0 + big-endian samples
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def bad_checksum_png(png: bytes) -> bytes:
    """``png`` with one bit of its header chunk's checksum flipped (IHDR's CRC is bytes 29..32)."""
    return png[:29] + bytes([png[29] ^ 1]) + png[30:]


SVG = (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
       b'<circle cx="32" cy="32" r="20" fill="brown"/></svg>\n')


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


CASES: dict[str, Case] = {
    "good.jpg": Case(size=(200, 150)),
    "empty.jpg": Case(message="the file is empty"),
    "truncated.jpg": Case(message="truncated or corrupted"),
    "text.jpg": Case(message="text file, not an image"),
    "page.jpg": Case(message="web page (HTML), not an image"),
    "one_pixel.png": Case(message="too small (1x1)"),
    "sixteen_bit.png": Case(size=(100, 60)),
    "rgba.png": Case(size=(80, 80)),
    "palette.png": Case(size=(90, 70)),
    "animated.gif": Case(size=(64, 48)),
    "cmyk.jpg": Case(size=(120, 90)),
    "grey.jpg": Case(size=(120, 90)),
    "exif3.jpg": Case(size=UPRIGHT),
    "exif6.jpg": Case(size=UPRIGHT),
    "exif8.jpg": Case(size=UPRIGHT),
    "image.webp": Case(size=(100, 75)),
    "image.tiff": Case(size=(100, 75)),
    "long_thin.png": Case(message="too small (5000x10)"),
    "bomb.png": Case(message="too large (900,000,000 pixels)"),  # Pillow refuses it when opening
    "big.png": Case(message="too large (8000x8000)"),  # Pillow only warns at this size; load_image refuses it
    "icon.ico": Case(message="ICO images are not supported"),
    "vector.svg": Case(message="SVG vector images are not supported; convert it to PNG or JPEG"),
    "bad_checksum.png": Case(message="the PNG file is corrupted"),
}


def build_corpus(folder: Path) -> dict[str, Case]:
    """Write every case of ``CASES`` into ``folder``; return ``CASES``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = jpeg_bytes(rgb(200, 150))
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[..., :3] = 255  # white underneath ...
    rgba[:, :40] = (200, 40, 40, 255)  # ... opaque red left half, fully transparent right half
    sixteen = np.tile(np.linspace(0, 65535, 100).astype(np.uint16), (60, 1))  # 0 .. 65535 ramp, left to right
    frames = [Image.new("RGB", (64, 48), c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = {
        "good.jpg": good,
        "empty.jpg": b"",
        "truncated.jpg": good[: len(good) // 2],
        "text.jpg": b"Just some notes about a mole on my arm.\n" * 5,
        "page.jpg": b"<!DOCTYPE html>\n<html><head><title>Image</title></head><body></body></html>\n",
        "one_pixel.png": _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
        "sixteen_bit.png": _save(Image.fromarray(sixteen), "PNG"),
        "rgba.png": _save(Image.fromarray(rgba, "RGBA"), "PNG"),
        "palette.png": _save(rgb(90, 70).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
        "animated.gif": gif.getvalue(),
        "cmyk.jpg": jpeg_bytes(rgb(120, 90).convert("CMYK")),
        "grey.jpg": jpeg_bytes(rgb(120, 90).convert("L")),
        "exif3.jpg": exif_jpeg(3),
        "exif6.jpg": exif_jpeg(6),
        "exif8.jpg": exif_jpeg(8),
        "image.webp": _save(rgb(100, 75), "WEBP", quality=90),
        "image.tiff": _save(rgb(100, 75), "TIFF", compression="tiff_deflate"),
        "long_thin.png": _save(Image.new("RGB", (5000, 10), (180, 120, 100)), "PNG"),
        "bomb.png": bomb_png(),
        "big.png": bomb_png(8000),
        "icon.ico": _save(rgb(64, 64), "ICO", sizes=[(64, 64)]),
        "vector.svg": SVG,
        "bad_checksum.png": bad_checksum_png(_save(rgb(80, 60), "PNG")),
    }
    assert data.keys() == CASES.keys()
    for name, content in data.items():
        (folder / name).write_bytes(content)
    return CASES
