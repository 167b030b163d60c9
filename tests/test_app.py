"""The Gradio demo: its pure functions, its command line, and the app served on 127.0.0.1 called via gradio_client."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier import app_logic as logic
from classifier.api import MALIGNANT_NOTE, load_classifier
from classifier.labels import BY_CODE, CODES, DISCLAIMER
from classifier.preprocessing import ImageError
from tests.conftest import HAM_DIR, ROOT, lesion_like


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return load_classifier(str(tiny_model_dir))


@pytest.fixture(scope="module")
def lesion_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "lesion.jpg"
    Image.fromarray(lesion_like(160)).save(path, quality=92)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_label_dict_names_the_top_k_classes(classifier, lesion_jpeg):
    prediction = classifier.classify(lesion_jpeg, top_k=3)
    labels = logic.label_dict(prediction)
    assert list(labels) == [f"{p.code} — {BY_CODE[p.code].name}" for p in prediction.top]
    assert list(labels.values()) == [p.probability for p in prediction.top]


def test_show_gives_every_output(classifier, lesion_jpeg):
    shown = logic.show(classifier, {"path": str(lesion_jpeg)}, 2, False, "mel")
    assert shown.problem is None and len(shown.labels) == 2
    assert "P(malignant)" in shown.malignancy and MALIGNANT_NOTE in shown.malignancy
    assert shown.heatmap.size[0] == shown.heatmap.size[1] >= classifier.size
    assert shown.result["notice"] == DISCLAIMER and len(shown.result["top_k"]) == 2


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
    assert "unknown class" in logic.show(classifier, lesion_like(64), heatmap_class="xyz").problem


def test_small_helpers():
    assert logic.top_k_value("3") == 3 and logic.top_k_value(4.0) == 4
    assert logic.heatmap_code("predicted") is None and logic.heatmap_code("mel") == "mel"
    table = logic.classes_markdown()
    assert all(f"`{code}`" in table for code in CODES)
    assert DISCLAIMER.split("'")[0] in logic.disclaimer_html()


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


@pytest.fixture(scope="module")
def served(classifier):
    import app

    demo = app.build_demo(classifier)
    _, url, _ = app.serve(demo, "127.0.0.1", free_port(), block=False)
    yield url
    demo.close()


@pytest.mark.slow
def test_served_app_via_gradio_client(served, lesion_jpeg, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(served, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/classify"]["parameters"]] == [
        "image", "top_k", "tta", "heatmap_class"]
    assert "/classify_json" in endpoints

    warning, labels, malignancy, heatmap, result = client.predict(
        handle_file(lesion_jpeg), 3, False, "predicted", api_name="/classify")
    assert warning == ""
    names = [c["label"] for c in labels["confidences"]]
    assert names == [f"{t['code']} — {t['name']}" for t in result["top_k"]] and labels["label"] == names[0]
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert "P(malignant)" in malignancy and Path(heatmap).is_file()

    result = client.predict(handle_file(lesion_jpeg), 2, True, "mel", api_name="/classify_json")
    assert result["label"] in CODES and len(result["top_k"]) == 2 and result["tta_views"] > 1

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    message, labels, *_ = client.predict(handle_file(bad), 3, False, "predicted", api_name="/classify")
    assert "Cannot classify" in message and not labels
    with pytest.raises(AppError, match="broken.jpg"):
        client.predict(handle_file(bad), 3, False, "predicted", api_name="/classify_json")

    with urllib.request.urlopen(served) as response:
        page = response.read().decode()
    assert DISCLAIMER.split("'")[0] in page


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


def test_api_refuses_paths_that_were_not_uploaded(served):
    """A client cannot make the app read a file of the server's by naming its path."""
    import httpx

    url = served.rstrip("/") + "/gradio_api/call/classify_json"
    payload = {"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, 3, False, "predicted"]}
    event = httpx.post(url, json=payload, timeout=30).json()["event_id"]
    stream = httpx.get(f"{url}/{event}", timeout=60).text
    assert "event: error" in stream and "root:" not in stream and "probabilities" not in stream
