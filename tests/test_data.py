"""Reading HAM10000 and the lesion-grouped split."""

import csv
from collections import Counter

import pytest
from PIL import Image

from classifier.data import (
    DataError,
    find_images,
    in_split,
    lesion_split,
    load_split,
    read_metadata,
    resolve_images,
    save_split,
)

FIELDS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def write_metadata(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        writer.writerows(rows)


def generated_rows(n_lesions=300):
    rows, codes = [], ["nv"] * 6 + ["mel", "bkl", "bcc", "akiec", "vasc", "df"]
    for lesion in range(n_lesions):
        for k in range(1 + lesion % 3):
            rows.append([f"HAM_{lesion:05d}", f"ISIC_{lesion:05d}{k}", codes[lesion % len(codes)], "histo", "50",
                         "female", "back"])
    return rows


def test_split_keeps_each_lesion_on_one_side_and_is_deterministic(tmp_path):
    write_metadata(tmp_path / "HAM10000_metadata.csv", generated_rows())
    records = read_metadata(tmp_path)
    first, second = lesion_split(records), lesion_split(records)
    assert first == second
    sides = {}
    for r in records:
        sides.setdefault(r.lesion_id, set()).add(first[r.image_id])
    assert all(len(s) == 1 for s in sides.values())
    counts = Counter(first.values())
    assert abs(counts["train"] / len(records) - 0.70) < 0.05
    assert abs(counts["test"] / len(records) - 0.15) < 0.05
    # stratified: every diagnosis with enough lesions is in every split
    by_split = {s: {r.dx for r in records if first[r.image_id] == s} for s in ("train", "val", "test")}
    assert by_split["train"] == by_split["test"] == by_split["val"]


def test_split_round_trips_through_its_file(tmp_path):
    write_metadata(tmp_path / "HAM10000_metadata.csv", generated_rows(30))
    split = lesion_split(read_metadata(tmp_path))
    save_split(split, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json") == split


def test_unknown_diagnosis_names_the_row(tmp_path):
    write_metadata(tmp_path / "m.csv", [["HAM_1", "ISIC_1", "melanoma", "histo", "", "", ""]])
    with pytest.raises(DataError, match=r"m.csv:2: unknown diagnosis 'melanoma'"):
        read_metadata(tmp_path / "m.csv")


def test_missing_metadata_and_images_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no HAM10000_metadata.csv"):
        read_metadata(tmp_path)
    write_metadata(tmp_path / "HAM10000_metadata.csv", [["HAM_1", "ISIC_1", "nv", "histo", "", "", ""]])
    with pytest.raises(DataError, match="1 image.*missing.*ISIC_1"):
        resolve_images(read_metadata(tmp_path), tmp_path)


def test_images_found_in_kaggle_layout_and_the_largest_copy_wins(tmp_path):
    for part, size in (("HAM10000_images_part_1", (60, 45)), ("HAM10000_images_part_2", (600, 450))):
        (tmp_path / part).mkdir()
        Image.new("RGB", size, (200, 150, 140)).save(tmp_path / part / "ISIC_1.jpg")
    Image.new("RGB", (60, 45)).save(tmp_path / "HAM10000_images_part_1" / "ISIC_2.png")
    images = find_images(tmp_path)
    assert images["ISIC_1"].parent.name == "HAM10000_images_part_2"
    assert images["ISIC_2"].suffix == ".png"


def test_real_split_has_no_lesion_on_two_sides(ham_dir):
    records = read_metadata(ham_dir)
    split = lesion_split(records)
    assert len(records) == 10015
    sides = {}
    for r in records:
        sides.setdefault(r.lesion_id, set()).add(split[r.image_id])
    assert len(sides) == 7470 and all(len(s) == 1 for s in sides.values())
    # the byte-identical pairs named in the data set's README share a lesion, so a side
    for a, b in (("ISIC_0024777", "ISIC_0029938"), ("ISIC_0024366", "ISIC_0029861")):
        assert split[a] == split[b]


def test_in_split_keeps_the_records_of_one_side_in_their_order(tmp_path):
    write_metadata(tmp_path / "HAM10000_metadata.csv", generated_rows(60))
    records = read_metadata(tmp_path)
    split = lesion_split(records)
    parts = {name: in_split(records, split, name) for name in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(records)
    for name, part in parts.items():
        assert part and all(split[r.image_id] == name for r in part)
        assert [records.index(r) for r in part] == sorted(records.index(r) for r in part)
    assert in_split(records, {}, "train") == []  # an image the split does not name is on no side


def test_a_model_without_a_split_file_is_a_clear_error():
    with pytest.raises(DataError, match="no split.json"):
        load_split(None)
