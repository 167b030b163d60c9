"""Command-line entry point: each command lives in its own module under ``classifier.commands``.

Exit status: 0 done; 1 some files failed (each has its own error line); 2 a usage, input, data or model error
(``error: ...`` on stderr: a command's own checks, or any ClassifierError, printed here); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from classifier.errors import ClassifierError

COMMANDS = {
    "predict": "classify images and print JSON or CSV",
    "train": "train a model and write the model folder",
    "export": "write a model folder from a training run or a model.keras (LiteRT, calibration, card)",
    "evaluate": "measure a model on the test split or a labelled folder",
    "describe": "describe the HAM10000 data set (age, sex, sites, confirmation)",
    "examples": "fetch the example images listed in examples/manifest.csv",
    "publish": "upload the model folder to a Hugging Face Hub model repo",
    "bench": "measure latency, throughput, cold start and memory",
}


# Installed by requirements-train.txt only: training, export, the Keras runtime and the report figures.
TRAINING_MODULES = {"tensorflow", "keras", "matplotlib", "sklearn"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classifier", description="HAM10000 skin-lesion classifier "
                                     "(research demo; no clinical or diagnostic value)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"classifier.commands.{name}")
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args) or 0
    except ClassifierError as exc:  # bad images, data, model folders and model sources
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in TRAINING_MODULES:
            raise
        print(f"error: `{args.command}` needs {exc.name}, which the demo install leaves out: "
              "pip install -r requirements-train.txt", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
