"""Awkward and broken files (tests/bad_inputs.py) through load_image, Classifier.classify and the predict CLI.

Every file is either accepted as an upright RGB image of the expected size or refused with an ImageError
that says why, quickly and without decoding anything huge. Policies checked here:

- RGBA (and palette or colour-key transparency): transparent pixels are flattened onto black, the colour
  of a dermatoscope's vignette; opaque pixels keep their colour.
- 16-bit images (mode I;16, or uint16 arrays) are scaled to 8 bits: 65535 -> 255, 32768 -> 128. A 16-bit
  image whose values all stay <= 255 is taken as 8-bit data stored in 16 bits and kept as it is.
- EXIF orientation is applied; only the first frame of an animation is used; CMYK and greyscale become RGB.
- Formats other than JPEG, PNG, WebP, TIFF, BMP and GIF (here ICO and SVG) are refused, as are images with a
  side under 32 pixels and images over 50 megapixels (refused from the header, before decoding).
- Paths that are not regular files (missing, folders, pipes, devices) are refused for what they are; so are
  arrays that hold no numbers. ``predict`` gives each such path an error row and classifies the others.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.preprocessing import ImageError, load_image
from tests.bad_inputs import CASES, MARK, UPRIGHT, build_corpus, exif_jpeg, jpeg_bytes, rgb

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 5.0  # per file, generous for a loaded machine
NAMES = sorted(CASES)
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # big.png, refused anyway


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs")
    return folder, build_corpus(folder)


def timed_load(path, **kwargs):
    started = time.perf_counter()
    try:
        return load_image(path, **kwargs)
    finally:
        assert time.perf_counter() - started < SECONDS, f"{path.name} took too long"


@pytest.mark.parametrize("name", NAMES)
def test_load_image_accepts_or_explains(corpus, name):
    folder, cases = corpus
    case = cases[name]
    if case.accepted:
        image = timed_load(folder / name)
        assert image.mode == "RGB" and image.size == case.size
    else:
        with pytest.raises(ImageError) as error:
            timed_load(folder / name)
        assert case.message in str(error.value)
        assert str(error.value).startswith(f"{name}: ")


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(corpus, orientation):
    folder, _ = corpus
    image = np.asarray(load_image(folder / f"exif{orientation}.jpg")).astype(int)
    assert image.shape[:2] == UPRIGHT[::-1]  # (height, width): 6 and 8 are stored on their side
    block = min(UPRIGHT) // 3
    corners = {"top-left": image[:block, :block], "top-right": image[:block, -block:],
               "bottom-left": image[-block:, :block], "bottom-right": image[-block:, -block:]}
    red = {where: np.abs(pixels.mean(axis=(0, 1)) - MARK).max() < 40 for where, pixels in corners.items()}
    assert red == {"top-left": True, "top-right": False, "bottom-left": False, "bottom-right": False}


def test_exif_orientation_survives_reduced_jpeg_decoding(tmp_path):
    path = tmp_path / "big6.jpg"
    path.write_bytes(exif_jpeg(6, upright=(1200, 800)))
    image = load_image(path, draft_size=160)
    assert image.width > image.height >= 160 and image.width < 1200  # decoded at a reduced scale, upright
    corner = np.asarray(image)[: image.height // 4, : image.height // 4].mean(axis=(0, 1))
    assert np.abs(corner - MARK).max() < 40


def test_transparent_pixels_become_black(corpus):
    folder, _ = corpus
    image = np.asarray(load_image(folder / "rgba.png")).astype(int)
    assert np.abs(image[:, :40] - (200, 40, 40)).max() <= 1  # opaque half keeps its colour
    assert image[:, 40:].max() == 0  # transparent half (white underneath) is black


def test_sixteen_bit_is_scaled_to_eight(corpus):
    folder, _ = corpus
    image = np.asarray(load_image(folder / "sixteen_bit.png")).astype(int)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert image[0, 0, 0] == 0 and image[0, -1, 0] == 255 and image[0, 50, 0] == 129  # 33098 * 255 / 65535
    array = np.asarray(load_image(np.full((40, 40), 32768, np.uint16)))
    assert (array == 128).all()


def test_palette_animation_cmyk_and_grey_keep_their_colours(corpus):
    folder, _ = corpus
    first_frame = np.asarray(load_image(folder / "animated.gif")).astype(int)
    assert np.abs(first_frame.mean(axis=(0, 1)) - (200, 30, 30)).max() < 8
    for name, size in (("palette.png", (90, 70)), ("cmyk.jpg", (120, 90))):
        expected = np.asarray(rgb(*size)).astype(int)
        assert np.abs(np.asarray(load_image(folder / name)).astype(int) - expected).mean() < 12, name
    grey = np.asarray(load_image(folder / "grey.jpg"))
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_paths_that_are_not_regular_files_are_named_for_what_they_are(tmp_path):
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    for path, message in ((tmp_path / "missing.jpg", "no such file"), (tmp_path, "is a folder, not an image file"),
                          (pipe, "not a regular file"), (Path("/dev/zero"), "not a regular file")):
        with pytest.raises(ImageError) as error:
            timed_load(path)  # never opens the pipe (it would wait for a writer) nor reads the device
        assert str(error.value).startswith(f"{path}: {message}")


def test_an_array_of_text_is_an_image_error():
    for array in (np.array(["lesion.jpg"]), np.array([["a", "b"], ["c", "d"]]), np.array("lesion.jpg"),
                  np.full((40, 40, 3), "x"), np.full((40, 40), None, dtype=object)):
        with pytest.raises(ImageError, match="must hold pixel values"):
            load_image(array)


def test_a_49_megapixel_16_bit_png_loads_within_500_mb(tmp_path):
    """Decoded, a 7000 x 7000 16-bit PNG is 98 MB; its conversion to 8 bits once took 1.3 GB of float64 copies."""
    script = """
import sys
from classifier.preprocessing import load_and_prepare
def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024
before = peak()
view = load_and_prepare(sys.argv[1], 160)
print(peak() - before, view[0, 0, 0], view[0, -1, 0], *view.shape)
"""
    from tests.bad_inputs import sixteen_bit_png

    path = tmp_path / "big16.png"
    path.write_bytes(sixteen_bit_png(7000, 7000))
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    grown_mb, left, right, *shape = map(int, done.stdout.split())
    assert grown_mb < 500, done.stdout
    assert shape == [160, 160, 3] and left <= 2 and right >= 253  # the ramp still runs from black to white


def test_whole_corpus_is_quick_and_small_in_a_fresh_process(tmp_path):
    """Build the corpus and load every file in a new process: time and peak memory growth per file."""
    script = """
import json, sys, time
from pathlib import Path
from classifier.preprocessing import ImageError, load_image
from tests.bad_inputs import build_corpus
def peak():  # VmHWM: ru_maxrss of a child started by subprocess can include its parent's memory at the fork
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024
started = time.perf_counter()
cases = build_corpus(Path(sys.argv[1]))
report = {"build_s": time.perf_counter() - started, "build_mb": peak(), "files": {}}
for name in cases:
    before, started = peak(), time.perf_counter()
    try:
        load_image(Path(sys.argv[1]) / name, draft_size=320)
    except ImageError:
        pass
    report["files"][name] = [time.perf_counter() - started, peak() - before]
print(json.dumps(report))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["build_s"] < 15 and report["build_mb"] < 300
    for name, (seconds, grown_mb) in report["files"].items():
        assert seconds < SECONDS and grown_mb < 50, (name, seconds, grown_mb)


def test_classify_gives_a_prediction_or_an_image_error(corpus, tiny_litert_dir):
    from classifier.api import Classifier

    folder, cases = corpus
    classifier = Classifier(tiny_litert_dir)
    for name, case in cases.items():
        if case.accepted:
            prediction = classifier.classify(folder / name, top_k=2)
            assert prediction.label in classifier.config.codes
            assert abs(sum(p.probability for p in prediction.probabilities) - 1) < 1e-3
        else:
            with pytest.raises(ImageError, match=case.message.replace("(", r"\(").replace(")", r"\)")):
                classifier.classify(folder / name)


def run_predict(*argv, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    return subprocess.run([sys.executable, "-m", "classifier", "predict", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def test_cli_reports_every_file_and_goes_on(corpus, tiny_litert_dir):
    folder, cases = corpus
    done = run_predict(folder, "--model", tiny_litert_dir)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(r["path"]).name for r in lines] == sorted(cases)  # one line per file, sorted
    for record in lines:
        case = cases[Path(record["path"]).name]
        if case.accepted:
            assert record["label"] in record["probabilities"] and "error" not in record
            assert record["notice"].startswith("Research demo only")
        else:
            assert set(record) == {"path", "error"} and case.message in record["error"]


def test_cli_csv_has_an_error_column(corpus, tiny_litert_dir):
    import csv

    folder, cases = corpus
    done = run_predict(folder, "--model", tiny_litert_dir, "--format", "csv", "--top-k", "2")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Research demo only" in done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert len(rows) == len(cases)
    for row in rows:
        case = cases[Path(row["path"]).name]
        assert bool(row["label"]) == case.accepted and bool(row["error"]) == (not case.accepted)
        if case.accepted:
            assert row["top2_code"] and 0 <= float(row["malignant_probability"]) <= 1


def test_cli_exits_0_for_good_files_and_2_for_usage_and_model_errors(corpus, tiny_litert_dir, tmp_path):
    folder, _ = corpus
    done = run_predict(folder / "good.jpg", folder / "exif6.jpg", "--model", tiny_litert_dir, "--tta",
                       "--heatmap-dir", tmp_path / "heat")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["tta_views"] for r in records] == [8, 8]
    assert all(Path(r["heatmap_path"]).is_file() and r["heatmap"]["grid"] for r in records)
    assert Image.open(records[0]["heatmap_path"]).size == (64, 64)
    for argv in ([folder, "--model", tmp_path / "no_model"],
                 [folder, "--model", tiny_litert_dir, "--top-k", "99"]):
        done = run_predict(*argv)
        assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: ")
        assert "Traceback" not in done.stderr and not done.stdout


def test_cli_gives_paths_that_are_no_files_an_error_row_and_classifies_the_rest(corpus, tiny_litert_dir, tmp_path):
    folder, _ = corpus
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    paths = [folder / "good.jpg", tmp_path / "missing.jpg", pipe, folder / "rgba.png"]
    done = run_predict(*paths, "--model", tiny_litert_dir)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "summary: 4 images, 2 errors" in done.stderr
    records = {r["path"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(records) == set(map(str, paths))
    assert records[str(tmp_path / "missing.jpg")]["error"] == f"{tmp_path / 'missing.jpg'}: no such file"
    assert "not a regular file" in records[str(pipe)]["error"]
    assert "label" in records[str(folder / "good.jpg")] and "label" in records[str(folder / "rgba.png")]


def test_cli_csv_writes_every_row_when_a_file_name_is_not_utf8(tmp_path, tiny_litert_dir):
    """File names that are not valid UTF-8 (here Latin-1 "café") are written with \\xNN escapes on a strict
    UTF-8 stdout, as on an ordinary desktop, instead of ending the run in a traceback; JSON escapes them itself."""
    import csv

    good = jpeg_bytes(rgb(120, 90))
    names = [b"a.jpg", b"caf\xe9 notes.jpg", b"caf\xe9.jpg", b"z.jpg"]  # in the order predict sorts them
    for name in names:
        with open(os.path.join(os.fsencode(tmp_path), name), "wb") as f:
            f.write(b"notes, not a picture" if b"notes" in name else good)
    done = run_predict(tmp_path, "--model", tiny_litert_dir, "--format", "csv", PYTHONIOENCODING="utf-8")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [Path(row["path"]).name for row in rows] == ["a.jpg", "caf\\xe9 notes.jpg", "caf\\xe9.jpg", "z.jpg"]
    assert rows[1]["error"] == "caf\\xe9 notes.jpg: this is a text file, not an image"
    assert all(row["label"] for row in rows if row is not rows[1])
    done = run_predict(tmp_path, "--model", tiny_litert_dir, PYTHONIOENCODING="utf-8")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [os.fsencode(Path(r["path"]).name) for r in records] == names  # the exact names, escaped by JSON
