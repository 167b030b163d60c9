"""The "Many images" tab's logic (classifier.batch_tab): images and zips as batch items, the caps checked before
anything is read, bad files as rows, the CSV. The tab in a browser: tests/test_browser.py."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from classifier import batch_tab
from classifier.api import load_classifier
from classifier.labels import CODES
from tests.app_helpers import jpeg_bytes


@pytest.fixture(scope="module")
def classifier(tiny_litert_dir):
    return load_classifier(str(tiny_litert_dir))


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_batch_reads_images_and_zips_and_reports_bad_files_as_rows(classifier, tmp_path, monkeypatch):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(96, 1))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    archive = make_zip(tmp_path / "lesions.zip", {
        "a/one.jpg": jpeg_bytes(96, 2), "two.png": jpeg_bytes(96, 3), "notes.txt": b"hello",
        "__MACOSX/a/._one.jpg": b"junk", ".hidden.jpg": b"junk", "empty/": b""})
    items = batch_tab.batch_items([str(good), str(broken), str(archive)])
    assert [i.name for i in items] == ["good.jpg", "broken.jpg", "lesions.zip/a/one.jpg", "lesions.zip/two.png",
                                       "lesions.zip/notes.txt"]

    calls, progress = [], []
    real = classifier.classify_each

    def spy(images, top_k=3, batch_size=32):
        calls.append(len(list(images)))
        return real(images, top_k=top_k, batch_size=batch_size)

    monkeypatch.setattr(classifier, "classify_each", spy)
    monkeypatch.setattr(batch_tab, "BATCH_CHUNK", 2)
    result = batch_tab.classify_batch(classifier, items,
                                      progress=lambda done, total: progress.append((done, total)))
    assert calls == [2, 2]  # only readable-by-name files reach the model, through classify_each, 2 at a time
    assert progress == [(2, 4), (4, 4)]
    assert [r[0] for r in result.rows] == [i.name for i in items]
    errors = [r for r in result.rows if r[3].startswith("error:")]
    assert [r[0] for r in errors] == ["broken.jpg", "lesions.zip/notes.txt"]
    assert errors[0][3].startswith("error: not an image in a supported format") and "not an image" in errors[1][3]
    for row in result.rows:
        if row not in errors:
            assert row[1].split(" — ")[0] in CODES and row[1].endswith("%)") and row[2].endswith("%")
    assert result.summary == "3 of 5 images classified; 2 could not be (see their rows)."

    path = batch_tab.write_csv(result.records, tmp_path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == batch_tab.CSV_COLUMNS and [r["file"] for r in rows] == [i.name for i in items]
    assert [bool(r["error"]) for r in rows] == [False, True, False, False, True]
    ok = [r for r in rows if not r["error"]]
    assert all(r["label"] in CODES and 0 <= float(r["malignant_probability"]) <= 1 for r in ok)


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
    assert "not a readable zip" in batch_tab.batch_items([str(not_zip)])[0].error
    limits = batch_tab.batch_limits_text(10 * 1024**2)
    assert "100 images" in limits and "10 MB" in limits
