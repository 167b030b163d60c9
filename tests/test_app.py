"""The Gradio demo's "One image" page as plain functions (classifier.app_logic: the result, the patient-context
note, the similar cases and the files the page is sent; classifier.model_summary: the model for a person), and
app.py's command line. The served app: tests/test_app_served.py; what a web caller may send:
tests/test_web_input.py; the batch tab: tests/test_batch_tab.py; the page in a browser: tests/test_browser.py."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from classifier import app_logic as logic
from classifier import batch_tab, model_summary
from classifier.api import load_classifier
from classifier.context import ContextError, parse_context
from classifier.explain import HEAT_FLOOR, HEAT_MAX_ALPHA, overlay
from classifier.labels import CODES, DISCLAIMER
from classifier.preprocessing import ImageError
from classifier.similar import ATTRIBUTION
from classifier.web_input import human_size
from tests.app_helpers import lesion_file
from tests.conftest import ROOT, lesion_like

EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def classifier(tiny_litert_dir):
    return load_classifier(str(tiny_litert_dir))


@pytest.fixture(scope="module")
def renamed_classifier(tiny_litert_dir, tmp_path_factory):
    """The tiny model with other names, malignancy flags and test figures in its config.json."""
    folder = tmp_path_factory.mktemp("renamed") / "model"
    shutil.copytree(tiny_litert_dir, folder)
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
    return lesion_file(tmp_path_factory.mktemp("images"))


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


# --- patient context and similar cases ---------------------------------------------------------------------

CAPTION = re.compile(r"[a-z]+ · (histopathology|follow-up|expert consensus|confocal microscopy) · \d\.\d\d")


@pytest.fixture(scope="module")
def bundled(bundled_model_dir):
    from classifier.api import Classifier

    return Classifier(bundled_model_dir)


def test_page_shows_how_the_context_moved_the_answer(bundled):
    plain = logic.show(bundled, str(EXAMPLES[0]))
    direct = bundled.classify(EXAMPLES[0])
    assert plain.context_note == "" and plain.result["context"] is None
    assert plain.result["probabilities"] == direct.to_dict()["probabilities"]  # no context: the image-only answer
    for none in ((None, None, None), ("", "unknown", "unknown"), (None, logic.NOT_GIVEN, logic.NOT_GIVEN)):
        assert logic.show(bundled, str(EXAMPLES[0]), age=none[0], sex=none[1], site=none[2]).result == plain.result
    given = logic.show(bundled, str(EXAMPLES[0]), age=70, sex="male", site="back")
    expected = bundled.classify(EXAMPLES[0], age=70, sex="male", site="back")
    assert given.context_note.endswith(expected.context_note) and "With age 70, male, back:" in given.context_note
    assert given.result["context"] == {"age": 70.0, "sex": "male", "site": "back"}
    assert given.result["image_only_probabilities"] == {c: p for c, p in plain.result["probabilities"].items()}
    assert logic.classify(bundled, str(EXAMPLES[0]), age=70, sex="male", site="back") == expected.to_dict()


def test_a_bad_context_value_is_an_error_naming_what_is_accepted(bundled, classifier):
    for values, words in ((dict(age=150), "between 0 and 120"), (dict(sex="x"), "accepted: male, female"),
                          (dict(site="moon"), "accepted: abdomen, acral")):
        with pytest.raises(ContextError, match=words):  # the page turns it into gr.Error; not a problem message
            logic.show(bundled, str(EXAMPLES[0]), **values)
        with pytest.raises(ContextError, match=words):
            logic.classify(bundled, str(EXAMPLES[0]), **values)
    with pytest.raises(ContextError, match="no patient-context head"):
        logic.show(classifier, lesion_like(64), age=50)  # the tiny model has none
    assert logic.show(classifier, lesion_like(64), sex=logic.NOT_GIVEN).problem is None
    assert logic.show(bundled, None, age=150).message == logic.NO_IMAGE  # nothing to classify yet: no error


def test_context_choices_are_the_models_and_not_given_means_none():
    assert [value for _, value in logic.SEX_CHOICES] == [logic.NOT_GIVEN, "male", "female"]
    assert logic.SEX_CHOICES[0][0] == logic.SITE_CHOICES[0][0] == "not given"
    assert not parse_context(None, logic.NOT_GIVEN, logic.NOT_GIVEN).given
    assert all(parse_context(site=value).site == value for _, value in logic.SITE_CHOICES[1:])


def test_similar_cases_are_captioned_attributed_and_sent_as_files_written_once(bundled, classifier, tmp_path):
    shown = logic.show(bundled, str(EXAMPLES[0]))
    cases = bundled.classify(EXAMPLES[0]).similar_cases
    assert len(shown.similar) == len(cases) == bundled.config.similar_cases.k
    assert [caption for _, caption in shown.similar] == [logic.similar_caption(c) for c in cases]
    assert all(CAPTION.fullmatch(caption) for _, caption in shown.similar), shown.similar
    assert logic.similar_caption(cases[0]) == f"{cases[0].code} · {cases[0].confirmed_by} · {cases[0].distance:.2f}"
    assert ATTRIBUTION in shown.similar_text and "not a diagnosis" in shown.similar_text
    assert f"Of the {len(cases)} nearest: " in shown.similar_text and cases[0].name in shown.similar_text
    assert [c["image_id"] for c in shown.result["similar_cases"]] == [c.image_id for c in cases]

    sent = logic.as_files(shown, tmp_path)
    paths = [path for path, _ in sent.similar]
    assert [Path(p).read_bytes() for p in paths] == [c.thumbnail_jpeg for c in cases]  # as stored, not re-encoded
    assert all(Path(p).parent.name == hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths)
    before = {p: Path(p).stat().st_ino for p in paths}
    again = logic.as_files(logic.show(bundled, str(EXAMPLES[0])), tmp_path)
    assert [p for p, _ in again.similar] == paths and {p: Path(p).stat().st_ino for p in paths} == before

    tiny = logic.show(classifier, lesion_like(64))  # a model without an index: no similar cases, nothing under
    assert tiny.similar == [] and tiny.similar_text == "" and tiny.result["similar_cases"] == []


# --- what comes from the model's config ---------------------------------------------------------------------

def test_names_and_malignancy_come_from_the_models_config(renamed_classifier):
    c = renamed_classifier
    assert logic.heatmap_choices(c)[1:] == [(f"{code} — Renamed {code}", code) for code in c.config.codes]
    table = model_summary.classes_markdown(c)
    assert "| `df` | Renamed df | yes |" in table and "| `mel` | Renamed mel | no |" in table
    prediction = c.classify(lesion_like(64), top_k=3)
    assert all(name.split(" — ")[1] == f"Renamed {name.split(' — ')[0]}" for name in logic.label_dict(prediction))
    assert "P(df + vasc)" in logic.malignancy_markdown(prediction, c)
    probabilities = {p.code: p.probability for p in prediction.probabilities}
    assert prediction.malignant_probability == pytest.approx(probabilities["df"] + probabilities["vasc"], abs=1e-5)


def test_model_description_reads_its_figures_from_the_config(renamed_classifier, classifier):
    text = model_summary.model_markdown(renamed_classifier, environ={})
    assert "4,321 held-out test images" in text
    assert "balanced accuracy 46%" in text and "melanoma recall 12%" in text and "12 of every 100" in text
    assert "HAM10000" not in text or "Trained on" in text
    assert "[Model card](#model-card)" in text
    version = renamed_classifier.config.files["tflite"].sha256[:10]
    assert f"version `{version}`" in text
    figures = model_summary.headline_figures(classifier.config)  # the tiny model records no test figures
    text = model_summary.model_markdown(classifier, environ={})
    assert figures is None and "records no held-out test figures" in text
    details = model_summary.technical_markdown(renamed_classifier)
    for needed in ("Runtime", "litert", f"{renamed_classifier.size}x{renamed_classifier.size}",
                   "Test-time augmentation", ", ".join(renamed_classifier.config.tta.views)):
        assert needed in details


def test_bundled_model_description_matches_its_config(bundled_model_dir):
    from classifier.api import Classifier

    c = Classifier(bundled_model_dir)
    test = c.config.metrics.test
    text = model_summary.model_markdown(c, environ={})
    assert f"balanced accuracy {test['balanced_accuracy']:.0%}" in text
    assert f"melanoma recall {test['melanoma_recall']:.0%}" in text and f"{test['n']:,} held-out" in text
    card = model_summary.model_card_markdown(c)
    assert "[Model card](" in text and card.startswith("# ") and "license:" not in card  # no YAML header


def test_model_card_link_follows_where_the_model_lives(classifier):
    hub = SimpleNamespace(config=classifier.config,
                          source=SimpleNamespace(repo_id="me/model", commit="abc123", notice=None))
    assert model_summary.model_card_url(hub) == "https://huggingface.co/me/model/blob/abc123/README.md"
    bundled = SimpleNamespace(config=SimpleNamespace(folder=ROOT / "model"), source=None)
    assert model_summary.model_card_url(bundled, {"SPACE_ID": "me/space"}) == (
        "https://huggingface.co/spaces/me/space/blob/main/model/README.md")
    assert model_summary.model_card_url(bundled, {}) == "#model-card"
    assert model_summary.model_card_url(classifier, {"SPACE_ID": "me/space"}) == "#model-card"  # not in the repository


def test_examples_are_in_the_repository_with_their_true_diagnosis():
    found = logic.examples()
    assert {e.dx for e in found} == set(CODES) and len(found) == 14
    items = logic.gallery_items(found)
    assert [caption for _, caption in items] == [e.dx for e in found]
    assert all(Path(path).is_file() for path, _ in items)


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


def test_unloadable_model_exits_2_with_a_message(tmp_path, capsys):
    """As every command: one `error: ...` line, status 2 (classifier.errors.exit_status)."""
    import app

    assert app.main(["--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load the model: ") and "does not exist" in err and "Traceback" not in err


def test_readme_states_the_pages_limits_and_api_as_built():
    readme = (ROOT / "README.md").read_text()
    assert f"up to {batch_tab.MAX_BATCH_FILES} images" in readme
    assert f"{human_size(batch_tab.MAX_BATCH_BYTES)} in all" in readme
    assert f"none below {HEAT_FLOOR:.0%} of the map's maximum, at most {HEAT_MAX_ALPHA:.0%} opaque" in readme
    assert "warning, labels, malignancy, heatmap, caption, result = client.predict(" in readme
    assert 'api_name="/classify_json"' in readme and 'api_name="/classify_batch"' in readme
    assert "docs/demo-desktop.png" in readme and (ROOT / "docs" / "demo-desktop.png").is_file()
