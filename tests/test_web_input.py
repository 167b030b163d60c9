"""What a web caller may send (classifier.web_input): the upload cap, counted before decoding, however the image
comes; only files uploaded to the app; sizes and form values. Through the page's handler (app_logic.show) and
on their own."""

from __future__ import annotations

import shutil

import pytest

from classifier import app_logic as logic
from classifier import web_input
from classifier.api import load_classifier, top_k_value
from classifier.errors import ArgumentError
from classifier.preprocessing import ImageError
from tests.app_helpers import data_url, jpeg_bytes, lesion_file
from tests.conftest import lesion_like


@pytest.fixture(scope="module")
def classifier(tiny_litert_dir):
    return load_classifier(str(tiny_litert_dir))


def test_every_way_in_is_capped_before_decoding(classifier, tmp_path):
    cap = 4000
    big = jpeg_bytes(160)
    assert len(big) > cap
    path = tmp_path / "big.jpg"
    path.write_bytes(big)
    for value in ({"path": str(path)}, str(path), big, {"url": data_url(big)}):
        shown = logic.show(classifier, value, max_bytes=cap)
        assert shown.problem and "over the upload limit of 3.9 KB" in shown.problem, type(value)
    # Counted from the text, not decoded: a data: URL over the cap whose payload is not even base64 is refused
    # for its size.
    junk = {"url": "data:image/png;base64," + "@" * (cap * 2)}
    assert "over the upload limit" in logic.show(classifier, junk, max_bytes=cap).problem
    small = jpeg_bytes(64)
    assert len(small) <= cap
    assert logic.show(classifier, {"url": data_url(small)}, max_bytes=cap).problem is None


def test_web_values_must_be_uploaded_files(classifier, tmp_path):
    lesion_jpeg = lesion_file(tmp_path)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    inside = uploads / "lesion.jpg"
    shutil.copy(lesion_jpeg, inside)
    assert logic.show(classifier, {"path": str(inside)}, upload_dir=uploads).problem is None
    outside = logic.show(classifier, {"path": str(lesion_jpeg)}, upload_dir=uploads)
    assert "not uploaded to this app" in outside.problem
    sneaky = logic.show(classifier, {"path": str(uploads / ".." / lesion_jpeg.name)}, upload_dir=uploads)
    assert sneaky.problem
    for value in (str(inside), b"bytes", lesion_like(64)):
        assert "send the image as a file" in logic.show(classifier, value, upload_dir=uploads).problem


def test_sizes():
    assert web_input.parse_size("10mb") == 10 * 1024**2 and web_input.parse_size("500 KB") == 500 * 1024
    assert web_input.parse_size(123) == 123 and web_input.parse_size("7") == 7
    with pytest.raises(ArgumentError):
        web_input.parse_size("ten megabytes")
    assert web_input.human_size(10 * 1024**2) == "10 MB" and web_input.human_size(int(12.1 * 1024**2)) == "12.1 MB"
    assert web_input.human_size(512) == "512 bytes"


def test_image_source_checks_without_decoding(tmp_path):
    """No model needed: what image_source hands to the classifier, and what it refuses before any decoding."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    upload = lesion_file(uploads)
    assert web_input.image_source(None) is None and web_input.image_source({"path": None, "url": None}) is None
    assert web_input.image_source({"path": str(upload)}, 10**6, uploads) == str(upload.resolve())
    data = jpeg_bytes(64)
    assert web_input.image_source({"url": data_url(data)}, 10**6, uploads) == data
    refused = {"the image file was not uploaded to this app": {"path": "/etc/passwd"},
               "the uploaded image file is gone": {"path": str(uploads / "gone.jpg")},
               "over the upload limit of 10 bytes": {"path": str(upload)},
               "not valid base64": {"url": "data:image/png;base64,@@@@"},
               "send the image as a file": str(upload)}
    for words, value in refused.items():
        cap = 10 if "limit" in words else 10**6
        with pytest.raises(ImageError, match=words):
            web_input.image_source(value, cap, uploads)
    assert web_input.inside(upload.resolve(), uploads) and not web_input.inside(upload.resolve(), tmp_path / "up")


def test_form_values_as_a_page_or_an_api_call_sends_them():
    assert [top_k_value(v, 7) for v in (1, 3.0, "7")] == [1, 3, 7]
    for bad in (0, 8, 2.5, "two", None):
        with pytest.raises(ArgumentError, match="whole number between 1 and 7"):
            top_k_value(bad, 7)
    assert [web_input.heatmap_code(v) for v in (None, "", web_input.PREDICTED, "mel")] == [None, None, None, "mel"]
