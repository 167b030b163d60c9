"""Train on a lent GPU machine (Keras 3 on JAX; no TensorFlow there) and bring the run back to export it here.

The device tool sends the working tree, 64 MiB at most with what is carried: the tracked files take about half,
so the data travels as 150x150 centre squares (what `prepare` makes of a 200x150 image) re-encoded as JPEG at
quality 60 (about 59 MiB in all). The ImageNet weights' wheel would not fit as well: start from the shipped
model (`--init-from model/model.keras`, tracked, so it travels) or from scratch. Files come back 16 MiB at most
each, so the last epochs' weights come back as float16 npz. Checked end to end on the CPU here (Keras on JAX
without TensorFlow, then `unpack` and `export`), not yet on a GPU machine.

    python -m scripts.gpu_run pack --data ../shared/data/ham10000      # here: .gpu/ (data, split, wheels)
    # device run, carry [".gpu"], command:
    #   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && \\
    #   PYTHONPATH=/tmp/site:. KERAS_BACKEND=jax python3 -m scripts.gpu_run train --out $OUT -- --epochs 8 \\
    #     --size 224 --augment gentle --optimizer adamw --schedule constant --lr 1e-4 --label-smoothing 0.1 \\
    #     --init-from model/model.keras
    python -m scripts.gpu_run unpack --files DEVICE_FILES_FOLDER --work runs/gpu   # here: a run `export` reads
    python -m classifier export --work runs/gpu --data ../shared/data/ham10000 --out runs/gpu/model --average-last 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from classifier.errors import ClassifierError
from classifier.labels import CODES

ROOT = Path(__file__).resolve().parent.parent

PACKED = ROOT / ".gpu"
WHEELS = ("keras==3.15.1", "namex==0.1.0", "optree==0.20.0")  # what the H200 image lacks (device KINDS.md)
TRAVEL_LIMIT = 64 * 2**20
KEEP_EPOCHS = 6  # files come back 8 at most: the last epochs' weights, state.json and history.jsonl


def pack(data: Path, quality: int, split: Path) -> int:
    from PIL import Image

    from classifier.data import read_metadata, resolve_images
    from classifier.preprocessing import load_image, prepare

    records = read_metadata(data)
    paths = resolve_images(records, data)
    out = PACKED / "data" / "images"
    if PACKED.exists():
        shutil.rmtree(PACKED)
    out.mkdir(parents=True)
    small = {p.stem: p for p in (data / "images_200x150").glob("*.jpg")}
    for record in records:
        square = prepare(load_image(small.get(record.image_id, paths[record.image_id])), 150)
        Image.fromarray(square).save(out / f"{record.image_id}.jpg", quality=quality)
    metadata = next(p for p in data.glob("*.csv") if "metadata" in p.name.lower())
    shutil.copy(metadata, PACKED / "data" / metadata.name)
    shutil.copy(split, PACKED / "split.json")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                    "-d", str(PACKED / "whl"), *WHEELS], check=True)
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.parent.is_dir() and "/.gpu/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write("/.gpu/\n")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    names = [ROOT / name for name in tracked.decode().split("\0") if name]
    size = sum(path.stat().st_size for path in names if path.is_file())
    size += sum(p.stat().st_size for p in PACKED.rglob("*") if p.is_file())
    print(f"{len(records)} images packed; the working tree that travels with .gpu: {size / 2**20:.1f} MiB "
          f"(limit {TRAVEL_LIMIT / 2**20:.0f})")
    return 0 if size <= TRAVEL_LIMIT else 1


def train_there(out: Path, train_args: list[str]) -> int:
    """On the GPU machine: train from the packed data with the split of here, then save what comes back."""
    import keras

    from classifier import cli
    from classifier.training.network import build_classifier

    work = Path("/tmp/gpu_run")
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(PACKED / "split.json", work / "split.json")
    code = cli.main(["train", "--data", str(PACKED / "data"), "--work", str(work), "--out", str(work / "model"),
                     *train_args])
    state = json.loads((work / "state.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    model = build_classifier(state["settings"]["backbone"], None, len(CODES), imagenet=False)
    for epoch in range(max(1, state["epoch"] - KEEP_EPOCHS + 1), state["epoch"] + 1):
        model.load_weights(work / f"epoch{epoch}.weights.h5")
        np.savez_compressed(out / f"epoch{epoch}.npz", *[w.astype(np.float16) for w in model.get_weights()])
    for name in ("state.json", "history.jsonl"):
        shutil.copy(work / name, out / name)
    print(f"backend {keras.backend.backend()}; epochs {state['epoch']}; files in {out}")
    return code or 0


def unpack(files: Path, work: Path) -> int:
    """Here: float16 npz epochs back into weights files, with the run's state and history, for `export`."""
    from classifier.training.network import build_classifier

    state = json.loads((files / "state.json").read_text())
    work.mkdir(parents=True, exist_ok=True)
    model = build_classifier(state["settings"]["backbone"], None, len(CODES), imagenet=False)
    for npz in sorted(files.glob("epoch*.npz")):
        arrays = np.load(npz)
        model.set_weights([arrays[f"arr_{i}"].astype(np.float32) for i in range(len(arrays.files))])
        model.save_weights(work / f"{npz.stem}.weights.h5")
    shutil.copy(files / "history.jsonl", work / "history.jsonl")
    shutil.copy(PACKED / "split.json" if (PACKED / "split.json").exists() else ROOT / "model" / "split.json",
                work / "split.json")
    best = work / f"epoch{state['best_epoch']}.weights.h5"
    shutil.copy(best if best.exists() else work / f"epoch{state['epoch']}.weights.h5", work / "best.weights.h5")
    (work / "state.json").write_text(json.dumps(state, indent=1))
    print(f"run in {work}: export it with python -m classifier export --work {work} --data DATA --out MODEL "
          "--average-last N")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("pack", help="here: data, split and wheels into .gpu/")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, default=ROOT / "model" / "split.json")
    p.add_argument("--quality", type=int, default=60, help="JPEG quality (60: about 59 MiB travel in all)")
    p = sub.add_parser("train", help="on the GPU machine: `train` on the packed data, weights into --out")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: the arguments of `classifier train`")
    p = sub.add_parser("unpack", help="here: the files that came back into a run folder for `export`")
    p.add_argument("--files", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.step == "pack":
        try:
            return pack(args.data, args.quality, args.split)
        except (ClassifierError, FileNotFoundError) as exc:
            parser.error(str(exc))
    if args.step == "train":
        return train_there(args.out, [a for a in args.train_args if a != "--"])
    if not (args.files / "state.json").is_file():
        parser.error(f"{args.files}: no state.json: not the files of a `gpu_run.py train`")
    return unpack(args.files, args.work)


if __name__ == "__main__":
    raise SystemExit(main())
