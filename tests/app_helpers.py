"""Images as the page and the API send them, shared by the app's tests (test_app, test_web_input, test_batch_tab,
test_app_served)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from tests.conftest import lesion_like


def jpeg_bytes(size: int = 96, seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.fromarray(lesion_like(size, seed)).save(out, "JPEG", quality=90)
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def lesion_file(folder: Path, name: str = "lesion.jpg") -> Path:
    """A lesion-like JPEG (160 px) in ``folder``."""
    path = folder / name
    Image.fromarray(lesion_like(160)).save(path, quality=92)
    return path
