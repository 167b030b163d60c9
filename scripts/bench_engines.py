"""The two predict engines over the same images: images/s, Ray's start-up, the rows compared, a scaling estimate.

    .venv/bin/python -m scripts.bench_engines [--images DIR] [--model SOURCE] [--repeats 3] [--cpus 1,2]
                                              [--copies 1,10] [--node-cores 16]

Runs the local engine (all CPUs of this machine) and the Ray engine (a local Ray of each ``--cpus`` count, started
and shut down for every run) in turn, ``--repeats`` times each, over the JPEGs of ``--images`` (default: the
600x450 HAM10000 copy, 206 images here) repeated each of ``--copies`` times, with the code of ``python -m
classifier predict``. The rate once running is (extra images) / (extra scoring time) between the longest and the
shortest run, so that start-up costs drop out. Prints Markdown tables (medians), then the figures as JSON. The
figures are only as fair as the machine is idle: the load average is printed; close CPU-heavy programs first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from classifier.data import HAM_DIR
from classifier.errors import ArgumentError, exit_status
from classifier.model_options import add_model_arguments

DEFAULT_IMAGES = HAM_DIR / "images_600x450"
ARCHIVE = 1_000_000
NODES = (1, 4, 16, 64)


class Rows:
    """A writer that keeps the records in memory."""

    def __init__(self):
        self.records = []

    def write(self, record: dict) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass


def compare(local: list[dict], ray: list[dict]) -> dict:
    """Whether both engines gave the same rows: paths in order, labels, errors, largest probability difference."""
    pairs = list(zip(local, ray, strict=False))
    return {
        "rows_local": len(local),
        "rows_ray": len(ray),
        "same_paths_in_order": [r["path"] for r in local] == [r["path"] for r in ray],
        "same_label_or_error": sum(a.get("label") == b.get("label") and a.get("error") == b.get("error")
                                   for a, b in pairs),
        "max_probability_difference": max((abs(a["probabilities"][c] - b["probabilities"][c]) for a, b in pairs
                                           if "probabilities" in a and "probabilities" in b
                                           for c in a["probabilities"]), default=0.0),
    }


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def marginal_rate(figures: dict) -> float | None:
    """Images/s once running: the extra images of the longest run over its extra scoring time against the
    shortest run (what start-up, actor starts and model loads cost drops out)."""
    sizes = sorted(figures, key=int)
    if len(sizes) < 2:
        return None
    small, large = figures[sizes[0]], figures[sizes[-1]]
    if large["scoring_s"] <= small["scoring_s"]:
        return None
    return round((int(sizes[-1]) - int(sizes[0])) / (large["scoring_s"] - small["scoring_s"]), 1)


def bench(images: Path, model: str | None, repeats: int, cpu_counts: list[int], copies: list[int],
          log=print) -> dict:
    """Both engines, ``repeats`` times, over the images repeated each of ``copies`` times (Ray once per CPU count):
    medians per engine, CPU count and number of inputs, and the rows of the two engines compared."""
    from classifier.api import load_classifier
    from classifier.commands.predict import Overlays, image_paths, score_local
    from classifier.scale import local_inputs, ray_available, score_on_ray

    if not ray_available():
        raise SystemExit("error: Ray is not installed: pip install -r requirements-scale.txt")
    paths = image_paths([images])
    if not paths:
        raise SystemExit(f"error: no images in {images}")
    classifier = load_classifier(model)
    source = str(classifier.source.path)
    load_before = os.getloadavg()[0]
    log(f"{len(paths)} images from {images} (x {copies}); model {source}; {os.cpu_count()} CPUs here; Ray runs "
        f"with {cpu_counts} CPUs; load average {load_before:.2f}")
    runs = {}  # (engine, cpus, inputs) -> [(EngineRun, whole seconds)]
    rows = {}
    for repeat in range(1, repeats + 1):
        for k in copies:
            batch = paths * k
            local = Rows()
            run = score_local(classifier, batch, local, top_k=3, tta=False, heatmap=False, overlays=Overlays(None))
            runs.setdefault(("local", os.cpu_count(), len(batch)), []).append((run, run.seconds))
            log(f"[{repeat}/{repeats}] local, {len(batch)} inputs: {run.summary()}")
            for cpus in cpu_counts:
                ray = Rows()
                started = time.perf_counter()
                run = score_on_ray(local_inputs(batch), ray.write, source, None, top_k=3, num_cpus=cpus)
                whole = time.perf_counter() - started  # start-up and shut-down included
                runs.setdefault(("ray", cpus, len(batch)), []).append((run, whole))
                log(f"[{repeat}/{repeats}] ray, {cpus} CPUs, {len(batch)} inputs: {run.summary()}; first rows "
                    f"after {run.first_row_seconds:.2f} s; {whole:.2f} s in all")
                rows[len(batch)] = compare(local.records, ray.records)
    figures = {}
    for (engine, cpus, inputs), done in runs.items():
        figures.setdefault(engine, {}).setdefault(str(cpus), {})[str(inputs)] = {
            "images_per_s": median(r.images_per_second for r, _ in done),
            "scoring_s": median(r.seconds for r, _ in done),
            "startup_s": median(r.startup_seconds for r, _ in done),
            "first_row_s": median(r.first_row_seconds for r, _ in done),
            "whole_run_s": median(w for _, w in done),
        }
    for engine in figures.values():
        for by_inputs in engine.values():
            by_inputs["marginal_images_per_s"] = marginal_rate(dict(by_inputs))
    return {"images": len(paths), "copies": copies, "cpus_here": os.cpu_count(), "repeats": repeats,
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
            "figures": figures, "rows": rows}


def table(results: dict, node_cores: int = 16) -> str:
    """Markdown: both engines over the images once, the rates once running, the estimate on paper."""
    r = results
    local = next(iter(r["figures"]["local"].values()))
    ray = r["figures"]["ray"]
    once = str(r["images"] * min(r["copies"]))
    counts = sorted(ray, key=int)
    lines = [f"| {once} inputs | local engine ({r['cpus_here']} CPUs) | "
             + " | ".join(f"Ray, {n} CPUs" for n in counts) + " |",
             "| --- | --- |" + " --- |" * len(counts),
             f"| images/s, whole scoring | {local[once]['images_per_s']} | "
             + " | ".join(str(ray[n][once]["images_per_s"]) for n in counts) + " |",
             "| images/s once running (marginal) | " + str(local["marginal_images_per_s"]) + " | "
             + " | ".join(str(ray[n]["marginal_images_per_s"]) for n in counts) + " |",
             "| Ray start-up (`ray.init`), s | | " + " | ".join(str(ray[n][once]["startup_s"]) for n in counts) + " |",
             "| then to the first row (actors, model loads), s | | "
             + " | ".join(str(ray[n][once]["first_row_s"]) for n in counts) + " |",
             "| whole Ray run (start, scoring, shut-down), s | | "
             + " | ".join(str(ray[n][once]["whole_run_s"]) for n in counts) + " |"]
    top = counts[-1]
    rate = ray[top]["marginal_images_per_s"] or ray[top][once]["images_per_s"]
    per_core = rate / int(top)
    lines += ["", f"On paper: {per_core:.0f} images/s per core (Ray once running, {top} CPUs) x cores, "
              f"{node_cores}-core nodes, linear scaling assumed:", "",
              "| nodes | cores | images/s | hours for 1M images |", "| --- | --- | --- | --- |"]
    for nodes in NODES:
        total = per_core * node_cores * nodes
        lines.append(f"| {nodes} | {nodes * node_cores} | {total:,.0f} | {ARCHIVE / total / 3600:.2f} |")
    lines.append("")
    for inputs, rows in r["rows"].items():
        lines.append(f"Rows over {inputs} inputs: {rows['rows_ray']} from Ray, {rows['rows_local']} local; same "
                     f"paths in order: {rows['same_paths_in_order']}; same label or error: "
                     f"{rows['same_label_or_error']}; largest probability difference "
                     f"{rows['max_probability_difference']:.1e}.")
    lines.append(f"Load average before/after: {r['load_average_before']}/{r['load_average_after']}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of images (default: %(default)s)")
    add_model_arguments(parser, revision=False, runtime=False)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each engine (default: 3)")
    parser.add_argument("--cpus", default=str(os.cpu_count() or 1),
                        help="comma-separated CPU counts of the local Ray (default: all, %(default)s)")
    parser.add_argument("--copies", default="1,10",
                        help="comma-separated: score the images this many times over, each (default: %(default)s; "
                        "the rate once running compares the longest with the shortest)")
    parser.add_argument("--node-cores", type=int, default=16, help="cores per node of the estimate (default: 16)")
    args = parser.parse_args(argv)
    try:
        cpu_counts = sorted({int(n) for n in args.cpus.split(",")})
        copies = sorted({int(n) for n in args.copies.split(",")})
    except ValueError:
        cpu_counts = copies = []
    if not cpu_counts or not copies or min(cpu_counts + copies) < 1 or args.repeats < 1:
        raise ArgumentError("--cpus and --copies take counts of at least 1 (e.g. 1,2); --repeats at least 1")
    if not args.images.is_dir():
        raise ArgumentError(f"--images {args.images} is not a folder")
    results = bench(args.images, args.model, args.repeats, cpu_counts, copies,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(results, args.node_cores))
    print(json.dumps(results))
    same = all(r["same_paths_in_order"] and r["same_label_or_error"] == r["rows_local"] == r["rows_ray"]
               for r in results["rows"].values())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(exit_status(main))
