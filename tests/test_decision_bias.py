"""The prior correction on the decision only (issue 16, item 4): ``calibration.decision_bias`` chooses the label, the
probabilities stay without it, and every surface (JSON, CSV, the batch tab, the page) names the decision and the
most probable class apart, with a sentence when they differ. A config without it serves as before.

The tiny stand-in model answers bkl first for the generated lesions (df third, about 16%); a decision bias of +3
for df makes df the decision while bkl stays the most probable class."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest

from classifier import app_logic as logic
from classifier import batch_tab
from classifier.api import Classifier
from classifier.cli import main
from classifier.errors import ClassifierError
from classifier.labels import DISCLAIMER
from classifier.model_folder import ModelFolderError, read_config, write_config
from classifier.results import row_columns
from tests.app_helpers import lesion_file

FORCED = "df"  # the class the hand-set decision bias chooses
BIAS = [0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]  # +3 for df (index 3)


def with_calibration(source, folder, **calibration):
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config["calibration"].update(calibration)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def forced_dir(tiny_litert_dir, tmp_path_factory):
    return with_calibration(tiny_litert_dir, tmp_path_factory.mktemp("decision") / "model", decision_bias=BIAS)


@pytest.fixture(scope="module")
def plain(tiny_litert_dir):
    return Classifier(tiny_litert_dir)


@pytest.fixture(scope="module")
def forced(forced_dir):
    return Classifier(forced_dir)


@pytest.fixture(scope="module")
def lesion(tmp_path_factory):
    return lesion_file(tmp_path_factory.mktemp("images"))


def test_decision_bias_is_read_and_written_by_the_one_reader_and_writer(forced_dir, tmp_path):
    config = read_config(forced_dir)
    assert config.calibration.decision_bias == tuple(BIAS) and not any(config.calibration.class_bias)
    copy = shutil.copytree(forced_dir, tmp_path / "copy")
    write_config(read_config(copy))
    again = read_config(copy)
    assert again.calibration == config.calibration and again.to_dict() == config.to_dict()
    written = again.to_dict()["calibration"]
    assert written["decision_bias"] == BIAS and "class_bias" not in written
    for bad, message in (({"decision_bias": [1.0, 2.0]}, "decision_bias must be 7 numbers"),
                         ({"decision_bias": BIAS, "class_bias": BIAS}, "not both")):
        folder = with_calibration(forced_dir, tmp_path / f"bad{len(bad)}", **bad)
        with pytest.raises(ModelFolderError, match=message):
            read_config(folder)


def test_the_label_is_the_decision_and_the_probabilities_stay_without_the_correction(plain, forced, lesion):
    before, after = plain.classify(lesion, heatmap=True), forced.classify(lesion, heatmap=True)
    assert [(p.code, p.probability) for p in after.probabilities] == [(p.code, p.probability)
                                                                      for p in before.probabilities]
    assert before.label == after.most_probable == "bkl" and after.label == after.decision == FORCED
    assert after.decision_note.startswith(f"{FORCED} is chosen although bkl is more probable")
    assert "how rare df was in training (prior correction fitted on validation)" in after.decision_note
    assert after.heatmap_class == FORCED and before.heatmap_class == "bkl"  # the heatmap explains the decision
    assert forced.classify(lesion, heatmap=True, heatmap_class="nv").heatmap_class == "nv"
    assert forced.classify(lesion, tta=True).label == FORCED
    assert [p.label for p in forced.classify_each([lesion, lesion])] == [FORCED, FORCED]
    assert after.ood_score == before.ood_score  # the energy reads the raw logits
    result = after.to_dict()
    assert list(result)[:4] == ["notice", "label", "most_probable", "decision_note"]
    assert (result["label"], result["most_probable"], result["notice"]) == (FORCED, "bkl", DISCLAIMER)


def test_the_set_shown_beside_a_moved_decision_holds_it(forced_dir, tmp_path, lesion):
    narrow = json.loads((forced_dir / "config.json").read_text())
    narrow["conformal"] = {"coverage": 0.9, "threshold": 0.05}  # only classes above p = 0.95: the top class alone
    folder = shutil.copytree(forced_dir, tmp_path / "narrow")
    (folder / "config.json").write_text(json.dumps(narrow))
    result = Classifier(folder).classify(lesion)
    assert result.label == FORCED and result.prediction_set == ["bkl", FORCED]  # most probable first, then the answer


def test_on_the_bundled_model_every_served_decision_is_in_its_set(bundled_model_dir, ham_dir):
    from classifier.data import load_split
    from classifier.evaluation.robustness import split_pictures

    classifier = Classifier(bundled_model_dir)
    paths = split_pictures(ham_dir, load_split(classifier.config.file("split")), "images_200x150", 200)
    predictions = classifier.classify_each(paths)
    assert all(p.label in p.prediction_set for p in predictions)
    assert any(p.label != p.most_probable for p in predictions)  # the case that matters is among them


def test_a_decision_that_is_the_most_probable_class_has_no_note(forced_dir, tmp_path, lesion):
    agreeing = Classifier(with_calibration(forced_dir, tmp_path / "m", decision_bias=[0.0] * 7))
    result = agreeing.classify(lesion).to_dict()
    assert result["label"] == result["most_probable"] == "bkl" and result["decision_note"] is None
    assert "also the most probable class" in logic.decision_markdown(agreeing.classify(lesion))


def test_a_config_without_decision_bias_serves_as_before(plain, lesion):
    prediction = plain.classify(lesion)
    assert not plain.separate_decision and prediction.decision is None and prediction.decision_note is None
    assert "most_probable" not in prediction.to_dict() and "decision_note" not in prediction.to_dict()
    assert logic.decision_markdown(prediction) == "" and logic.show(plain, {"path": str(lesion)}).decision == ""


def test_predict_json_and_csv_carry_the_decision_and_its_note(forced_dir, lesion, capsys):
    capsys.readouterr()
    assert main(["predict", str(lesion), "--model", str(forced_dir)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["label"], record["most_probable"]) == (FORCED, "bkl") and "is chosen although" in record[
        "decision_note"]
    assert main(["predict", str(lesion), "--model", str(forced_dir), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    header = list(rows[0])
    assert header[:4] == ["path", "label", "decision_note", "top1_code"]
    assert header == row_columns(3, read_config(forced_dir).codes)  # the columns every model writes
    assert (rows[0]["label"], rows[0]["top1_code"]) == (FORCED, "bkl") and rows[0]["decision_note"] == record[
        "decision_note"]


def test_the_batch_tab_names_decision_and_most_probable(forced, lesion, tmp_path):
    result = batch_tab.classify_batch(forced, batch_tab.batch_items([str(lesion)]))
    assert result.rows[0][1].startswith(f"decision: {FORCED} (") and "most probable: bkl — " in result.rows[0][1]
    with open(batch_tab.write_csv(result, tmp_path), newline="") as f:
        row = next(csv.DictReader(f))
    assert row["label"] == FORCED and row["top1_code"] == "bkl" and "is chosen although" in row["decision_note"]


def test_the_page_shows_a_decision_line_beside_the_probabilities(forced, lesion):
    shown = logic.show(forced, {"path": str(lesion)})
    assert list(shown.labels)[0].startswith("bkl — ")  # gr.Label's headline: the most probable class
    assert shown.decision.startswith(f"**Decision: {FORCED} — Dermatofibroma** · most probable: bkl — ")
    assert "most probable: bkl — " in shown.decision and "is chosen although bkl is more probable" in shown.decision
    assert "not a diagnosis" in shown.decision and shown.result["label"] == FORCED
    assert "**df**" in shown.caption  # the heatmap's default class is the decision


def test_classification_metrics_score_the_decisions_and_rank_the_probabilities():
    from classifier.evaluation.metrics import classification_metrics

    codes = ("a", "b", "c")
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    y = np.array([0, 1, 1, 2])
    decided = np.array([0, 1, 1, 2])  # the correction turns images 2 and 4 to their true class
    own, corrected = classification_metrics(probs, y, codes), classification_metrics(probs, y, codes, predicted=decided)
    assert own["accuracy"] == 0.5 and corrected["accuracy"] == 1.0 and corrected["balanced_accuracy"] == 1.0
    assert corrected["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert corrected["per_class"]["c"]["recall"] == 1.0 and own["per_class"]["c"]["recall"] == 0.0
    for key in ("macro_auc", "nll", "ece"):  # of the probabilities, whatever was decided
        assert corrected[key] == own[key]


def test_measure_scores_the_served_decisions(forced, plain):
    from classifier.evaluation.measure import measure

    view_logits = np.random.default_rng(0).normal(size=(40, 2, 7)).astype(np.float32)
    y = np.arange(40) % 7
    plain_figures, forced_figures = measure(plain.config, view_logits, y), measure(forced.config, view_logits, y)
    probs = np.exp(view_logits) / np.exp(view_logits).sum(axis=-1, keepdims=True)
    corrected = np.exp(view_logits + BIAS) / np.exp(view_logits + BIAS).sum(axis=-1, keepdims=True)
    decided = corrected.mean(axis=1).argmax(axis=1)  # the views' mean, with the bias, T = 1
    assert (decided != probs.mean(axis=1).argmax(axis=1)).any()
    assert forced_figures["accuracy"] == round(float(np.mean(decided == y)), 4)
    chosen = np.asarray(forced_figures["confusion_matrix"]).sum(axis=0)
    assert chosen.tolist() == np.bincount(decided, minlength=7).tolist()
    assert forced_figures["macro_auc"] == plain_figures["macro_auc"] and forced_figures["nll"] == plain_figures["nll"]
    assert forced_figures["top_probability_is_decision"] == round(float(np.mean(
        decided == probs.mean(axis=1).argmax(axis=1))), 4)
    assert "top_probability_is_decision" not in plain_figures


def test_a_bad_decision_bias_is_one_model_folder_error(forced_dir, tmp_path):
    folder = with_calibration(forced_dir, tmp_path / "m", decision_bias=["a"] * 7)
    with pytest.raises(ClassifierError, match="decision_bias"):
        Classifier(folder)


@pytest.mark.parametrize("form", ["decision", "probabilities"])
def test_export_fits_the_decision_only_form_by_default_and_records_both(tiny_litert_dir, tmp_path, monkeypatch, form):
    """The export's fits and measurements (``calibrate_and_measure``) on the tiny model and 42 generated images;
    the evidence beside the answer (its heads need TensorFlow) is left out here, and exported in
    tests/test_train_smoke.py."""
    from classifier.data import lesion_split, read_metadata, resolve_images, save_split
    from classifier.training import export_model
    from tests.test_train_smoke import make_dataset

    make_dataset(tmp_path / "data")
    records = read_metadata(tmp_path / "data")
    folder = shutil.copytree(tiny_litert_dir, tmp_path / "model")
    save_split(lesion_split(records), folder / "split.json")
    write_config(read_config(folder).with_file("split", "split.json"))
    monkeypatch.setattr(export_model, "add_evidence", lambda config, *args: config)
    arguments = {} if form == "decision" else {"prior_correction": form}
    metrics = export_model.calibrate_and_measure(folder, records, resolve_images(records, tmp_path / "data"),
                                                 **arguments)
    config = read_config(folder)
    calibration, tau = config.calibration, config.calibration.prior_correction_tau
    bias = tuple(np.round(-tau * np.log(np.full(7, 1 / 7)), 4).tolist())  # the generated classes are balanced
    if form == "decision":
        assert calibration.decision_bias == bias and not any(calibration.class_bias)
        assert "class_bias" not in config.to_dict()["calibration"] and "top_probability_is_decision" in metrics.test
    else:
        assert calibration.decision_bias is None and calibration.class_bias == bias
    forms = metrics.prior_correction
    assert forms["served"] == form and forms["tau"] == tau and metrics.calibration["prior_correction"] == form
    for figures in (forms["decision"], forms["probabilities"]):
        assert {"macro_auc", "accuracy", "nll", "conformal_coverage", "conformal_mean_set_size"} <= set(figures)
    assert forms[form]["temperature"] == calibration.temperature
    assert forms[form]["macro_auc"] == metrics.test["macro_auc"] and forms[form]["accuracy"] == metrics.test["accuracy"]
    card = (folder / "README.md").read_text()
    assert "### Where the prior correction acts" in card and "correction on the decision only" in card


def test_evaluate_scores_the_decisions_with_the_same_keys(forced_dir, plain, tmp_path, capsys):
    from classifier.evaluation.measure import measure

    images, source = tmp_path / "images", lesion_file(tmp_path)
    images.mkdir()
    codes = read_config(forced_dir).codes
    rows = ["image_id,dx"]
    for i in range(14):
        shutil.copy(source, images / f"img{i}.jpg")
        rows.append(f"img{i},{codes[i % 7]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(forced_dir), "--images", str(images), "--labels",
                 str(tmp_path / "labels.csv"), "--out", str(tmp_path / "report")]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    before = measure(plain.config, np.zeros((14, 8, 7)), np.arange(14) % 7)  # the keys a plain model prints
    assert set(printed) - set(before) == {"top_probability_is_decision"} and set(before) <= set(printed)
    assert printed["per_class"][FORCED]["recall"] == 1.0 and printed["accuracy"] == round(2 / 14, 4)
    assert printed["top_probability_is_decision"] == 0.0  # the same image 14 times: df chosen, bkl most probable
    assert "prior correction on the decision only" in (tmp_path / "report" / "report.md").read_text()


def test_operating_points_rescores_the_decisions_and_a_melanoma_bias_raises_its_recall(forced_dir, tmp_path, capsys):
    from scripts.operating_points import main as operating_points

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 400)
    logits = rng.normal(0, 1.5, (400, 8, 7)) + 1.0 * np.eye(7)[labels][:, None]  # informative, noisy
    np.savez(tmp_path / "cache.npz", val_logits=logits, val_label=labels, test_logits=logits, test_label=labels)
    folder = with_calibration(forced_dir, tmp_path / "m", decision_bias=[0.1] * 7, prior_correction_tau=0.2)
    assert operating_points(["--features", str(tmp_path / "cache.npz"), "--model", str(folder),
                             "--tau", "0.2", "--melanoma", "0", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [next(iter(r)) for r in rows] == ["tau", "melanoma", "melanoma"]
    assert rows[0]["val"] == rows[1]["val"]  # tau as fitted, and no melanoma bias: the served rule both
    assert rows[2]["test"]["melanoma_recall"] > rows[1]["test"]["melanoma_recall"]
    assert rows[2]["test"]["melanoma_precision"] < rows[1]["test"]["melanoma_precision"]


def test_operating_points_names_a_cache_it_cannot_use(forced_dir, tmp_path, capsys):
    from classifier.errors import exit_status
    from scripts.operating_points import main as operating_points

    folder = with_calibration(forced_dir, tmp_path / "m", decision_bias=[0.1] * 7, prior_correction_tau=0.2)
    np.savez(tmp_path / "val_only.npz", val_logits=np.zeros((2, 8, 7)), val_label=np.zeros(2, int))
    (tmp_path / "notes.npz").write_text("not an array file")
    for cache, message in (("val_only.npz", "holds no test split"), ("notes.npz", "not a feature cache")):
        assert exit_status(operating_points, ["--features", str(tmp_path / cache), "--model", str(folder)]) == 2
        assert message in capsys.readouterr().err
