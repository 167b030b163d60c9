"""The demo served on 127.0.0.1 and called as an API client would: gradio_client and Gradio's HTTP API, on the
tiny model and, for the patient context and similar cases, on the bundled model."""

from __future__ import annotations

import io
import json
import re
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier import app_logic as logic
from classifier.api import load_classifier
from classifier.labels import CODES, DISCLAIMER
from classifier.web_input import parse_size
from tests.app_helpers import data_url, jpeg_bytes, lesion_file
from tests.conftest import HAM_DIR, ROOT

NO_CONTEXT = [None, None, None]  # age, sex, site: not given
EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def classifier(tiny_litert_dir):
    return load_classifier(str(tiny_litert_dir))


@pytest.fixture(scope="module")
def lesion_jpeg(tmp_path_factory) -> Path:
    return lesion_file(tmp_path_factory.mktemp("images"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CAP = "200kb"


@pytest.fixture(scope="module")
def served(classifier):
    import app

    demo = app.build_demo(classifier, CAP)
    _, url, _ = app.serve(demo, "127.0.0.1", free_port(), max_file_size=CAP, block=False)
    yield url
    demo.close()


def call(url: str, endpoint: str, data: list | dict) -> str:
    """The raw event stream of one call of ``endpoint`` over Gradio's HTTP API: every value in order (``/call/``),
    or some by name (``/call/v2/``, which fills in the defaults of the others)."""
    import httpx

    base = url.rstrip("/") + f"/gradio_api/call/{endpoint if isinstance(data, list) else 'v2/' + endpoint}"
    event = httpx.post(base, json={"data": data} if isinstance(data, list) else data, timeout=30).json()["event_id"]
    return httpx.get(f"{base}/{event}", timeout=60).text


@pytest.mark.slow
def test_served_app_via_gradio_client(served, lesion_jpeg, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(served, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = ["image", "top_k", "tta", "heatmap_class", "age", "sex", "site"]
    assert [p["parameter_name"] for p in endpoints["/classify"]["parameters"]] == names
    json_endpoint = endpoints["/classify_json"]
    assert [p["parameter_name"] for p in json_endpoint["parameters"]] == names
    assert {p["component"] for p in json_endpoint["parameters"]} == {"Api"}  # gr.api: no hidden component
    assert [p["parameter_default"] for p in json_endpoint["parameters"][1:]] == [3, False, "predicted", None, None,
                                                                                None]
    # The patient context is optional on both: a call with the first four values (or only the image) still works
    for endpoint in endpoints.values():
        assert all(p["parameter_has_default"] for p in endpoint["parameters"][1:])
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
    cap = parse_size(CAP)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG")
    assert out.tell() > cap
    value = {"url": data_url(out.getvalue()), "meta": {"_type": "gradio.FileData"}}
    stream = call(served, "classify", [value, 3, False, "predicted", *NO_CONTEXT])
    assert "event: complete" in stream and "over the upload limit of 200 KB" in stream and "confidences" not in stream
    stream = call(served, "classify_json", [value, 3, False, "predicted", *NO_CONTEXT])
    assert "event: error" in stream and "over the upload limit of 200 KB" in stream
    small = {"url": data_url(jpeg_bytes(96)), "meta": {"_type": "gradio.FileData"}}
    assert "probabilities" in call(served, "classify_json", [small, 3, False, "predicted", *NO_CONTEXT])


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
            stream = call(served, endpoint, [value, 3, False, "predicted", *NO_CONTEXT])
            assert "root:" not in stream and "probabilities" not in stream and "confidences" not in stream
            assert "event: error" in stream or "Cannot classify" in stream, (endpoint, value, stream[:300])


# --- patient context and similar cases, on the bundled model ------------------------------------------------

@pytest.fixture(scope="module")
def served_bundled(bundled_model_dir):
    import app
    from classifier.api import Classifier

    demo = app.build_demo(Classifier(bundled_model_dir))
    _, url, _ = app.serve(demo, "127.0.0.1", free_port(), block=False)
    yield url
    demo.close()


def golden_quantities(result: dict) -> dict:
    """What tests/golden pins, from a JSON result (as in test_hub's predict records)."""
    return {"label": result["label"], "probabilities": result["probabilities"],
            "prediction_set": result["prediction_set"]["classes"],
            "feature_distance": result["out_of_distribution"].get("feature_distance"),
            "similar_cases": result["similar_cases"]}


def completed(stream: str):
    """The data of an event stream's ``complete`` event."""
    assert "event: complete" in stream, stream[:300]
    return json.loads(stream.split("event: complete\ndata: ", 1)[1].split("\n", 1)[0])


@pytest.mark.slow
def test_patient_context_through_both_endpoints_on_the_bundled_model(served_bundled):
    """Calls as before the context (four values, or the image alone) get the image-only answer the golden file
    pins; the context, in order, by name or over HTTP, gets the pinned answer with context and its note, on both
    endpoints; a bad value is an error that names what is accepted."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from tests.make_golden import CONTEXT, GOLDEN
    from tests.test_golden import assert_golden

    golden = json.loads(GOLDEN.read_text())["outputs"]
    client = Client(served_bundled, verbose=False)
    given = (CONTEXT["age"], CONTEXT["sex"], CONTEXT["site"])
    note = f"With age {CONTEXT['age']}, {CONTEXT['sex']}, {CONTEXT['site']}: "
    for path in EXAMPLES[:2]:
        image = handle_file(path)
        old = client.predict(image, 3, False, "predicted", api_name="/classify_json")
        assert client.predict(image=image, api_name="/classify_json") == old
        assert old["context"] is None and old["context_note"] is None and old["image_only_probabilities"] is None
        fused = client.predict(image, 3, False, "predicted", *given, api_name="/classify_json")
        assert_golden(golden_quantities(old) | {"with_context": golden_quantities(fused)},
                      golden[f"examples/{path.name}"], path.name)
        assert fused["context"] == {"age": float(CONTEXT["age"]), "sex": CONTEXT["sex"], "site": CONTEXT["site"]}
        assert fused["context_note"].startswith(note) and fused["image_only_probabilities"] == old["probabilities"]
        assert fused["similar_cases"] == old["similar_cases"] and len(old["similar_cases"]) == 8

        outputs = client.predict(image, 3, False, "predicted", api_name="/classify")
        assert len(outputs) == 6 and outputs[5] == old  # the page's endpoint: the same answer, six outputs
        *_, result = client.predict(image=image, age=CONTEXT["age"], sex=CONTEXT["sex"], site=CONTEXT["site"],
                                    api_name="/classify")
        assert result == fused
        assert client.predict(image, 3, False, "predicted", None, "unknown", "", api_name="/classify")[5] == old

    value = {"url": data_url(EXAMPLES[0].read_bytes()), "meta": {"_type": "gradio.FileData"}}
    by_name = completed(call(served_bundled, "classify_json", {"image": value} | CONTEXT))[0]
    in_order = completed(call(served_bundled, "classify_json", [value, 3, False, "predicted", *given]))[0]
    assert by_name == in_order and by_name["context_note"].startswith(note)
    assert completed(call(served_bundled, "classify_json", {"image": value}))[0]["context"] is None
    assert completed(call(served_bundled, "classify", [value, 3, False, "predicted", *given]))[5] == in_order

    image = handle_file(EXAMPLES[0])
    for bad, words in (((150, None, None), "between 0 and 120"), ((None, "x", None), "accepted: male, female"),
                       ((None, None, "moon"), "accepted: abdomen, acral")):
        for endpoint in ("/classify", "/classify_json"):
            with pytest.raises(AppError, match=words):
                client.predict(image, 3, False, "predicted", *bad, api_name=endpoint)
