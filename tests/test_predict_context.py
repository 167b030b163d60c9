"""``predict`` with patient context (``--age/--sex/--site``, ``--context CSV``) and similar cases (``--similar``),
on the bundled model and the example images: the records, the CSV and Parquet columns, and the error rows and
messages. The Ray engine's equal records are in tests/test_predict_engines.py."""

import csv
import shutil
from pathlib import Path

import pytest

from classifier.results import row_columns
from tests.conftest import ROOT
from tests.test_predict_engines import json_lines, predict

EXAMPLES = ROOT / "examples"
FIRST, SECOND, THIRD = (EXAMPLES / name for name in ("ISIC_0024336.jpg", "ISIC_0024377.jpg", "ISIC_0024380.jpg"))
CONTEXT = {"age": 70.0, "sex": "male", "site": "back"}
CODES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


@pytest.fixture(scope="module")
def model(bundled_model_dir) -> str:
    from classifier.api import load_classifier

    classifier = load_classifier(str(bundled_model_dir))
    if classifier.context_head is None or classifier.similar_index is None:
        pytest.skip("the bundled model has no context head or similar-cases index")
    return str(bundled_model_dir)


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows(rows)
    return path


@pytest.fixture(scope="module")
def plain(model) -> dict[str, dict]:
    """The image-only records of the three examples, by path."""
    from classifier.api import load_classifier

    classifier = load_classifier(model)
    return {str(path): classifier.classify(path).to_dict() for path in (FIRST, SECOND, THIRD)}


def test_age_sex_site_give_every_input_the_context_and_leave_the_image_only_answer(model, plain, capsys):
    status, out, err = predict(capsys, FIRST, SECOND, "--model", model)
    assert status == 0, err
    for record in json_lines(out):
        expected = plain[record.pop("path")]
        assert record == expected  # without context: the API's image-only answer, unchanged
        assert record["context"] is None and record["context_note"] is None
        assert record["image_only_probabilities"] is None
    status, out, err = predict(capsys, FIRST, SECOND, "--model", model, "--age", "70", "--sex", "Male",
                               "--site", "back")
    assert status == 0, err
    for record in json_lines(out):
        image_only = plain[record["path"]]
        assert record["context"] == CONTEXT
        assert record["context_note"].startswith("With age 70, male, back: ")
        assert record["image_only_probabilities"] == image_only["probabilities"]
        assert record["probabilities"] != image_only["probabilities"]  # the context head answered
        assert record["similar_cases"] == image_only["similar_cases"]  # the image's neighbours, context or not
    status, out, _ = predict(capsys, FIRST, "--model", model, "--sex", "female")  # any subset
    assert status == 0 and json_lines(out)[0]["context"] == {"age": None, "sex": "female", "site": None}
    status, out, _ = predict(capsys, FIRST, "--model", model, "--age", "", "--site", "unknown")  # none given
    assert status == 0 and json_lines(out)[0] == {"path": str(FIRST), **plain[str(FIRST)]}


@pytest.mark.parametrize(("argv", "message"), [
    (["--age", "200"], "error: --age: age must be between 0 and 120 years, not 200"),
    (["--age", "old"], "error: --age: age must be a number of years"),
    (["--sex", "x"], "error: --sex: unknown sex 'x'; accepted: male, female"),
    (["--site", "elbow"], "error: --site: unknown site 'elbow'; accepted: abdomen, acral,"),
    (["--context", "ctx.csv", "--age", "50"], "error: give the patient context either per image in --context"),
    (["--similar", "65"], "error: --similar must be between 0 and 64"),
    (["--similar", "-1"], "error: --similar must be between 0 and 64"),
    (["--context", "missing.csv"], "error: --context missing.csv: cannot read it (No such file or directory)"),
])
def test_a_bad_command_line_context_is_one_error_line_before_anything_runs(capsys, tmp_path, argv, message,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a model that does not exist: the options are checked before the model is loaded
    status, out, err = predict(capsys, FIRST, "--model", tmp_path / "no-model", *argv)
    assert status == 2 and not out, err
    assert err.strip().startswith(message) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("header", "words"), [
    (["file", "age", "sex"], "the header must name an image column (image or image_id)"),
    (["image", "dx"], "and at least one of age, sex, site (or localization); it names: image, dx"),
    (["image", "site", "localization"], "columns site and localization both give the site"),
])
def test_a_context_csv_without_its_columns_is_refused(capsys, tmp_path, model, header, words):
    table = write_csv(tmp_path / "ctx.csv", [header, ["ISIC_0024336", "70", "male"]])
    status, out, err = predict(capsys, FIRST, "--model", model, "--context", table)
    assert status == 2 and not out and f"error: --context {table}: " in err and words in err, err


def test_context_csv_rows_match_by_path_name_or_stem(model, plain, capsys, tmp_path, monkeypatch):
    """A row names its image by the path as given, another path to the same file, the file name or the stem;
    an input without a row is scored on the image alone, and rows that match nothing are listed on stderr.
    HAM10000's own metadata columns (image_id, localization) are read as image and site."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in (FIRST, SECOND, THIRD):
        shutil.copy(path, folder / path.name)
    monkeypatch.chdir(tmp_path)
    table = write_csv(tmp_path / "ctx.csv", [
        ["image", "age", "sex", "site", "note"],
        ["ISIC_0024336", "70", "male", "back", "by stem"],
        [str((folder / SECOND.name).resolve()), "45", "", "", "by absolute path"],
        ["ISIC_0099999.jpg", "30", "female", "face", "no such image"],
        ["", "30", "", "", "no image at all"],
    ])
    status, out, err = predict(capsys, "images", "--model", model, "--context", table)
    assert status == 0, err
    rows = json_lines(out)
    assert [r["path"] for r in rows] == [f"images/{path.name}" for path in (FIRST, SECOND, THIRD)]
    assert [r["context"] for r in rows] == [CONTEXT, {"age": 45.0, "sex": None, "site": None}, None]
    assert rows[2] == {"path": "images/" + THIRD.name, **plain[str(THIRD)]}  # no row: the image-only answer
    assert "note: 2 of the 4 rows of --context ctx.csv match no input (line 4: 'ISIC_0099999.jpg'; line 5: '')" in err
    assert "note: 1 of the 3 input files have no row in --context ctx.csv; they are scored on the image alone" in err
    for name in ("images/ISIC_0024336.jpg", "ISIC_0024336.jpg"):  # the path as given, the file name
        table = write_csv(tmp_path / "by.csv", [["image", "sex"], [name, "female"]])
        status, out, err = predict(capsys, "images", "--model", model, "--context", table)
        assert json_lines(out)[0]["context"] == {"age": None, "sex": "female", "site": None}, name

    status, out, err = predict(capsys, EXAMPLES, "--model", model, "--context", EXAMPLES / "manifest.csv")
    manifest = {row["image_id"]: row for row in csv.DictReader((EXAMPLES / "manifest.csv").open())}
    assert status == 0 and "note:" not in err, err
    for record in json_lines(out):
        row = manifest[Path(record["path"]).stem]
        assert record["context"] == {"age": float(row["age"]), "sex": row["sex"], "site": row["localization"]}


def test_a_bad_or_ambiguous_context_row_is_that_inputs_error_row(model, plain, capsys, tmp_path):
    """A bad value, an image named by two rows, or a row naming two files: an error row in that input's place,
    saying which line of the CSV and why; the other inputs are scored; exit status 1."""
    for name, path in (("a", FIRST), ("b", SECOND), ("c", THIRD), ("d", FIRST)):
        shutil.copy(path, tmp_path / f"{name}.jpg")
    (tmp_path / "sub").mkdir()
    shutil.copy(FIRST, tmp_path / "sub" / "d.jpg")
    table = write_csv(tmp_path / "ctx.csv", [
        ["image", "age", "sex", "site"],
        ["a", "abc", "", ""],
        ["b.jpg", "70", "male", "back"],
        ["c", "50", "", ""],
        ["c.jpg", "50", "", ""],
        ["d", "", "female", ""],
    ])
    inputs = [tmp_path / f"{name}.jpg" for name in "abcd"] + [tmp_path / "sub" / "d.jpg"]
    status, out, err = predict(capsys, *inputs, "--model", model, "--context", table)
    assert status == 1 and "Traceback" not in err and "summary: 5 images, 4 errors" in err, err
    rows = json_lines(out)
    assert [r["path"] for r in rows] == [str(path) for path in inputs]
    assert rows[0]["error"].startswith("a.jpg: --context ctx.csv line 2: age must be a number of years")
    assert rows[1]["context"] == CONTEXT and rows[1]["probabilities"] != plain[str(SECOND)]["probabilities"]
    assert rows[2]["error"] == "c.jpg: --context ctx.csv lines 4, 5 each name this image; give it one row"
    assert rows[3]["error"] == rows[4]["error"] == (
        "d.jpg: --context ctx.csv line 6 ('d') matches 2 input files; name the image by its path")
    assert all(set(r) == {"path", "error"} for r in rows if r is not rows[1])


def test_similar_cases_in_json_and_csv(model, plain, capsys, tmp_path):
    status, out, _ = predict(capsys, FIRST, "--model", model)
    cases = json_lines(out)[0]["similar_cases"]
    assert len(cases) == 8 and [c["distance"] for c in cases] == sorted(c["distance"] for c in cases)
    assert set(cases[0]) == {"image_id", "lesion_id", "code", "name", "confirmed_by", "distance"}
    status, out, _ = predict(capsys, FIRST, "--model", model, "--similar", "2")
    assert json_lines(out)[0]["similar_cases"] == cases[:2]
    status, out, _ = predict(capsys, FIRST, "--model", model, "--similar", "0")
    assert json_lines(out)[0]["similar_cases"] == []
    status, out, _ = predict(capsys, FIRST, "--model", model, "--format", "csv", "--similar", "3")
    row = next(csv.DictReader(out.splitlines()))
    assert row["similar_cases"] == ";".join(f"{c['image_id']}:{c['code']}:{c['distance']:.4f}" for c in cases[:3])
    status, out, _ = predict(capsys, FIRST, "--model", model, "--format", "csv", "--similar", "0")
    assert next(csv.DictReader(out.splitlines()))["similar_cases"] == ""


def test_csv_and_parquet_columns_carry_the_context_and_resume(model, plain, capsys, tmp_path):
    """The context columns are there with or without context, so a run with --context resumes an --out written
    without it: the rows already there are kept, the new ones appended in input order with their context."""
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    table = write_csv(tmp_path / "ctx.csv", [["image", "age", "sex", "site"], ["ISIC_0024377", "62.5", "female",
                                                                                  "lower_extremity"]])
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"scores{suffix}"
        status, _, err = predict(capsys, FIRST, "--model", model, "--out", out)
        assert status == 0, err
        status, _, err = predict(capsys, FIRST, SECOND, THIRD, "--model", model, "--out", out, "--context", table)
        assert status == 0 and "1 of 3 images are already in" in err, err
        if suffix == ".csv":
            text = out.read_text()
            assert text.splitlines()[0].split(",") == row_columns(3, CODES)
            rows = list(csv.DictReader(text.splitlines()))
            assert rows[1]["age"] == "62.5" and rows[0]["age"] == rows[2]["age"] == ""
        else:
            rows = pyarrow_parquet.read_table(out).to_pylist()
            assert rows[1]["age"] == 62.5 and rows[0]["age"] is None
        assert [r["path"] for r in rows] == [str(FIRST), str(SECOND), str(THIRD)]
        assert {"age", "sex", "site", "context_note", "similar_cases"} <= set(rows[0])
        assert (rows[1]["sex"], rows[1]["site"]) == ("female", "lower extremity")
        assert rows[1]["context_note"].startswith("With age 62.5, female, lower extremity: ")
        assert not rows[0]["context_note"] and not rows[0]["sex"] and not rows[2]["site"]
        assert rows[0]["similar_cases"].count(";") == 7 and rows[0]["similar_cases"].startswith(
            plain[str(FIRST)]["similar_cases"][0]["image_id"] + ":")
        for row, context in zip(rows, (False, True, False), strict=True):
            image_only = float(row["probability_mel"]) == pytest.approx(
                plain[row["path"]]["probabilities"]["mel"], abs=1e-6)
            assert image_only != context, row["path"]
