"""Command-line entry point: each command lives in its own module under ``classifier.commands``.

Exit status (``classifier.errors.exit_status``, the one mapping): 0 done; 1 some files failed (each has its own
error line); 2 a usage, input, data or model error (``error: ...`` on stderr: any ClassifierError, a command's
own checks included, which raise ArgumentError); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib

from classifier.errors import exit_status

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
    return exit_status(modules[args.command].run, args, name=f"`{args.command}`")
