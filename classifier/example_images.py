"""Example images for the demo: the manifest in ``examples/`` and the JPEGs beside it.

The 14 JPEGs named in ``examples/manifest.csv`` are committed (HAM10000, CC BY-NC-SA 4.0, attributed in
``examples/README.md``): the one exception to "nothing of the data set is committed". ``copy_from`` (a local copy
of the data set, best resolution found) and ``download`` (the public ISIC Archive API) refresh them; both write
the same re-encoded JPEG (``encode_example``): at most 600 px a side and 150 KB, no metadata.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

from classifier.data import DataError, in_split, lesion_split, read_metadata
from classifier.errors import ClassifierError
from classifier.labels import CODES
from classifier.preprocessing import IMAGE_SUFFIXES

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
MANIFEST = EXAMPLES_DIR / "manifest.csv"
MANIFEST_COLUMNS = ("image_id", "dx", "dx_type", "age", "sex", "localization", "attribution", "license")
ISIC_API_URL = "https://api.isic-archive.com/api/v2"
ATTRIBUTION = "HAM10000 (Tschandl, Rosendahl, Kittler, Sci. Data 5, 180161, 2018), via the ISIC Archive"
LICENSE = "CC BY-NC-SA 4.0"
# Byte-identical photographs of one lesion (see the data set's README): never use them as examples.
DUPLICATES = frozenset({"ISIC_0024777", "ISIC_0029938", "ISIC_0024366", "ISIC_0029861"})
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # largest download accepted
EXAMPLE_MAX_SIDE = 600  # HAM10000's full resolution (600x450)
EXAMPLE_MAX_BYTES = 150 * 1024
EXAMPLES_MAX_TOTAL_BYTES = 2 * 1024 * 1024
MAX_EXAMPLES = 16
JPEG_QUALITIES = (90, 85, 80, 75, 70, 60, 50)  # tried in turn until the file fits EXAMPLE_MAX_BYTES
USER_AGENT = "ham10000-classifier-examples/0.1"


class ExampleError(ClassifierError):
    """One example image cannot be fetched or encoded; the message says why (the others go on)."""


@dataclass(frozen=True)
class ExampleImage:
    image_id: str
    dx: str
    dx_type: str
    age: float | None
    sex: str
    localization: str
    attribution: str
    license: str
    folder: Path = field(default=EXAMPLES_DIR, compare=False)

    @property
    def path(self) -> Path:
        return self.folder / f"{self.image_id}.jpg"


@dataclass
class FetchReport:
    """What ``copy_from`` or ``download`` did: ids written, ids already present, and failures with reasons."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def read_manifest(path: Path = MANIFEST) -> list[ExampleImage]:
    """Rows of the manifest; its images are looked for beside it."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        entries = []
        for line, row in enumerate(reader, start=2):
            values = {k: (row[k] or "").strip() for k in MANIFEST_COLUMNS}
            if values["dx"] not in CODES:
                dx = values["dx"]
                raise DataError(f"{path}:{line}: unknown diagnosis {dx!r}; expected one of {', '.join(CODES)}")
            values["age"] = float(values["age"]) if values["age"] else None
            entries.append(ExampleImage(**values, folder=path.parent))
    return entries


def write_manifest(entries: list[ExampleImage], path: Path = MANIFEST) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for e in entries:
            age = "" if e.age is None else f"{e.age:g}"
            writer.writerow([age if name == "age" else getattr(e, name) for name in MANIFEST_COLUMNS])


def choose_examples(data_dir: Path, per_class: int = 2) -> list[ExampleImage]:
    """The manifest's rule: per diagnosis, test-split histopathology-confirmed images of distinct lesions.

    Images with a full-size copy (``images_600x450``) come first, then by id. Classes without histo rows
    fall back to any confirmation. ``write_manifest(choose_examples(DIR))`` regenerates the manifest.
    """
    everything = read_metadata(data_dir)
    split = lesion_split(everything)
    records = [r for r in everything if r.image_id not in DUPLICATES]
    full_size = {p.stem for p in Path(data_dir).glob("images_600x450/*")}
    chosen = []
    for dx in CODES:
        pool = [r for r in in_split(records, split, "test") if r.dx == dx]
        pool = [r for r in pool if r.dx_type == "histo"] or pool
        lesions: set[str] = set()
        for r in sorted(pool, key=lambda r: (r.image_id not in full_size, r.image_id)):
            if len(lesions) < per_class and r.lesion_id not in lesions:
                lesions.add(r.lesion_id)
                chosen.append(ExampleImage(r.image_id, r.dx, r.dx_type, r.age, r.sex, r.localization,
                                           ATTRIBUTION, LICENSE))
    return chosen


def available_examples(folder: Path = EXAMPLES_DIR, manifest: Path = MANIFEST) -> list[ExampleImage]:
    """Manifest entries whose JPEG is present in ``folder``."""
    entries = [replace(e, folder=Path(folder)) for e in read_manifest(manifest)]
    return [e for e in entries if e.path.is_file()]


def encode_example(data: bytes) -> bytes:
    """An example image as committed: upright RGB JPEG, at most ``EXAMPLE_MAX_SIDE`` px a side, the highest
    quality of ``JPEG_QUALITIES`` that fits ``EXAMPLE_MAX_BYTES``, no metadata. ExampleError if not an image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            image = ImageOps.exif_transpose(im).convert("RGB")
    except UnidentifiedImageError:
        raise ExampleError("not an image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # Pillow's, for broken data
        raise ExampleError(f"not a readable image ({e})") from None
    if max(image.size) > EXAMPLE_MAX_SIDE:
        image.thumbnail((EXAMPLE_MAX_SIDE, EXAMPLE_MAX_SIDE), Image.LANCZOS)
    for quality in JPEG_QUALITIES:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality, optimize=True)
        if out.tell() <= EXAMPLE_MAX_BYTES:
            return out.getvalue()
    raise ExampleError(f"does not fit in {EXAMPLE_MAX_BYTES // 1024} KB even at JPEG quality {JPEG_QUALITIES[-1]}")


def pixel_count(path: Path) -> int:
    """Width x height from the file's header (0 if it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.width * image.height
    except Exception:  # any unreadable file ranks last
        return 0


def best_images(folder: Path, image_ids) -> dict[str, Path]:
    """For each wanted id, its file under ``folder`` (any layout) with the most pixels, then the most bytes:
    e.g. ``images_600x450`` before ``images_center224`` before ``images_200x150``."""
    wanted = set(image_ids)
    candidates: dict[str, list[Path]] = {}
    for path in Path(folder).rglob("*"):
        if path.stem in wanted and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            candidates.setdefault(path.stem, []).append(path)
    return {image_id: max(paths, key=lambda p: (pixel_count(p), p.stat().st_size, str(p)))
            for image_id, paths in candidates.items()}


def _is_readable_image(path: Path) -> bool:
    """An existing, decodable image file (a damaged one is fetched again)."""
    from PIL import Image

    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:  # any decoder error means the file is not usable
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so no partial file is ever left."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary, shareable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_from(source_dir: Path, dest: Path = EXAMPLES_DIR, manifest: Path = MANIFEST) -> FetchReport:
    """Write the manifest's images from a local HAM10000 folder (any layout; the best resolution of each)
    into ``dest/{image_id}.jpg``, re-encoded by ``encode_example``."""
    source_dir, dest = Path(source_dir), Path(dest)
    if not source_dir.is_dir():
        raise DataError(f"{source_dir}: not a folder")
    entries = read_manifest(manifest)
    images = best_images(source_dir, [e.image_id for e in entries])
    dest.mkdir(parents=True, exist_ok=True)
    report = FetchReport()
    for e in entries:
        source = images.get(e.image_id)
        if source is None:
            report.failed[e.image_id] = f"not found in {source_dir}"
            continue
        try:
            _write_atomic(dest / f"{e.image_id}.jpg", encode_example(source.read_bytes()))
        except (OSError, ExampleError) as err:
            report.failed[e.image_id] = f"{source}: {err}"
        else:
            report.written.append(e.image_id)
    return report


def _get(url: str, timeout: float, accept: str) -> tuple[bytes, str]:
    """Body and content type of a GET; ExampleError with a short reason on any failure."""
    shown = url.split("?", 1)[0]  # signed file URLs carry long credentials in the query
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ExampleError(f"not an http(s) URL: {shown}")
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_IMAGE_BYTES + 1)
            content_type = response.headers.get_content_type()
    except urllib.error.HTTPError as e:
        e.close()
        raise ExampleError(f"HTTP {e.code} {e.reason} from {shown}") from None
    except urllib.error.URLError as e:
        raise ExampleError(f"cannot reach {shown}: {e.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts, resets, malformed URLs
        raise ExampleError(f"cannot fetch {shown}: {str(e) or type(e).__name__}") from None
    if len(body) > MAX_IMAGE_BYTES:
        raise ExampleError(f"{shown}: response larger than {MAX_IMAGE_BYTES} bytes")
    return body, content_type


def fetch_isic_image(image_id: str, api_url: str, timeout: float = 30.0, variant: str = "full") -> bytes:
    """One image from the ISIC Archive API (``GET images/{id}/``, then ``files.<variant>.url``), re-encoded by
    ``encode_example``."""
    meta_url = f"{api_url.rstrip('/')}/images/{urllib.parse.quote(image_id)}/"
    body, content_type = _get(meta_url, timeout, "application/json")
    try:
        doc = json.loads(body)
        image_url = doc["files"][variant]["url"]
        if not isinstance(image_url, str):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ExampleError(f"{meta_url}: response is not JSON ({content_type})") from None
    except (KeyError, TypeError):
        raise ExampleError(f"{meta_url}: JSON has no files.{variant}.url") from None
    data, content_type = _get(urllib.parse.urljoin(meta_url, image_url), timeout, "image/*")
    try:
        return encode_example(data)
    except ExampleError as e:
        raise ExampleError(f"{image_url.split('?', 1)[0]}: {e} (content type {content_type})") from None


def download(dest: Path = EXAMPLES_DIR, api_url: str | None = None, manifest: Path = MANIFEST,
             timeout: float = 30.0, force: bool = False) -> FetchReport:
    """Fetch the manifest's images from the ISIC Archive into ``dest``, skipping readable ones already there
    unless ``force``.

    The API base is ``api_url``, else the ``ISIC_API_URL`` environment variable, else the public archive.
    """
    api_url = api_url or os.environ.get("ISIC_API_URL") or ISIC_API_URL
    dest = Path(dest)
    entries = read_manifest(manifest)
    dest.mkdir(parents=True, exist_ok=True)
    report = FetchReport()
    for e in entries:
        target = dest / f"{e.image_id}.jpg"
        if not force and _is_readable_image(target):
            report.skipped.append(e.image_id)
            continue
        try:
            _write_atomic(target, fetch_isic_image(e.image_id, api_url, timeout))
        except (OSError, ExampleError) as err:
            report.failed[e.image_id] = str(err)
        else:
            report.written.append(e.image_id)
    return report

