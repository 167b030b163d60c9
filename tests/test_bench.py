"""``python -m classifier bench``: the model's own speed beside naive Keras, and ``--write`` into the folder."""

from __future__ import annotations

import json
import shutil

import pytest

from classifier import cli
from classifier.model_folder import read_config

pytestmark = pytest.mark.slow  # naive Keras needs TensorFlow; cold starts are new processes


def test_bench_measures_serving_and_naive_keras_and_writes_the_figures(tiny_litert_dir, tmp_path, capsys):
    folder = shutil.copytree(tiny_litert_dir, tmp_path / "model")
    assert cli.main(["bench", "--model", str(folder), "--runs", "3", "--cold-runs", "1", "--max-images", "4",
                     "--write"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    results = json.loads(out[-1])
    assert results["images"] == 4 and results["views"] == 8
    assert results["serving"]["single"]["p50_ms"] > 0 and results["naive"]["single"]["p50_ms"] > 0
    assert results["top_class_agreement"] == 1.0  # the float32 graph of the same model.keras
    assert not results["serving"]["cold_start"]["tensorflow_imported"]
    assert set(results["targets"]) >= {"p50_ms <= 35", "serving does not import TensorFlow"}
    latency = read_config(folder).metrics.latency
    assert latency["p50_ms"] == results["serving"]["single"]["p50_ms"] and latency["images"] == 4
    assert "## Speed" in (folder / "README.md").read_text()
