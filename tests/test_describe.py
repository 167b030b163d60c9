"""The data set description: exact numbers on a tiny CSV, and the published counts on the real data."""

import argparse
import json

import pytest

from classifier.commands import describe as command
from classifier.data import read_metadata, save_split
from classifier.documents.dataset_summary import age_summary, describe, describe_records
from tests.conftest import HAM_DIR

HAM = HAM_DIR  # ../shared or HAM10000_DIR, as every test reads it
CSV = """lesion_id,image_id,dx,dx_type,age,sex,localization
L1,I1,nv,follow_up,40.0,male,back
L1,I2,nv,follow_up,40.0,male,back
L2,I3,mel,histo,60.0,female,face
L3,I4,bkl,consensus,,,trunk
L4,I5,bkl,confocal,70.0,female,trunk
L5,I6,nv,histo,30.0,male,back
"""


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "HAM10000_metadata.csv").write_text(CSV)
    return folder


def test_numbers(data_dir):
    stats = describe_records(read_metadata(data_dir))
    assert (stats["images"], stats["lesions"]) == (6, 5)
    assert stats["images_per_lesion"]["distribution"] == {"1": 4, "2": 1}
    assert stats["age"]["images"] == {"n": 5, "missing": 1, "mean": 48.0, "sd": 16.43, "median": 40.0,
                                      "min": 30.0, "max": 70.0}
    assert stats["age"]["lesions"]["mean"] == 50.0 and stats["age"]["lesions"]["n"] == 4
    assert stats["age_by_dx"]["nv"]["mean"] == 36.67
    assert stats["age_by_dx"]["df"]["n"] == 0 and stats["age_by_dx"]["df"]["mean"] is None
    assert stats["sex"]["images"] == {"male": 3, "female": 2, "unknown": 1}
    assert stats["sex"]["lesions"] == {"male": 2, "female": 2, "unknown": 1}
    assert stats["localization"]["images"] == {"back": 3, "trunk": 2, "face": 1}
    assert stats["dx_type"]["images"] == {"histo": 2, "follow_up": 2, "consensus": 1, "confocal": 1}
    assert stats["dx_type"]["lesions"]["follow_up"] == 1
    assert stats["dx_type_by_dx"]["nv"] == {"histo": 1, "follow_up": 2, "consensus": 0, "confocal": 0}
    assert stats["classes"]["nv"]["images"] == 3 and stats["classes"]["nv"]["lesions"] == 2
    assert stats["classes"]["mel"]["name"] == "Melanoma"


def test_age_summary_empty():
    assert age_summary([None, None]) == {"n": 0, "missing": 2, "mean": None, "sd": None, "median": None,
                                         "min": None, "max": None}


def test_files_and_split(data_dir, tmp_path):
    split = tmp_path / "split.json"
    save_split({"I1": "train", "I2": "train", "I3": "val", "I4": "test"}, split)
    out = tmp_path / "out"
    path = describe(data_dir, out, split)
    assert path == out / "dataset.md"
    for name in ("dataset.md", "dataset.json", "class_frequencies.png", "age_by_sex.png", "body_sites.png",
                 "dx_type_by_dx.png"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["splits"]["train"]["classes"]["nv"] == 2
    assert doc["splits"]["unassigned"]["images"] == 2
    text = path.read_text()
    assert "48.0 ± 16.4" in text and "Melanoma" in text and "histopathology" in text


def test_command_errors(tmp_path, capsys):
    from classifier.cli import main

    assert main(["describe", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no HAM10000_metadata.csv" in err


def test_command_writes(data_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert not command.run(parser.parse_args(["--data", str(data_dir), "--out", str(tmp_path / "o")]))
    assert capsys.readouterr().out.strip() == str(tmp_path / "o" / "dataset.md")


@pytest.mark.skipif(not (HAM / "HAM10000_metadata.csv").is_file(), reason=f"HAM10000 not present at {HAM}")
def test_real_data():
    stats = describe_records(read_metadata(HAM))
    assert (stats["images"], stats["lesions"]) == (10015, 7470)
    assert stats["dx_type"]["images"] == {"histo": 5340, "follow_up": 3704, "consensus": 902, "confocal": 69}
    assert stats["age"]["images"]["missing"] == 57 and stats["sex"]["images"]["unknown"] == 57
    assert stats["classes"]["nv"]["images"] == 6705
