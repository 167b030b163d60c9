"""The Gradio demo: its pure functions, its command line, and the app served on 127.0.0.1 called via gradio_client."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from classifier import app_logic as logic
from classifier.api import load_classifier
from classifier.explain import HEAT_FLOOR, HEAT_MAX_ALPHA, overlay
from classifier.labels import CODES, DISCLAIMER
from classifier.preprocessing import ImageError
from tests.conftest import HAM_DIR, ROOT, lesion_like


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return load_classifier(str(tiny_model_dir))


@pytest.fixture(scope="module")
def renamed_classifier(tiny_model_dir, tmp_path_factory):
    """The tiny model with other names, malignancy flags and test figures in its config.json."""
    folder = tmp_path_factory.mktemp("renamed") / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    for label in config["labels"]:
        label["name"] = f"Renamed {label['code']}"
        label["malignant"] = label["code"] in ("df", "vasc")
    config["metrics"] = {"test": {"n": 4321, "balanced_accuracy": 0.4567, "melanoma_recall": 0.1234}}
    (folder / "config.json").write_text(json.dumps(config))
    from classifier.api import Classifier

    return Classifier(folder)


@pytest.fixture(scope="module")
def lesion_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "lesion.jpg"
    Image.fromarray(lesion_like(160)).save(path, quality=92)
    return path


def jpeg_bytes(size: int = 96, seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.fromarray(lesion_like(size, seed)).save(out, "JPEG", quality=90)
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- one image ----------------------------------------------------------------------------------------------

def test_label_dict_names_the_top_k_classes(classifier, lesion_jpeg):
    prediction = classifier.classify(lesion_jpeg, top_k=3)
    labels = logic.label_dict(prediction)
    assert list(labels) == [f"{p.code} — {p.name}" for p in prediction.top]
    assert list(labels.values()) == [p.probability for p in prediction.top]


def test_show_gives_every_output(classifier, lesion_jpeg):
    shown = logic.show(classifier, {"path": str(lesion_jpeg)}, 2, False, "mel")
    assert shown.problem is None and len(shown.labels) == 2
    assert f"P(malignant) = {shown.result['malignant_probability']:.1%}" in shown.malignancy
    assert shown.heatmap.size == shown.view.size and shown.heatmap.size[0] >= logic.HEATMAP_DISPLAY_SIZE
    assert np.asarray(shown.heatmap).tolist() != np.asarray(shown.view).tolist()  # the overlay differs
    assert "**mel**" in shown.caption and "Yellow to red" in shown.caption
    assert logic.displayed_image(shown, True) is shown.heatmap and logic.displayed_image(shown, False) is shown.view
    assert logic.displayed_image(None, True) is None and "alone" in logic.heatmap_label(False)
    assert shown.result["notice"] == DISCLAIMER and len(shown.result["top_k"]) == 2


def test_heatmap_overlay_is_translucent_and_leaves_cool_areas_untouched():
    image = lesion_like(64)
    heat = np.zeros((64, 64), np.float32)
    heat[:, 32:] = np.linspace(0, 1, 32)[None, :]  # cold left half, a ramp on the right
    drawn = np.asarray(overlay(image, heat)).astype(float)
    assert np.array_equal(drawn[:, :32], image[:, :32])  # no tint where the map is cold: the image as it is
    assert np.array_equal(drawn[:, 32:][heat[:, 32:] <= HEAT_FLOOR], image[:, 32:][heat[:, 32:] <= HEAT_FLOOR])
    warmest = drawn[:, -1]
    assert not np.allclose(warmest, image[:, -1], atol=5)  # tinted ...
    expected = (1 - HEAT_MAX_ALPHA) * image[:, -1] + HEAT_MAX_ALPHA * np.array([220.0, 0, 0])
    assert np.allclose(warmest, expected, atol=1)  # ... but still (1 - max_alpha) of the image
    assert HEAT_MAX_ALPHA <= 0.7


def test_uniform_gray_image_is_warned_about(classifier, tmp_path):
    gray = tmp_path / "gray.png"
    Image.new("RGB", (200, 150), (128, 128, 128)).save(gray)
    shown = logic.show(classifier, str(gray))
    assert shown.message.startswith("### ⚠️ Warning") and "does not look like" in shown.message
    assert shown.labels  # still classified, but qualified
    assert logic.show(classifier, lesion_like(160)).message == ""  # no warning for a lesion-like image


def test_bad_input_becomes_a_clear_message(classifier, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not an image")
    for value in (b"this is not an image", {"path": str(bad)}, str(bad)):
        shown = logic.show(classifier, value)
        assert shown.problem and "not an image" in shown.problem
        assert shown.labels is None and shown.result is None and shown.problem in shown.message
    with pytest.raises(ImageError, match="not an image"):
        logic.classify(classifier, b"this is not an image")
    assert logic.show(classifier, None).message == logic.NO_IMAGE
    assert logic.show(classifier, {"path": None, "url": None}).message == logic.NO_IMAGE
    assert "top_k" in logic.show(classifier, lesion_like(64), top_k=2.5).problem
    assert "top_k" in logic.show(classifier, lesion_like(64), top_k=8).problem
    assert "unknown class" in logic.show(classifier, lesion_like(64), heatmap_class="xyz").problem
    assert "not valid base64" in logic.show(classifier, {"url": "data:image/png;base64,@@@@"}).problem


# --- the upload cap and where images may come from ----------------------------------------------------------

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


def test_web_values_must_be_uploaded_files(classifier, tmp_path, lesion_jpeg):
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
    assert logic.parse_size("10mb") == 10 * 1024**2 and logic.parse_size("500 KB") == 500 * 1024
    assert logic.parse_size(123) == 123 and logic.parse_size("7") == 7
    with pytest.raises(ValueError):
        logic.parse_size("ten megabytes")
    assert logic.human_size(10 * 1024**2) == "10 MB" and logic.human_size(int(12.1 * 1024**2)) == "12.1 MB"
    assert logic.human_size(512) == "512 bytes"


# --- what comes from the model's config ---------------------------------------------------------------------

def test_names_and_malignancy_come_from_the_models_config(renamed_classifier):
    c = renamed_classifier
    assert logic.heatmap_choices(c)[1:] == [(f"{code} — Renamed {code}", code) for code in c.config.codes]
    table = logic.classes_markdown(c)
    assert "| `df` | Renamed df | yes |" in table and "| `mel` | Renamed mel | no |" in table
    prediction = c.classify(lesion_like(64), top_k=3)
    assert all(name.split(" — ")[1] == f"Renamed {name.split(' — ')[0]}" for name in logic.label_dict(prediction))
    assert "P(df + vasc)" in logic.malignancy_markdown(prediction, c)
    probabilities = {p.code: p.probability for p in prediction.probabilities}
    assert prediction.malignant_probability == pytest.approx(probabilities["df"] + probabilities["vasc"], abs=1e-5)


def test_model_description_reads_its_figures_from_the_config(renamed_classifier, classifier):
    text = logic.model_markdown(renamed_classifier, environ={})
    assert "4,321 held-out test images" in text
    assert "balanced accuracy 46%" in text and "melanoma recall 12%" in text and "12 of every 100" in text
    assert "HAM10000" not in text or "Trained on" in text
    assert "[Model card](#model-card)" in text
    version = renamed_classifier.config.raw["files"]["tflite"]["sha256"][:10]
    assert f"version `{version}`" in text
    figures = logic.headline_figures(classifier)  # the tiny model records no test figures
    assert figures is None and "records no held-out test figures" in logic.model_markdown(classifier, environ={})
    details = logic.technical_markdown(renamed_classifier)
    for needed in ("Runtime", "litert", f"{renamed_classifier.size}x{renamed_classifier.size}",
                   "Test-time augmentation", ", ".join(renamed_classifier.config.tta_views)):
        assert needed in details


def test_bundled_model_description_matches_its_config(bundled_model_dir):
    from classifier.api import Classifier

    c = Classifier(bundled_model_dir)
    test = c.config.raw["metrics"]["test"]
    text = logic.model_markdown(c, environ={})
    assert f"balanced accuracy {test['balanced_accuracy']:.0%}" in text
    assert f"melanoma recall {test['melanoma_recall']:.0%}" in text and f"{test['n']:,} held-out" in text
    card = logic.model_card_markdown(c)
    assert "[Model card](" in text and card.startswith("# ") and "license:" not in card  # no YAML header


def test_model_card_link_follows_where_the_model_lives(classifier):
    hub = SimpleNamespace(config=classifier.config,
                          source=SimpleNamespace(repo_id="me/model", commit="abc123", notice=None))
    assert logic.model_card_url(hub) == "https://huggingface.co/me/model/blob/abc123/README.md"
    bundled = SimpleNamespace(config=SimpleNamespace(folder=ROOT / "model"), source=None)
    assert logic.model_card_url(bundled, {"SPACE_ID": "me/space"}) == (
        "https://huggingface.co/spaces/me/space/blob/main/model/README.md")
    assert logic.model_card_url(bundled, {}) == "#model-card"
    assert logic.model_card_url(classifier, {"SPACE_ID": "me/space"}) == "#model-card"  # not in the repository


def test_examples_are_in_the_repository_with_their_true_diagnosis():
    found = logic.examples()
    assert {e.dx for e in found} == set(CODES) and len(found) == 14
    items = logic.gallery_items(found)
    assert [caption for _, caption in items] == [e.dx for e in found]
    assert all(Path(path).is_file() for path, _ in items)


# --- batch --------------------------------------------------------------------------------------------------

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
    items = logic.batch_items([str(good), str(broken), str(archive)])
    assert [i.name for i in items] == ["good.jpg", "broken.jpg", "lesions.zip/a/one.jpg", "lesions.zip/two.png",
                                       "lesions.zip/notes.txt"]

    calls, progress = [], []
    real = classifier.classify_each

    def spy(images, top_k=3, batch_size=32):
        calls.append(len(list(images)))
        return real(images, top_k=top_k, batch_size=batch_size)

    monkeypatch.setattr(classifier, "classify_each", spy)
    monkeypatch.setattr(logic, "BATCH_CHUNK", 2)
    result = logic.classify_batch(classifier, items, progress=lambda done, total: progress.append((done, total)))
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

    path = logic.write_csv(result.records, tmp_path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == logic.CSV_COLUMNS and [r["file"] for r in rows] == [i.name for i in items]
    assert [bool(r["error"]) for r in rows] == [False, True, False, False, True]
    ok = [r for r in rows if not r["error"]]
    assert all(r["label"] in CODES and 0 <= float(r["malignant_probability"]) <= 1 for r in ok)


def test_batch_caps_are_checked_before_reading(tmp_path, monkeypatch):
    images = []
    for n in range(4):
        images.append(tmp_path / f"{n}.jpg")
        images[-1].write_bytes(jpeg_bytes(64, n))
    monkeypatch.setattr(logic, "MAX_BATCH_FILES", 3)
    with pytest.raises(logic.BatchTooLarge, match="more than 3 images"):
        logic.batch_items([str(p) for p in images])
    archive = make_zip(tmp_path / "many.zip", {f"{n}.jpg": jpeg_bytes(64, n) for n in range(4)})
    with pytest.raises(logic.BatchTooLarge, match="more than 3 images"):
        logic.batch_items([str(archive)])
    monkeypatch.setattr(logic, "MAX_BATCH_FILES", 100)
    monkeypatch.setattr(logic, "MAX_BATCH_BYTES", 1000)
    with pytest.raises(logic.BatchTooLarge, match="1000 bytes"):
        logic.batch_items([str(archive)])  # the zip's directory sizes count, before anything is read
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"not a zip")
    assert "not a readable zip" in logic.batch_items([str(not_zip)])[0].error
    assert "100 images" in logic.batch_limits_text(10 * 1024**2) and "10 MB" in logic.batch_limits_text(10 * 1024**2)


# --- command line -------------------------------------------------------------------------------------------

def test_command_line_defaults_and_fast_help():
    import app

    args = app.parse_args([], environ={})
    assert (args.host, args.port, args.share, args.analytics) == ("127.0.0.1", 7860, False, False)
    assert (args.max_file_size, args.concurrency, args.model) == ("10mb", 2, None)
    args = app.parse_args([], environ={"SPACE_ID": "me/demo", "SHARE": "1", "MODEL_ID": "me/model",
                                       "MODEL_REVISION": "v1", "GRADIO_SERVER_PORT": "9000"})
    assert (args.host, args.port, args.share, args.model, args.revision) == ("0.0.0.0", 9000, True, "me/model", "v1")
    assert app.parse_args(["--host", "10.0.0.1"], environ={"SPACE_ID": "x/y"}).host == "10.0.0.1"
    code = "import sys, app; app.parse_args(['--port', '1']); print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # --help and argument errors never wait for gradio


def test_unloadable_model_exits_1_with_a_message(tmp_path, capsys):
    import app

    assert app.main(["--model", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "does not exist" in err and "Traceback" not in err


# --- the served app -----------------------------------------------------------------------------------------

CAP = "200kb"


@pytest.fixture(scope="module")
def served(classifier):
    import app

    demo = app.build_demo(classifier, CAP)
    _, url, _ = app.serve(demo, "127.0.0.1", free_port(), max_file_size=CAP, block=False)
    yield url
    demo.close()


def call(url: str, endpoint: str, data: list) -> str:
    """The raw event stream of one call of ``endpoint`` over Gradio's HTTP API."""
    import httpx

    base = url.rstrip("/") + f"/gradio_api/call/{endpoint}"
    event = httpx.post(base, json={"data": data}, timeout=30).json()["event_id"]
    return httpx.get(f"{base}/{event}", timeout=60).text


@pytest.mark.slow
def test_served_app_via_gradio_client(served, lesion_jpeg, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(served, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = ["image", "top_k", "tta", "heatmap_class"]
    assert [p["parameter_name"] for p in endpoints["/classify"]["parameters"]] == names
    json_endpoint = endpoints["/classify_json"]
    assert [p["parameter_name"] for p in json_endpoint["parameters"]] == names
    assert {p["component"] for p in json_endpoint["parameters"]} == {"Api"}  # gr.api: no hidden component
    assert [p["parameter_default"] for p in json_endpoint["parameters"][1:]] == [3, False, "predicted"]
    assert "/classify_batch" in endpoints

    warning, labels, malignancy, heatmap, caption, result = client.predict(
        handle_file(lesion_jpeg), 3, False, "predicted", api_name="/classify")
    assert warning == ""
    names = [c["label"] for c in labels["confidences"]]
    assert names == [f"{t['code']} — {t['name']}" for t in result["top_k"]] and labels["label"] == names[0]
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert "P(malignant)" in malignancy and Image.open(heatmap).size[0] >= logic.HEATMAP_DISPLAY_SIZE
    assert f"**{result['label']}**" in caption

    result = client.predict(handle_file(lesion_jpeg), 2, True, "mel", api_name="/classify_json")
    assert result["label"] in CODES and len(result["top_k"]) == 2 and result["tta_views"] > 1
    assert client.predict(image=handle_file(lesion_jpeg), api_name="/classify_json")["label"] in CODES  # defaults

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    message, labels, *_ = client.predict(handle_file(bad), 3, False, "predicted", api_name="/classify")
    assert "Cannot classify" in message and not labels
    with pytest.raises(AppError, match="broken.jpg"):
        client.predict(handle_file(bad), 3, False, "predicted", api_name="/classify_json")
    quoted = tmp_path / "Tom's mole.jpg"
    quoted.write_bytes(bad.read_bytes())
    with pytest.raises(AppError) as error:
        client.predict(handle_file(quoted), 3, False, "predicted", api_name="/classify_json")
    assert "Tom's mole.jpg: " in str(error.value) and "&#" not in str(error.value)  # plain text, not HTML-escaped

    summary, table, csv_path = client.predict([handle_file(lesion_jpeg), handle_file(bad)],
                                              api_name="/classify_batch")
    assert summary.startswith("1 of 2 images classified") and len(table["data"]) == 2
    assert Path(csv_path).read_text().count("\n") == 3

    with urllib.request.urlopen(served) as response:
        page = response.read().decode()
    assert DISCLAIMER.split("'")[0] in page


@pytest.mark.slow
def test_every_api_value_has_a_name_a_caller_understands(served):
    """view_api() lists exactly the three named endpoints, and names every parameter and return of each by a
    label of its own (not Gradio's value_NN for an unlabelled component, nor gr.api's "1st", "2nd"), as the
    README and app.py's docstring list them."""
    from gradio_client import Client

    import app

    info = Client(served, verbose=False).view_api(print_info=False, return_format="dict")
    endpoints = info["named_endpoints"]
    assert sorted(endpoints) == ["/classify", "/classify_batch", "/classify_json"] and not info["unnamed_endpoints"]
    assert [len(endpoints[name]["returns"]) for name in sorted(endpoints)] == [6, 3, 1]
    docs = {doc: " ".join(text.split()) for doc, text in  # lines joined
            (("README", (ROOT / "README.md").read_text()), ("app.py", app.__doc__))}
    for name, endpoint in endpoints.items():
        labels = [value.get("label") or "" for value in endpoint["parameters"] + endpoint["returns"]]
        for label in labels:
            assert re.search(r"[A-Za-z]{3}", label), (name, label)
            assert not re.fullmatch(r"value_\d+|\d+(st|nd|rd|th)|API|param_\d+", label.strip()), (name, label)
            named = label.split(" (at most ")[0]  # the image's label carries the size cap
            for doc, text in docs.items():
                assert f'"{named}' in text, (doc, name, label)
        returns = labels[len(endpoint["parameters"]):]
        assert len(set(returns)) == len(returns), (name, returns)  # a caller can tell the outputs apart
        for parameter in endpoint["parameters"]:
            assert re.fullmatch(r"[a-z][a-z_]*", parameter["parameter_name"]), (name, parameter["parameter_name"])
            assert not parameter["parameter_name"].startswith("param_")


@pytest.mark.slow
def test_served_app_refuses_a_data_url_over_the_cap(served):
    """Gradio's max_file_size only sees uploads; the app counts a data: URL's bytes itself, before decoding."""
    cap = logic.parse_size(CAP)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG")
    assert out.tell() > cap
    value = {"url": data_url(out.getvalue()), "meta": {"_type": "gradio.FileData"}}
    stream = call(served, "classify", [value, 3, False, "predicted"])
    assert "event: complete" in stream and "over the upload limit of 200 KB" in stream and "confidences" not in stream
    stream = call(served, "classify_json", [value, 3, False, "predicted"])
    assert "event: error" in stream and "over the upload limit of 200 KB" in stream
    small = {"url": data_url(jpeg_bytes(96)), "meta": {"_type": "gradio.FileData"}}
    assert "probabilities" in call(served, "classify_json", [small, 3, False, "predicted"])


@pytest.mark.slow
def test_served_app_on_a_real_ham10000_image(served):
    folder = HAM_DIR / "images_200x150"
    image = next(iter(sorted(folder.glob("*.jpg"))), None) if folder.is_dir() else None
    if image is None:
        pytest.skip(f"no HAM10000 images in {folder} (set HAM10000_DIR)")
    from gradio_client import Client, handle_file

    result = Client(served, verbose=False).predict(handle_file(image), 3, False, "predicted",
                                                   api_name="/classify_json")
    assert result["label"] in CODES and len(result["top_k"]) == 3
    assert np.isclose(sum(result["probabilities"].values()), 1, atol=1e-3)


@pytest.mark.slow
def test_api_refuses_paths_that_were_not_uploaded(served):
    """A client cannot make the app read a file of the server's by naming its path, with or without Gradio's meta."""
    for endpoint in ("classify_json", "classify"):
        for value in ({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, {"path": "/etc/passwd"},
                      "/etc/passwd"):
            stream = call(served, endpoint, [value, 3, False, "predicted"])
            assert "root:" not in stream and "probabilities" not in stream and "confidences" not in stream
            assert "event: error" in stream or "Cannot classify" in stream, (endpoint, value, stream[:300])


def test_readme_states_the_pages_limits_and_api_as_built():
    readme = (ROOT / "README.md").read_text()
    assert f"up to {logic.MAX_BATCH_FILES} images" in readme
    assert f"{logic.human_size(logic.MAX_BATCH_BYTES)} in all" in readme
    assert f"none below {HEAT_FLOOR:.0%} of the map's maximum, at most {HEAT_MAX_ALPHA:.0%} opaque" in readme
    assert "warning, labels, malignancy, heatmap, caption, result = client.predict(" in readme
    assert 'api_name="/classify_json"' in readme and 'api_name="/classify_batch"' in readme
    assert "docs/demo-desktop.png" in readme and (ROOT / "docs" / "demo-desktop.png").is_file()
