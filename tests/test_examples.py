"""The example images: the committed JPEGs and their manifest, refreshing them from a local data set or ISIC."""

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from classifier import example_images as examples  # noqa: E402
from classifier.commands import examples as command  # noqa: E402
from classifier.data import DataError  # noqa: E402
from classifier.labels import CODES  # noqa: E402
from tests.conftest import HAM_DIR  # noqa: E402

SHARED = HAM_DIR  # ../shared or HAM10000_DIR, as every test reads it
IDS = [e.image_id for e in examples.read_manifest()]


def jpeg_bytes(color=(180, 90, 60), fmt="JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(out, fmt)
    return out.getvalue()


def kaggle_layout(root: Path, ids: list[str]) -> Path:
    """A fake Kaggle download: ids alternate between part_1 and part_2; the last one is a PNG."""
    for i, image_id in enumerate(ids):
        part = root / f"HAM10000_images_part_{i % 2 + 1}"
        part.mkdir(parents=True, exist_ok=True)
        if i == len(ids) - 1:
            (part / f"{image_id}.png").write_bytes(jpeg_bytes((i, 0, 0), "PNG"))
        else:
            (part / f"{image_id}.jpg").write_bytes(jpeg_bytes((i, 0, 0)))
    return root


def run_command(argv: list[str]) -> int:
    """Exit status of the examples command, parsed and mapped as the CLI would (without importing the other
    commands)."""
    from classifier.errors import exit_status

    parser = argparse.ArgumentParser(prog="examples")
    command.add_arguments(parser)
    try:
        return exit_status(command.run, parser.parse_args(argv))
    except SystemExit as e:
        return e.code


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".jpg")


# --- manifest ---------------------------------------------------------------------------------------------

def test_manifest_covers_every_class_with_valid_unique_rows():
    entries = examples.read_manifest()
    assert {e.dx for e in entries} == set(CODES)
    assert len(IDS) == len(set(IDS))
    assert not set(IDS) & examples.DUPLICATES
    for e in entries:
        assert e.image_id.startswith("ISIC_") and e.dx_type == "histo"
        assert e.license == "CC BY-NC-SA 4.0" and "Tschandl" in e.attribution
        assert e.path == examples.EXAMPLES_DIR / f"{e.image_id}.jpg"


def test_committed_examples_are_small_readable_jpegs_of_every_class():
    """A fresh clone shows every example: the JPEGs are in the repository, within the size limits."""
    entries = examples.read_manifest()
    assert len(entries) <= examples.MAX_EXAMPLES
    assert [e.image_id for e in examples.available_examples()] == IDS  # every listed image is present
    sizes = [e.path.stat().st_size for e in entries]
    assert max(sizes) <= examples.EXAMPLE_MAX_BYTES and sum(sizes) <= examples.EXAMPLES_MAX_TOTAL_BYTES
    for e in entries:
        with Image.open(e.path) as im:
            im.load()
            assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) <= examples.EXAMPLE_MAX_SIDE
            assert "exif" not in im.info
    readme = (examples.EXAMPLES_DIR / "README.md").read_text()
    for needed in ("CC BY-NC-SA 4.0", "Tschandl", "Sci. Data 5, 180161 (2018)", "10.1038/sdata.2018.161", "MIT"):
        assert needed in readme


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present")
def test_committed_examples_are_the_data_sets_images_at_their_best_resolution():
    """Each committed JPEG is what ``--from`` writes today from the best copy of that image."""
    best = examples.best_images(SHARED, IDS)
    for image_id in IDS:
        source = best[image_id]
        for folder in ("images_600x450", "images_center224", "images_200x150"):
            if (SHARED / folder / f"{image_id}.jpg").is_file():
                assert source.parent.name == folder  # the first folder that has it wins
                break
        committed = (examples.EXAMPLES_DIR / f"{image_id}.jpg").read_bytes()
        assert committed == examples.encode_example(source.read_bytes()), image_id


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present")
def test_manifest_follows_the_selection_rule_and_metadata():
    """Diagnosis, age, sex and site shown in the app match the official metadata; images are test-split."""
    assert examples.read_manifest() == examples.choose_examples(SHARED)


def test_read_manifest_rejects_unknown_diagnosis(tmp_path):
    bad = tmp_path / "manifest.csv"
    bad.write_text(",".join(examples.MANIFEST_COLUMNS) + "\nISIC_1,melanoma,histo,50,male,back,x,y\n")
    with pytest.raises(DataError, match="unknown diagnosis"):
        examples.read_manifest(bad)


# --- copy_from ----------------------------------------------------------------------------------------------

def test_copy_from_kaggle_layout(tmp_path):
    source = kaggle_layout(tmp_path / "kaggle", IDS[1:])
    dest = tmp_path / "dest"
    report = examples.copy_from(source, dest)
    assert report.written == IDS[1:]
    assert list(report.failed) == [IDS[0]] and "not found" in report.failed[IDS[0]]
    assert sorted(p.stem for p in dest.iterdir()) == sorted(IDS[1:]) and not leftovers(dest)
    jpg = next(source.rglob(f"{IDS[1]}.jpg"))
    assert (dest / f"{IDS[1]}.jpg").read_bytes() == examples.encode_example(jpg.read_bytes())  # re-encoded
    with Image.open(dest / f"{IDS[-1]}.jpg") as im:  # the PNG became a JPEG
        assert im.format == "JPEG"
    assert [e.image_id for e in examples.available_examples(dest)] == IDS[1:]
    assert all(e.path.parent == dest for e in examples.available_examples(dest))


def test_copy_from_prefers_the_most_pixels(tmp_path):
    """Several resolutions side by side: the largest image wins, whatever its file size."""
    source = tmp_path / "data"
    for folder, size, quality in (("small", (200, 150), 95), ("full", (600, 450), 10), ("crop", (224, 224), 95)):
        (source / folder).mkdir(parents=True)
        Image.new("RGB", size, (150, 90, 80)).save(source / folder / f"{IDS[0]}.jpg", quality=quality)
    assert examples.best_images(source, [IDS[0]])[IDS[0]].parent.name == "full"
    report = examples.copy_from(source, tmp_path / "dest")
    assert report.written == [IDS[0]]
    with Image.open(tmp_path / "dest" / f"{IDS[0]}.jpg") as im:
        assert im.size == (600, 450)


def test_encode_example_fits_the_limits_and_is_repeatable():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8))  # incompressible, too large
    out = io.BytesIO()
    noise.save(out, "PNG")
    encoded = examples.encode_example(out.getvalue())
    assert len(encoded) <= examples.EXAMPLE_MAX_BYTES
    assert encoded == examples.encode_example(out.getvalue())  # same input, same bytes
    with Image.open(io.BytesIO(encoded)) as im:
        assert im.format == "JPEG" and im.size == (600, 450)
    with pytest.raises(examples.ExampleError, match="not an image"):
        examples.encode_example(b"<html>not an image</html>")


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present")
def test_copy_from_shared_data_set(tmp_path):
    report = examples.copy_from(SHARED, tmp_path)
    assert report.ok and report.written == IDS
    for image_id in IDS:
        assert (tmp_path / f"{image_id}.jpg").read_bytes() == (examples.EXAMPLES_DIR / f"{image_id}.jpg").read_bytes()


# --- download -----------------------------------------------------------------------------------------------

class FakeIsic(BaseHTTPRequestHandler):
    """Imitates ``GET /api/v2/images/{isic_id}/`` and the file URLs it points to."""

    images: dict[str, bytes] = {}  # id -> bytes served as the full image
    not_found: set[str] = set()  # metadata 404
    html_image: set[str] = set()  # metadata fine, "image" is an HTML page
    html_metadata: set[str] = set()  # metadata endpoint answers HTML
    slow: set[str] = set()  # metadata answers after 1 s
    local_file: set[str] = set()  # metadata points at a file:// URL
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def send(self, status, body: bytes, content_type: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.requests.append(self.path)
        parts = self.path.strip("/").split("/")
        base = f"http://127.0.0.1:{self.server.server_port}"
        if parts[:3] == ["api", "v2", "images"] and len(parts) == 4:
            isic_id = parts[3]
            if isic_id in self.slow:
                time.sleep(1.0)
            if isic_id in self.not_found:
                return self.send(404, b'{"detail": "Not Found"}', "application/json")
            if isic_id in self.html_metadata:
                return self.send(200, b"<html><body>maintenance</body></html>", "text/html")
            if isic_id in self.local_file:
                doc = {"files": {"full": {"url": "file:///etc/hostname", "size": 1}}}
                return self.send(200, json.dumps(doc).encode(), "application/json")
            doc = {"isic_id": isic_id, "copyright_license": "CC-BY-NC", "public": True, "metadata": {},
                   "files": {"full": {"url": f"{base}/files/{isic_id}.jpg?X-Amz-Signature=abc", "size": 1},
                             "thumbnail_256": {"url": f"{base}/thumbs/{isic_id}.jpg", "size": 1}}}
            return self.send(200, json.dumps(doc).encode(), "application/json")
        if parts[0] == "files" and len(parts) == 2:
            isic_id = parts[1].split(".")[0]
            if isic_id in self.html_image:
                return self.send(200, b"<!doctype html><title>Access denied</title>", "text/html")
            if isic_id in self.images:
                return self.send(200, self.images[isic_id], "image/jpeg")
        self.send(404, b"not found", "text/plain")


@pytest.fixture
def isic(monkeypatch):
    """A loopback ISIC imitation; yields its API base URL. Every manifest id is served unless a test says not."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("ISIC_API_URL", raising=False)
    FakeIsic.images = {image_id: jpeg_bytes((i, 100, 0)) for i, image_id in enumerate(IDS)}
    for attr in ("not_found", "html_image", "html_metadata", "slow", "local_file"):
        setattr(FakeIsic, attr, set())
    FakeIsic.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIsic)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/v2"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_download_writes_good_images_and_reports_bad_ones(isic, tmp_path, monkeypatch):
    missing, html, not_json, local, present = IDS[:5]
    FakeIsic.local_file.add(local)
    FakeIsic.not_found.add(missing)
    FakeIsic.html_image.add(html)
    FakeIsic.html_metadata.add(not_json)
    kept = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 150, 140)).save(kept, "JPEG")
    (tmp_path / f"{present}.jpg").write_bytes(kept.getvalue())
    (tmp_path / f"{IDS[5]}.jpg").write_bytes(b"damaged")  # not an image: fetched again
    monkeypatch.setenv("ISIC_API_URL", isic)  # the environment variable picks the server

    report = examples.download(tmp_path)

    good = IDS[5:]
    assert report.written == good and report.skipped == [present]
    assert set(report.failed) == {missing, html, not_json, local}
    assert "HTTP 404" in report.failed[missing]
    assert "not an image" in report.failed[html] and "text/html" in report.failed[html]
    assert "not JSON" in report.failed[not_json]
    assert "not an http(s) URL" in report.failed[local]
    for image_id in good:
        assert (tmp_path / f"{image_id}.jpg").read_bytes() == examples.encode_example(FakeIsic.images[image_id])
    assert not (tmp_path / f"{missing}.jpg").exists() and not (tmp_path / f"{html}.jpg").exists()
    assert (tmp_path / f"{present}.jpg").read_bytes() == kept.getvalue()
    assert not leftovers(tmp_path)
    assert not any(present in path for path in FakeIsic.requests)

    FakeIsic.requests = []
    again = examples.download(tmp_path, api_url=isic + "/")  # the parameter works too; only failures are retried
    assert again.written == [] and set(again.failed) == {missing, html, not_json, local}
    assert sorted(again.skipped) == sorted(good + [present])
    assert not any(image_id in path for path in FakeIsic.requests for image_id in good)

    forced = examples.download(tmp_path, api_url=isic, force=True)  # --force fetches present images again
    assert present in forced.written and not forced.skipped


@pytest.mark.slow
def test_download_times_out_per_image(isic, tmp_path):
    FakeIsic.slow.add(IDS[0])
    report = examples.download(tmp_path, api_url=isic, timeout=0.3)
    assert list(report.failed) == [IDS[0]] and "timed out" in report.failed[IDS[0]]
    assert report.written == IDS[1:] and not leftovers(tmp_path)


def test_download_reports_an_unreachable_server(tmp_path):
    report = examples.download(tmp_path, api_url="http://127.0.0.1:9/api/v2", timeout=2)
    assert set(report.failed) == set(IDS) and not report.written
    assert all("cannot" in reason for reason in report.failed.values())
    assert not leftovers(tmp_path)


# --- command line -------------------------------------------------------------------------------------------

def test_command_usage_errors_exit_2(tmp_path, capsys):
    assert run_command([]) == 2
    assert run_command(["--from", str(tmp_path), "--download"]) == 2
    assert run_command(["--from", str(tmp_path / "nowhere"), "--dest", str(tmp_path / "d")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_command_errors_exit_2_through_the_cli(tmp_path, capsys):
    """An unusable manifest (a DataError) ends as `error: ...` with exit status 2, as in every other command."""
    from classifier.cli import main

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image_id,diagnosis\nISIC_0000001,mel\n")
    assert main(["examples", "--from", str(tmp_path), "--dest", str(tmp_path / "d"), "--manifest",
                 str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {manifest}: missing column(s)") and "Traceback" not in err


@pytest.mark.slow
def test_command_copies_and_downloads(isic, tmp_path, monkeypatch, capsys):
    source = kaggle_layout(tmp_path / "kaggle", IDS)
    assert run_command(["--from", str(source), "--dest", str(tmp_path / "copied")]) == 0
    assert f"copied {len(IDS)}" in capsys.readouterr().out

    monkeypatch.setenv("ISIC_API_URL", isic)
    FakeIsic.not_found.add(IDS[0])
    assert run_command(["--download", "--dest", str(tmp_path / "fetched")]) == 1
    captured = capsys.readouterr()
    assert f"downloaded {len(IDS) - 1}" in captured.out and IDS[0] in captured.err


@pytest.mark.slow
def test_python_m_classifier_examples_exit_status(tmp_path):
    """The real entry point: a missing image exits 1 with a message and no traceback."""
    source = kaggle_layout(tmp_path / "kaggle", IDS[1:])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "classifier", "examples", "--from", str(source),
                             "--dest", str(tmp_path / "dest")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1, result.stderr
    assert IDS[0] in result.stderr and "not found" in result.stderr and "Traceback" not in result.stderr
    assert len(list((tmp_path / "dest").glob("*.jpg"))) == len(IDS) - 1
