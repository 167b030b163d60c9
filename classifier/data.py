"""Reading HAM10000 from a folder, and the lesion-grouped train/validation/test split."""

from __future__ import annotations

import csv
import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from classifier.errors import ClassifierError
from classifier.labels import CODES
from classifier.preprocessing import IMAGE_SUFFIXES

# Where tests, benchmarks and scripts look for a HAM10000 copy: $HAM10000_DIR, else ../shared/data/ham10000
# beside the checkout (the commands take the folder as --data)
HAM_DIR = Path(os.environ.get("HAM10000_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
SPLIT_SEED = 20181


@dataclass(frozen=True)
class Record:
    image_id: str
    lesion_id: str
    dx: str
    dx_type: str
    age: float | None
    sex: str
    localization: str


class DataError(ClassifierError):
    """The data folder is missing something or holds something the classifier cannot use."""


def find_metadata_csv(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    if data_dir.is_file():
        return data_dir
    preferred = data_dir / "HAM10000_metadata.csv"
    if preferred.is_file():
        return preferred
    found = sorted(data_dir.rglob("*metadata*.csv"))
    if not found:
        raise DataError(f"{data_dir}: no HAM10000_metadata.csv (or *metadata*.csv) found")
    return found[0]


def read_metadata(data_dir: Path) -> list[Record]:
    """Rows of the metadata CSV; unknown diagnoses are an error naming the row."""
    path = find_metadata_csv(data_dir)
    records = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image_id", "dx"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            dx = row["dx"].strip()
            if dx not in CODES:
                raise DataError(f"{path}:{line}: unknown diagnosis {dx!r}; expected one of {', '.join(CODES)}")
            age = row.get("age", "").strip()
            records.append(Record(
                image_id=row["image_id"].strip(),
                lesion_id=(row.get("lesion_id") or row["image_id"]).strip(),
                dx=dx,
                dx_type=row.get("dx_type", "").strip(),
                age=float(age) if age else None,
                sex=row.get("sex", "").strip() or "unknown",
                localization=row.get("localization", "").strip() or "unknown",
            ))
    return records


def find_images(folder: Path) -> dict[str, Path]:
    """Map image id (file stem) to file, searching ``folder`` recursively.

    Works for Kaggle's ``HAM10000_images_part_1/2``, a single folder, or several resolutions side
    by side; when an id occurs more than once, the largest file (the most detail) wins.
    """
    images: dict[str, Path] = {}
    for path in Path(folder).rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            current = images.get(path.stem)
            if current is None or (path.stat().st_size, str(path)) > (current.stat().st_size, str(current)):
                images[path.stem] = path
    return images


def resolve_images(records: list[Record], folder: Path) -> dict[str, Path]:
    """Image file of every record; a clear error listing ids whose image is missing."""
    images = find_images(folder)
    missing = [r.image_id for r in records if r.image_id not in images]
    if missing:
        raise DataError(
            f"{folder}: {len(missing)} image(s) listed in the metadata are missing, e.g. {', '.join(missing[:5])}"
        )
    return {r.image_id: images[r.image_id] for r in records}


def lesion_split(records: list[Record], seed: int = SPLIT_SEED) -> dict[str, str]:
    """Assign every image to train/val/test so that no lesion is on two sides.

    Lesions are shuffled deterministically within each diagnosis and dealt to whichever split is
    furthest below its share of that diagnosis's images, so the split is stratified by dx as far
    as grouping allows.
    """
    images_by_lesion: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        images_by_lesion[r.lesion_id].append(r)
    lesions_by_dx: dict[str, list[str]] = defaultdict(list)
    for lesion, rows in sorted(images_by_lesion.items()):
        dx = Counter(r.dx for r in rows).most_common(1)[0][0]
        lesions_by_dx[dx].append(lesion)
    rng = random.Random(seed)
    assignment: dict[str, str] = {}
    for dx in sorted(lesions_by_dx):
        lesions = lesions_by_dx[dx]
        rng.shuffle(lesions)
        total = sum(len(images_by_lesion[lesion]) for lesion in lesions)
        taken = dict.fromkeys(SPLITS, 0)
        for lesion in lesions:
            split = max(SPLITS, key=lambda s: SPLIT_FRACTIONS[s] * total - taken[s])
            for r in images_by_lesion[lesion]:
                assignment[r.image_id] = split
            taken[split] += len(images_by_lesion[lesion])
    return assignment


def save_split(assignment: dict[str, str], path: Path, seed: int = SPLIT_SEED) -> None:
    split_ids = {s: sorted(i for i, v in assignment.items() if v == s) for s in SPLITS}
    doc = {"grouped_by": "lesion_id", "stratified_by": "dx", "seed": seed, "fractions": SPLIT_FRACTIONS, **split_ids}
    Path(path).write_text(json.dumps(doc, indent=0) + "\n")


def load_split(path: Path | None) -> dict[str, str]:
    """Image id -> split, from a split.json (``None``: a model folder without one, which is a DataError: the
    measurements that need the model's own split cannot run on it)."""
    if path is None:
        raise DataError("this model folder has no split.json, so its training/validation/test split is unknown")
    doc = json.loads(Path(path).read_text())
    return {image_id: s for s in SPLITS for image_id in doc.get(s, [])}


def in_split(records: list[Record], split: dict[str, str], name: str) -> list[Record]:
    """The records that ``split`` (image id -> 'train' / 'val' / 'test') assigns to ``name``, in their order."""
    return [r for r in records if split.get(r.image_id) == name]
