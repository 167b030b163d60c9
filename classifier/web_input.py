"""What the web handlers accept, checked before anything is decoded or classified (security-relevant).

- The upload cap: every image, however it arrives (an uploaded file, a base64 ``data:`` URL, bytes), is measured
  against ``max_bytes`` before it is read or decoded.
- Where an image may come from: a web value must be Gradio's file dict, and a path in it must lie in the app's
  upload folder, so that a caller cannot make the app read the server's own files.
- The form values as a page or an API call sends them: the heatmap class here; top_k is checked by the API
  itself (``classifier.api.top_k_value``, which takes a float or a string where an int is meant).

No Gradio here: the handlers in app.py call these functions, and the tests call them directly.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from classifier.errors import ArgumentError
from classifier.preprocessing import ImageError

PREDICTED = "predicted"  # the heatmap class meaning "whichever class the model predicts"
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_size(size: str | int) -> int:
    """Bytes in a size such as ``"10mb"`` (Gradio's ``max_file_size`` rule: units of 1024)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", str(size).strip())
    unit = (match.group(2) or "B").upper() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ArgumentError(f"not a size: {size!r} (examples: 10mb, 500kb)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


def human_size(n: int) -> str:
    """``n`` bytes for a person: 10 MB, 12.1 MB, 512 KB."""
    for unit in ("GB", "MB", "KB"):
        if n >= _SIZE_UNITS[unit]:
            return f"{n / _SIZE_UNITS[unit]:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def too_large(n: int, max_bytes: int) -> ImageError:
    return ImageError(f"the image is {human_size(n)}, over the upload limit of {human_size(max_bytes)}")


def inside(path: Path, folder: str | os.PathLike) -> bool:
    """Whether the resolved ``path`` is ``folder`` or lies below it."""
    folder = Path(folder).resolve()
    return path == folder or folder in path.parents


def image_source(value, max_bytes: int | None = None, upload_dir: str | os.PathLike | None = None):
    """What ``Classifier.classify`` reads from an image value, its size checked against ``max_bytes`` before
    anything is decoded; None when there is no image.

    The page and the API send Gradio's file dict: ``path`` (an upload) or a base64 ``data:`` URL (some webcam
    captures and API calls). With ``upload_dir`` (the web handlers), only dicts are accepted and a path must lie
    in that folder, so a caller cannot make the app read the server's own files. Python callers may also pass a
    path, bytes, a PIL image or an array.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        if upload_dir is not None:
            raise ImageError("send the image as a file (gradio_client: handle_file(path)), not as "
                             f"{type(value).__name__}")
        if isinstance(value, (str, os.PathLike)) and max_bytes is not None and os.path.isfile(value):
            if (size := os.path.getsize(value)) > max_bytes:
                raise too_large(size, max_bytes)
        if isinstance(value, (bytes, bytearray)) and max_bytes is not None and len(value) > max_bytes:
            raise too_large(len(value), max_bytes)
        return value
    if value.get("path"):
        path = Path(value["path"]).resolve()
        if upload_dir is not None and not inside(path, upload_dir):
            raise ImageError("the image file was not uploaded to this app")
        if not path.is_file():
            raise ImageError("the uploaded image file is gone; upload it again")
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            raise too_large(size, max_bytes)
        return str(path)
    url = value.get("url") or ""
    if url.startswith("data:") and "," in url:
        payload = url.split(",", 1)[1]
        decoded_size = len(payload) * 3 // 4 - payload[-2:].count("=")  # base64: 4 characters per 3 bytes
        if max_bytes is not None and decoded_size > max_bytes:
            raise too_large(decoded_size, max_bytes)
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("the image data sent by the browser is not valid base64") from None
    return None


def heatmap_code(choice: str | None) -> str | None:
    """The class code the heatmap is for (None: the predicted class)."""
    return None if choice in (None, "", PREDICTED) else choice
