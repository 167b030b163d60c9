"""``predict --engine ray`` against the local engine, and ``--out`` (JSON lines, CSV, Parquet) with resuming.

The Ray tests run a local Ray of 2 CPUs over ~20 generated lesion-like images plus the broken files of
tests/bad_inputs.py, with the tiny model; they are skipped, with the reason, when Ray is not installed.
"""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from classifier.cli import main
from classifier.errors import ArgumentError
from classifier.results import printable
from tests.bad_inputs import build_corpus
from tests.conftest import ROOT, lesion_like

GENERATED = 20
TOLERANCE = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def ray_or_skip():
    pytest.importorskip("ray.data", reason="Ray is not installed (pip install -r requirements-scale.txt)")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """~20 generated images of several sizes and formats, and a folder of broken and awkward files."""
    folder = tmp_path_factory.mktemp("archive").resolve()
    for seed in range(GENERATED):
        image = Image.fromarray(lesion_like(64 + 8 * seed, seed=seed))
        image.save(folder / f"lesion_{seed:02d}.{'png' if seed % 5 == 0 else 'jpg'}")
    build_corpus(folder / "odd")
    return folder


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for this module (the engine joins it rather than starting its own)."""
    ray_or_skip()
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def predict(capsys, *argv) -> tuple[int, str, str]:
    """Run ``python -m classifier predict`` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    status = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def assert_close(local, ray, where="row"):
    """Equal, except that numbers may differ by TOLERANCE."""
    if isinstance(local, dict):
        assert isinstance(ray, dict) and list(local) == list(ray), where
        for key in local:
            assert_close(local[key], ray[key], f"{where}.{key}")
    elif isinstance(local, list):
        assert isinstance(ray, list) and len(local) == len(ray), where
        for i, (a, b) in enumerate(zip(local, ray, strict=True)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(local, float) and not isinstance(local, bool):
        assert isinstance(ray, (int, float)) and abs(local - ray) <= TOLERANCE, (where, local, ray)
    else:
        assert local == ray, (where, local, ray)


def summary_images(stderr: str) -> int:
    line = next(line for line in stderr.splitlines() if line.startswith("summary: "))
    return int(line.split()[1])


@pytest.fixture(scope="module")
def local_rows(archive, tiny_litert_dir) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "classifier", "predict", archive, "--model", tiny_litert_dir],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the broken files fail
    return json_lines(done.stdout)


def test_ray_engine_gives_the_local_engines_rows_errors_included(archive, tiny_litert_dir, local_rows, local_ray,
                                                                  capsys, tmp_path):
    status, out, err = predict(capsys, archive, "--engine", "ray", "--model", tiny_litert_dir,
                               "--out", tmp_path / "ray.jsonl")
    assert status == 1 and not out and "Traceback" not in err
    rows = json_lines((tmp_path / "ray.jsonl").read_text())
    assert len(rows) == len(local_rows) > GENERATED
    assert_close(local_rows, rows)  # same paths in the same order, labels, probabilities, errors
    errors = [r for r in rows if "error" in r]
    assert 5 <= len(errors) < len(rows) - GENERATED
    assert all(r["error"].startswith(Path(r["path"]).name + ": ") for r in errors)  # named like the local engine's
    assert f"summary: {len(rows)} images, {len(errors)} errors" in err and "Ray start-up" in err


def test_ray_engine_gives_the_local_engines_records_with_patient_context(bundled_model_dir, local_ray, capsys,
                                                                        tmp_path):
    """Contexts travel to the actors and similar cases come back: with --context (rows that match, an input
    without a row, a bad row: an error row in its place) and with --age/--sex/--site, on the bundled model (the
    tiny one has no context head), both engines give the same records."""
    examples = ROOT / "examples"
    table = tmp_path / "ctx.csv"
    table.write_text("image,age,sex,site\nISIC_0024336,70,male,back\nISIC_0024377.jpg,45,,\n"
                     "ISIC_0024380,abc,,\nISIC_0024403,,female,face\n")
    for options in (["--context", table], ["--age", "62.5", "--sex", "female", "--site", "lower extremity"]):
        rows = {}
        for engine in ("local", "ray"):
            status, out, err = predict(capsys, examples, "--engine", engine, "--model", bundled_model_dir,
                                       "--similar", "4", *options)
            assert status == (1 if options[0] == "--context" else 0), err
            rows[engine] = json_lines(out)
        assert_close(rows["local"], rows["ray"])
        local = rows["local"]
        assert len(local) == 14 and all(len(r["similar_cases"]) == 4 for r in local if "label" in r)
        if options[0] == "--context":
            assert [r.get("context") for r in local[:5]] == [
                {"age": 70.0, "sex": "male", "site": "back"}, {"age": 45.0, "sex": None, "site": None}, None,
                {"age": None, "sex": "female", "site": "face"}, None]
            assert local[2]["error"].startswith("ISIC_0024380.jpg: --context ctx.csv line 4: age must be")
            assert sum("error" in r for r in local) == 1 and local[0]["context_note"]
        else:
            assert all(r["context"] == {"age": 62.5, "sex": "female", "site": "lower extremity"} for r in local)


def test_ray_engine_gives_every_orientation_of_an_example_the_same_answer(bundled_model_dir, local_ray, capsys,
                                                                        tmp_path):
    """Issue 16 on the Ray surface: the bundled model, an example and its seven turned or mirrored copies."""
    from classifier.evaluation.robustness import symmetric_copies

    with Image.open(ROOT / "examples" / "ISIC_0024336.jpg") as opened:
        picture = opened.convert("RGB")
    picture.save(tmp_path / "upright.png")
    for name, copy in symmetric_copies(picture).items():
        copy.save(tmp_path / f"{name}.png")
    status, out, err = predict(capsys, tmp_path, "--engine", "ray", "--model", bundled_model_dir)
    rows = json_lines(out)
    assert status == 0 and len(rows) == 8, err
    assert len({r["label"] for r in rows}) == 1
    for row in rows:
        for code, probability in rows[0]["probabilities"].items():
            assert row["probabilities"][code] == pytest.approx(probability, abs=1e-3)


def test_paths_that_are_no_files_get_the_same_error_rows_from_both_engines(archive, tiny_litert_dir, local_ray,
                                                                           capsys, tmp_path):
    """A missing path, or a pipe, is an error row in its place and the other images are classified, exit 1; a
    folder's files come sorted in its place, and a file given twice gets two rows. A file name that is not valid
    UTF-8 is classified by the local engine; Ray's file system cannot open it. Both engines, stdout and --out."""
    pipe, missing = tmp_path / "pipe.jpg", tmp_path / "missing.jpg"
    os.mkfifo(pipe)
    not_utf8 = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")))
    shutil.copy(archive / "lesion_01.jpg", not_utf8)
    odd = sorted((archive / "odd").iterdir())
    paths = [archive / "lesion_00.png", missing, archive / "odd", pipe, not_utf8, archive / "lesion_02.jpg",
             archive / "lesion_00.png"]
    expected = [str(p) for p in paths[:2] + odd + paths[3:]]
    rows = {}
    for engine in ("local", "ray"):
        status, out, err = predict(capsys, *paths, "--engine", engine, "--model", tiny_litert_dir)
        assert status == 1 and "Traceback" not in err and f"summary: {len(expected)} images, " in err, err
        rows[engine] = json_lines(out)
        assert [r["path"] for r in rows[engine]] == expected, engine
    local, ray = rows["local"], rows["ray"]
    where = {path: i for i, path in enumerate(expected)}  # the last of a path given twice
    assert local[1]["error"] == f"{missing}: no such file" and "not a regular file" in local[where[str(pipe)]]["error"]
    assert [r for r in local if "error" in r] == [r for r in local[:where[str(pipe)] + 1] if "error" in r]
    assert all("label" in r for r in local[where[str(pipe)] + 1:]) and local[0] == local[-1]
    utf8 = where[str(not_utf8)]
    assert "--engine ray reads only file names that are valid UTF-8" in ray[utf8]["error"]
    assert_close(local[:utf8] + local[utf8 + 1:], ray[:utf8] + ray[utf8 + 1:])
    status, _, err = predict(capsys, *paths, "--engine", "ray", "--model", tiny_litert_dir, "--out",
                             tmp_path / "ray.csv")
    assert status == 1, err
    assert [r["path"] for r in csv.DictReader((tmp_path / "ray.csv").read_text().splitlines())] == [
        printable(path) for path in expected]


def test_ray_engine_csv_on_stdout_and_uris(archive, tiny_litert_dir, local_ray, capsys):
    status, local_csv, _ = predict(capsys, archive, "--model", tiny_litert_dir, "--format", "csv", "--top-k", "2")
    assert status == 1
    uri = archive.as_uri()  # file:///...: read through the same URI code as s3:// or hf://
    status, ray_csv, err = predict(capsys, uri, "--engine", "ray", "--model", tiny_litert_dir, "--format", "csv",
                                   "--top-k", "2")
    assert status == 1, err
    local, ray = list(csv.DictReader(local_csv.splitlines())), list(csv.DictReader(ray_csv.splitlines()))
    assert [r["path"] for r in ray] == [f"file://{r['path']}" for r in local]
    for a, b in zip(local, ray, strict=True):
        for column, value in a.items():
            if column == "path":
                continue
            if "probability" in column and value:
                assert abs(float(value) - float(b[column])) <= TOLERANCE
            else:
                assert value == b[column], column
    assert {"probability_mel", "malignant_probability", "top2_code", "error"} <= set(local[0])


def test_ray_engine_resumes_a_parquet_output(archive, tiny_litert_dir, local_rows, local_ray, capsys, tmp_path):
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    partial = tmp_path / "archive"
    shutil.copytree(archive, partial)
    later = sorted(partial.glob("lesion_1*"))  # held back from the first run
    for path in later:
        path.rename(tmp_path / path.name)
    out = tmp_path / "scores.parquet"
    status, _, err = predict(capsys, partial, "--engine", "ray", "--model", tiny_litert_dir, "--out", out)
    assert status == 1 and summary_images(err) == len(local_rows) - len(later)
    for path in later:
        (tmp_path / path.name).rename(path)
    (partial / "odd" / "good.jpg").write_bytes(b"")  # scored already: not read again, so no new error for it
    status, _, err = predict(capsys, partial, "--engine", "ray", "--model", tiny_litert_dir, "--out", out)
    assert status == 0, err  # only the held-back images were scored, and they are all good
    assert summary_images(err) == len(later) and f"{len(local_rows) - len(later)} of {len(local_rows)}" in err
    assert len(list(out.glob("part-*.parquet"))) == 2
    table = pyarrow_parquet.read_table(out).to_pylist()
    by_path = {row["path"]: row for row in table}
    assert len(table) == len(by_path) == len(local_rows)
    first = [str(partial / Path(r["path"]).relative_to(archive)) for r in local_rows]
    first = [path for path in first if Path(path) not in later]
    assert [row["path"] for row in table] == first + [str(path) for path in later]  # runs in order, each in order
    for record in local_rows:
        row = by_path[str(partial / Path(record["path"]).relative_to(archive))]
        assert row["label"] == record.get("label") and row["error"] == record.get("error")
        if "label" in record:
            assert math.isclose(row["probability_nv"], record["probabilities"]["nv"], abs_tol=TOLERANCE)


def test_local_engine_out_resumes_after_a_cut_off_line(archive, tiny_litert_dir, local_rows, capsys, tmp_path):
    out = tmp_path / "scores.jsonl"
    status, stdout, err = predict(capsys, archive, "--model", tiny_litert_dir, "--out", out)
    assert status == 1 and not stdout and summary_images(err) == len(local_rows)
    assert json_lines(out.read_text()) == local_rows
    text = out.read_text()
    out.write_text(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1])  # a run stopped mid-line
    status, _, err = predict(capsys, archive, "--model", tiny_litert_dir, "--out", out)
    assert summary_images(err) == 1  # the cut-off row again, nothing else
    assert json_lines(out.read_text()) == local_rows
    status, _, err = predict(capsys, archive, "--model", tiny_litert_dir, "--out", out)
    assert status == 0 and summary_images(err) == 0


def out_paths(out: Path) -> list[str]:
    """The path column of an --out file or folder, in its order."""
    if out.suffix == ".jsonl":
        return [r["path"] for r in json_lines(out.read_text())]
    if out.suffix == ".csv":
        return [r["path"] for r in csv.DictReader(out.read_text().splitlines())]
    return pytest.importorskip("pyarrow.parquet").read_table(out).column("path").to_pylist()


def test_rows_follow_the_inputs_in_every_format(archive, tiny_litert_dir, capsys, tmp_path):
    """One row per input, in input order: a folder's files sorted in its place, error rows in place (a missing
    file, broken files), on stdout (JSON lines and CSV) and in --out .jsonl, .csv and .parquet; a resumed --out
    gets the inputs it lacks appended in input order."""
    missing, broken = tmp_path / "missing.jpg", tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    odd = [str(f) for f in sorted((archive / "odd").iterdir())]
    inputs = [archive / "lesion_03.jpg", missing, archive / "odd", broken, archive / "lesion_00.png"]
    expected = [str(inputs[0]), str(missing), *odd, str(broken), str(inputs[4])]
    model = ("--model", tiny_litert_dir)

    status, out, err = predict(capsys, *inputs, *model)
    assert status == 1 and summary_images(err) == len(expected)
    rows = json_lines(out)
    assert [r["path"] for r in rows] == expected
    assert rows[1]["error"] == f"{missing}: no such file" and rows[-2]["error"].startswith("broken.jpg: ")
    assert "label" in rows[0] and "label" in rows[-1]
    assert any("error" in r for r in rows[2:-2]) and any("label" in r for r in rows[2:-2])  # odd: both kinds
    status, out, _ = predict(capsys, *inputs, *model, "--format", "csv")
    table = list(csv.DictReader(out.splitlines()))
    assert [r["path"] for r in table] == expected
    assert [bool(r["error"]) for r in table] == ["error" in r for r in rows]

    for suffix in (".jsonl", ".csv", ".parquet"):
        fresh, resumed = tmp_path / f"fresh{suffix}", tmp_path / f"resumed{suffix}"
        status, out, err = predict(capsys, *inputs, *model, "--out", fresh)
        assert status == 1 and not out and out_paths(fresh) == expected, suffix
        predict(capsys, archive / "odd", inputs[4], *model, "--out", resumed)
        status, _, err = predict(capsys, *inputs, *model, "--out", resumed)
        assert summary_images(err) == 3, (suffix, err)  # lesion_03, missing.jpg, broken.jpg
        assert out_paths(resumed) == [*odd, str(inputs[4]), str(inputs[0]), str(missing), str(broken)], suffix
    assert json_lines((tmp_path / "fresh.jsonl").read_text()) == rows


def test_out_csv_keeps_its_columns_and_other_misuse_is_an_error(archive, tiny_litert_dir, capsys, tmp_path):
    out = tmp_path / "scores.csv"
    status, _, _ = predict(capsys, archive / "odd", "--model", tiny_litert_dir, "--out", out, "--top-k", "2")
    assert status == 1 and out.read_text().startswith("path,label,decision_note,top1_code,top1_probability,top2_code,")
    for argv, message in [
        (["--out", out, "--top-k", "3"], "has other columns"),
        (["--out", tmp_path / "scores.txt"], "must end in .jsonl, .csv, .parquet"),
        (["--out", tmp_path / "x.jsonl", "--format", "csv"], "--format csv is for stdout"),
        (["--address", "auto"], "options of --engine ray"),
        (["--engine", "ray", "--tta"], "--engine local only"),
        (["--engine", "ray", "--address", "auto", "--num-cpus", "1"], "sizes a local Ray"),
    ]:
        status, stdout, err = predict(capsys, archive / "odd", "--model", tiny_litert_dir, *argv)
        assert status == 2 and not stdout and err.strip().splitlines()[-1].startswith("error: "), argv
        assert message in err, (argv, err)


def test_local_engine_writes_parquet_without_tensorflow(archive, tiny_litert_dir, tmp_path):
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    report = "import sys; from classifier.cli import main; status = main(sys.argv[1:]); print(status, " \
             "'tensorflow' in sys.modules)"
    out = tmp_path / "odd.parquet"
    done = subprocess.run([sys.executable, "-c", report, "predict", str(archive / "odd"), "--model",
                           str(tiny_litert_dir), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["1", "False"], done.stderr  # some files fail; the serving path has no TensorFlow
    rows = pyarrow_parquet.read_table(out).to_pylist()
    files = sorted((archive / "odd").iterdir())
    assert [row["path"] for row in rows] == [str(f) for f in files]
    assert all((row["label"] is None) == (row["error"] is not None) for row in rows)
    assert all(abs(sum(row[f"probability_{c}"] for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")) - 1)
               < 1e-3 for row in rows if row["label"])


def test_missing_ray_is_a_clear_error(archive, tiny_litert_dir):
    hide_ray = ("import sys; sys.modules['ray'] = None; from classifier.cli import main; "
                "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", hide_ray, "predict", str(archive), "--engine", "ray", "--model",
                           str(tiny_litert_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.strip() == ("error: --engine ray needs Ray, which is not installed: "
                                   "pip install -r requirements-scale.txt")


@pytest.mark.slow
def test_cli_starts_and_stops_its_own_ray(archive, tiny_litert_dir, local_rows):
    """No --address and no RAY_ADDRESS: the command starts a local Ray, uses it and shuts it down."""
    ray_or_skip()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "classifier", "predict", str(archive / "odd"), "--engine", "ray",
                           "--num-cpus", "1", "--model", str(tiny_litert_dir)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr
    expected = [r for r in local_rows if Path(r["path"]).parent.name == "odd"]
    assert_close(expected, json_lines(done.stdout))
    assert "Ray start-up" in done.stderr.splitlines()[-1]


def test_score_on_ray_refuses_two_contexts_for_one_file(archive):
    """The actors look contexts up by file, so one file given twice with two contexts is refused (before Ray)."""
    from classifier.context import PatientContext
    from classifier.scale import local_inputs, score_on_ray

    path = archive / "lesion_01.jpg"
    with pytest.raises(ArgumentError, match="given more than once, with different contexts"):
        score_on_ray(local_inputs([path, path]), print, None, None, contexts=[PatientContext(age=40.0), None])
