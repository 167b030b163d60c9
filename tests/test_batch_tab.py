"""The "Many images" tab's logic (classifier.batch_tab): images and zips as batch items, the caps checked before
anything is read, bad files as rows, and predict's records and CSV (classifier/results.py). The tab in a browser:
tests/test_browser.py."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from classifier import batch_tab
from classifier.api import load_classifier
from classifier.cli import main
from classifier.labels import CODES
from classifier.results import row_columns
from tests.app_helpers import jpeg_bytes

# a zip as uploaded: its entries out of order, a broken image, and a non-image (skipped, as predict skips it in a
# folder); MACOS_JUNK is skipped by the tab only (predict would read such files in a folder)
ZIP_ENTRIES = {"two.png": jpeg_bytes(96, 3), "c/junk.png": b"not an image at all", "a/one.jpg": jpeg_bytes(96, 2),
               "notes.txt": b"hello", "empty/": b""}
MACOS_JUNK = {"__MACOSX/a/._one.jpg": b"junk", ".hidden.jpg": b"junk"}


@pytest.fixture(scope="module")
def classifier(tiny_litert_dir):
    return load_classifier(str(tiny_litert_dir))


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def uploads(folder: Path, junk: bool = False) -> list[Path]:
    """Two images, a broken one and a zip of images (with macOS junk if asked), as the page would get them."""
    folder.mkdir()
    (folder / "good.jpg").write_bytes(jpeg_bytes(96, 1))
    (folder / "other.png").write_bytes(jpeg_bytes(80, 4))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    make_zip(folder / "lesions.zip", ZIP_ENTRIES | (MACOS_JUNK if junk else {}))
    return [folder / name for name in ("good.jpg", "other.png", "broken.jpg", "lesions.zip")]


def test_batch_reads_images_and_zips_and_reports_bad_files_as_rows(classifier, tmp_path, monkeypatch):
    items = batch_tab.batch_items([str(p) for p in uploads(tmp_path / "in", junk=True)])
    names = ["good.jpg", "other.png", "broken.jpg", "lesions.zip/a/one.jpg", "lesions.zip/c/junk.png",
             "lesions.zip/two.png"]
    assert [i.name for i in items] == names  # a zip's images sorted, in its place

    calls, progress = [], []
    real = classifier.classify_each

    def spy(images, top_k=3, batch_size=32):
        calls.append(len(list(images)))
        return real(images, top_k=top_k, batch_size=batch_size)

    monkeypatch.setattr(classifier, "classify_each", spy)
    monkeypatch.setattr(batch_tab, "BATCH_CHUNK", 2)
    result = batch_tab.classify_batch(classifier, items,
                                      progress=lambda done, total: progress.append((done, total)))
    assert calls == [2, 2, 2]  # through classify_each, 2 at a time
    assert progress == [(2, 6), (4, 6), (6, 6)]
    assert [r["path"] for r in result.records] == names
    errors = {r["path"]: r["error"] for r in result.records if "error" in r}
    assert list(errors) == ["broken.jpg", "lesions.zip/c/junk.png"]
    assert errors["broken.jpg"].startswith("broken.jpg: not an image in a supported format")
    assert errors["lesions.zip/c/junk.png"].startswith("junk.png: ")  # named as read by path, not "upload"
    assert all(set(r) == {"path", "error"} for r in result.records if "error" in r)

    # the page's table: a compact view of the same records
    assert [row[0] for row in result.rows] == names
    for row, record in zip(result.rows, result.records, strict=True):
        if "error" in record:
            assert row[1:] == ["", "", f"error: {record['error']}"]
        else:
            assert row[1].split(" — ")[0] == record["label"] in CODES and row[1].endswith("%)")
            assert row[2] == f"{record['malignant_probability']:.1%}"
    assert result.summary == "4 of 6 images classified; 2 could not be (see their rows)."


@pytest.mark.parametrize("model", ["tiny_litert_dir", "bundled_model_dir"])
def test_the_batch_csv_is_what_predict_writes(model, request, tmp_path, monkeypatch, capsys):
    """The same files through the tab and through ``predict --out`` (a zip there as the folder it holds): the same
    records, and the CSV download byte for byte."""
    model_dir = request.getfixturevalue(model)
    files = uploads(tmp_path / "in")
    result = batch_tab.classify_batch(load_classifier(str(model_dir)), batch_tab.batch_items(list(map(str, files))))
    page_csv = Path(batch_tab.write_csv(result, tmp_path))

    cli = tmp_path / "cli"
    cli.mkdir()
    for path in files[:-1]:
        shutil.copy(path, cli)
    with zipfile.ZipFile(files[-1]) as archive:
        archive.extractall(cli / "lesions.zip")  # a folder named like the zip: the same paths
    monkeypatch.chdir(cli)
    names = [p.name for p in files]
    for out in ("x.csv", "x.jsonl"):
        assert main(["predict", *names, "--model", str(model_dir), "--out", out]) == 1  # two images fail
    capsys.readouterr()

    assert page_csv.read_bytes() == (cli / "x.csv").read_bytes()
    assert page_csv.read_text().splitlines()[0].split(",") == row_columns(result.top_k, result.codes)
    records = [json.loads(line) for line in (cli / "x.jsonl").read_text().splitlines()]
    assert json.loads(json.dumps(result.records)) == records
    assert sum("error" in r for r in records) == 2


def test_batch_caps_are_checked_before_reading(tmp_path, monkeypatch):
    images = []
    for n in range(4):
        images.append(tmp_path / f"{n}.jpg")
        images[-1].write_bytes(jpeg_bytes(64, n))
    monkeypatch.setattr(batch_tab, "MAX_BATCH_FILES", 3)
    with pytest.raises(batch_tab.BatchTooLarge, match="more than 3 images"):
        batch_tab.batch_items([str(p) for p in images])
    archive = make_zip(tmp_path / "many.zip", {f"{n}.jpg": jpeg_bytes(64, n) for n in range(4)})
    with pytest.raises(batch_tab.BatchTooLarge, match="more than 3 images"):
        batch_tab.batch_items([str(archive)])
    monkeypatch.setattr(batch_tab, "MAX_BATCH_FILES", 100)
    monkeypatch.setattr(batch_tab, "MAX_BATCH_BYTES", 1000)
    with pytest.raises(batch_tab.BatchTooLarge, match="1000 bytes"):
        batch_tab.batch_items([str(archive)])  # the zip's directory sizes count, before anything is read
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"not a zip")
    assert str(batch_tab.batch_items([str(not_zip)])[0].error).startswith("fake.zip: not a readable zip")
    limits = batch_tab.batch_limits_text(10 * 1024**2)
    assert "100 images" in limits and "10 MB" in limits
