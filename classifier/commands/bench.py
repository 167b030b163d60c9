"""``python -m classifier bench``: the model's own speed beside naive Keras. The demo timed end to end through its
server is ``python -m scripts.bench_e2e`` (it starts ``app.py``, so it lives outside the package)."""

import sys
from pathlib import Path

from classifier.errors import ArgumentError, ClassifierError, MissingPackage
from classifier.model_options import add_model_arguments


def add_arguments(p):
    add_model_arguments(p, revision=False, runtime=False)  # it compares runtimes, on a folder or repo id
    p.add_argument("--images", type=Path, help="folder of JPEGs (default: the HAM10000 600x450 copy if present, "
                   "else generated 600x450 JPEGs)")
    p.add_argument("--runs", type=int, default=100, help="timed single-image runs (default: 100)")
    p.add_argument("--cold-runs", type=int, default=3, help="new processes per cold-start measurement (default: 3)")
    p.add_argument("--max-images", type=int, default=256, help="at most this many images from --images")
    p.add_argument("--write", action="store_true",
                   help="store the model part's figures in the model folder's config and card")
    p.add_argument("--part", choices=("model",), default="model",
                   help="model (the only part here; kept so that older commands still run): serving vs naive Keras. "
                        "The demo end to end: python -m scripts.bench_e2e")


def run(args):
    import json

    from classifier.evaluation.benchmark import bench, table

    if args.runs < 1 or args.cold_runs < 1 or args.max_images < 1:
        raise ArgumentError("--runs, --cold-runs and --max-images must be at least 1")
    if args.images is not None and not args.images.is_dir():
        raise ArgumentError(f"--images {args.images} is not a folder")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    try:
        results = bench(args.model, args.images, args.runs, args.cold_runs, args.max_images, log=log)
    except ImportError as exc:  # Keras or LiteRT missing
        raise MissingPackage(str(exc)) from exc
    except RuntimeError as exc:  # a cold-start child that failed
        raise ClassifierError(str(exc)) from exc
    print(table(results))
    print(json.dumps(results))
    if args.write:  # the figures into the benchmarked folder's config.json and card
        from dataclasses import replace

        from classifier.documents.card import write_model_card
        from classifier.evaluation.benchmark import latency_figures
        from classifier.model_folder import read_config, write_config

        config = read_config(Path(results["model"]))
        config = config.with_sections(metrics=replace(config.metrics, latency=latency_figures(results)))
        write_config(config)
        write_model_card(config)
    return 0
