"""Same lesion, same answer: a picture and its seven turned or mirrored copies get the same probabilities on every
surface (API, CLI, the page's endpoint), and the same picture sent as another file gets the same answer: generated
images for the preprocessing, the real bundled model on the bundled examples for the rest."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.evaluation.robustness import (
    SYMMETRIES,
    deliveries,
    delivery_shifts,
    probability_vector,
    shift,
    summary,
    symmetric_copies,
    symmetry_shifts,
)
from classifier.preprocessing import load_and_prepare
from tests.conftest import lesion_like

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))
TOLERANCE = 1e-3  # issue 16: probabilities equal to within 1e-3 for an image and its 7 symmetric copies
# numpy's view of each Pillow transpose: what the model's view of a turned picture must be
AS_ARRAY = {"rot90": lambda a: np.rot90(a, 1), "rot180": lambda a: np.rot90(a, 2), "rot270": lambda a: np.rot90(a, 3),
            "flip_h": lambda a: a[:, ::-1], "flip_v": lambda a: a[::-1], "transpose": lambda a: a.transpose(1, 0, 2),
            "transverse": lambda a: np.rot90(a, 2).transpose(1, 0, 2)}


def upright(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        return opened.convert("RGB")


@pytest.mark.parametrize("shape", [(150, 200), (450, 601), (224, 224), (97, 130), (300, 300), (1000, 1400)])
def test_the_models_view_turns_exactly_with_the_picture(shape):
    """Pixel for pixel: odd margins, upscaling, downscaling, a square and a picture large enough to be reduced."""
    picture = Image.fromarray(lesion_like(max(shape), seed=3)).resize(shape[::-1], Image.BICUBIC)
    view = load_and_prepare(picture, 96)
    assert set(AS_ARRAY) == set(SYMMETRIES)
    for name, copy in symmetric_copies(picture).items():
        np.testing.assert_array_equal(load_and_prepare(copy, 96), AS_ARRAY[name](view), err_msg=name)


def test_the_bundled_model_serves_the_eight_symmetries(bundled_model_dir):
    from classifier.model_folder import read_config
    from classifier.tta import VIEWS

    assert set(read_config(bundled_model_dir).serving.views) == set(VIEWS)


@pytest.fixture(scope="module")
def bundled(bundled_model_dir):
    from classifier.api import Classifier

    return Classifier(bundled_model_dir)


def test_api_gives_every_orientation_of_each_example_the_same_answer(bundled):
    assert len(EXAMPLES) >= 10
    for path in EXAMPLES:
        shifts = symmetry_shifts(bundled, upright(path))
        assert max(s for s, _ in shifts.values()) <= TOLERANCE, (path.name, shifts)
        assert not any(changed for _, changed in shifts.values()), path.name


def test_the_warning_too_is_the_same_however_the_picture_is_turned(bundled):
    for path in EXAMPLES[:4]:
        picture = upright(path)
        reference = bundled.classify(picture)
        for copy in symmetric_copies(picture).values():
            turned = bundled.classify(copy)
            assert turned.warning_reasons == reference.warning_reasons
            assert turned.feature_distance == pytest.approx(reference.feature_distance, abs=1e-3)


def test_cli_gives_every_orientation_the_same_answer(bundled_model_dir, tmp_path):
    for path in EXAMPLES[:2]:
        picture = upright(path)
        picture.save(tmp_path / f"{path.stem}-upright.png")
        for name, copy in symmetric_copies(picture).items():
            copy.save(tmp_path / f"{path.stem}-{name}.png")
    done = subprocess.run([sys.executable, "-m", "classifier", "predict", "--model", str(bundled_model_dir),
                           "--format", "csv", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert len(rows) == 16
    columns = [c for c in rows[0] if c.startswith("probability_")]
    for path in EXAMPLES[:2]:
        group = [r for r in rows if Path(r["path"]).name.startswith(path.stem)]
        probabilities = np.array([[float(r[c]) for c in columns] for r in group])
        assert len(group) == 8 and {r["label"] for r in group} == {group[0]["label"]}
        assert np.abs(probabilities - probabilities[0]).max() <= TOLERANCE


@pytest.mark.slow
def test_the_pages_endpoints_give_every_orientation_the_same_answer(bundled, tmp_path):
    import socket

    from gradio_client import Client, handle_file

    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(bundled, "10mb")
    try:
        _, url, _ = app.serve(demo, "127.0.0.1", port, max_file_size="10mb", block=False)
        client = Client(url, verbose=False)
        picture = upright(EXAMPLES[1])
        files = {"upright": tmp_path / "upright.png"}
        picture.save(files["upright"])
        for name, copy in symmetric_copies(picture).items():
            files[name] = tmp_path / f"{name}.png"
            copy.save(files[name])
        for endpoint in ("/classify", "/classify_json"):
            results = []
            for file in files.values():
                outputs = client.predict(handle_file(file), 3, False, "predicted", api_name=endpoint)
                if endpoint == "/classify":  # the page's outputs end with the JSON result
                    outputs = next(o for o in reversed(outputs) if isinstance(o, dict) and "probabilities" in o)
                results.append(outputs)
            probabilities = np.array([[r["probabilities"][c] for c in sorted(r["probabilities"])] for r in results])
            assert {r["label"] for r in results} == {results[0]["label"]}, endpoint
            assert np.abs(probabilities - probabilities[0]).max() <= TOLERANCE, endpoint
    finally:
        demo.close()


def test_lossless_deliveries_give_exactly_the_answer_of_the_pixels(bundled):
    for path in EXAMPLES[:4]:
        shifts = delivery_shifts(bundled, upright(path))
        for name in ("png", "webp_lossless", "tiff", "pil_image", "array"):
            assert shifts[name][0] <= 1e-6, (path.name, name, shifts[name])


def test_jpeg_deliveries_of_the_examples_stay_within_what_was_measured(bundled):
    """Re-encoding as JPEG (quality 95, at 1x and 2x, with an EXIF orientation tag, in CMYK) adds compression noise
    that the model sees. Issue 16 asks for p95 <= 0.02 and max <= 0.05 with the top class unchanged; the shipped
    model does not reach it (the float Keras model moves as much, so it is the network, not the int8 graph:
    docs/training.md). This pins what was measured on the 14 examples with the shipped model (its head trained
    for JPEG consistency; 56 deliveries: p95 0.073, max 0.106, no decision changed; run D before it: p95 0.078, max
    0.118, 3 changed), so that it cannot get worse unnoticed."""
    shifts, changed, margins = [], [], []
    for path in EXAMPLES:
        picture = upright(path)
        reference = bundled.classify(np.asarray(picture))  # as delivery_shifts does, for the JPEG deliveries only
        for name, sent in deliveries(picture).items():
            if "jpeg" in name:
                value, top_changed = shift(reference, bundled.classify(sent))
                shifts.append(value)
                changed.append(top_changed)
                margins.append(reference.probabilities[0].probability)
    figures = summary(shifts, changed)
    assert figures["n"] == 4 * len(EXAMPLES)
    assert figures["p95"] <= 0.08 and figures["max"] <= 0.115, figures
    assert figures["top_class_changed"] == 0, figures
    assert all(top < 0.6 for top, c in zip(margins, changed, strict=True) if c), "a confident answer changed"


def test_deliveries_hold_the_same_picture():
    picture = Image.fromarray(lesion_like(120, seed=5))
    pixels = np.asarray(picture).astype(int)
    from classifier.preprocessing import load_image

    for name, sent in deliveries(picture).items():
        decoded = np.asarray(load_image(sent)).astype(int)
        if name == "jpeg_q95_2x":
            decoded = np.asarray(Image.fromarray(decoded.astype(np.uint8)).resize(picture.size, Image.BICUBIC))
        assert decoded.shape == pixels.shape, name
        tolerance = 0 if name in ("png", "webp_lossless", "tiff", "pil_image", "array") else 12
        assert np.abs(decoded - pixels).mean() <= tolerance, name


def test_probability_vector_is_in_code_order(bundled):
    prediction = bundled.classify(upright(EXAMPLES[0]))
    vector = probability_vector(prediction)
    by_code = {p.code: p.probability for p in prediction.probabilities}
    assert vector.tolist() == [by_code[c] for c in sorted(by_code)]
    json.dumps(prediction.to_dict())


def test_the_measurement_script_answers_a_wrong_data_folder_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scripts.measure_invariance", "--data", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path}: no HAM10000_metadata.csv (or *metadata*.csv) found\n"


def test_exit_status_turns_classifier_errors_into_status_2(capsys):
    from classifier.data import DataError
    from classifier.errors import exit_status

    def failing(argv):
        raise DataError("no metadata here")

    assert exit_status(failing) == 2 and capsys.readouterr().err == "error: no metadata here\n"
    assert exit_status(lambda argv: None) == 0 and exit_status(lambda argv: 1) == 1


def test_jpeg_summary_averages_the_p95_of_the_jpeg_cells_only():
    from classifier.evaluation.robustness import jpeg_summary

    cell = {"n": 10, "p95": 0.1, "max": 0.2, "top_class_changed": 1}
    groups = {"a": {"jpeg_q95": cell, "png": {"n": 10, "p95": 0.0, "max": 0.9, "top_class_changed": 5}},
              "b": {"cmyk_jpeg": {**cell, "p95": 0.3, "max": 0.4}}}
    assert jpeg_summary(groups) == {"n": 20, "mean_p95": 0.2, "max": 0.4, "top_class_changed": 2}
    assert jpeg_summary({"a": {"png": cell}}) == {"n": 0}
