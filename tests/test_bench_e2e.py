"""``python -m scripts.bench_e2e``: the demo timed through gradio_client, and where the time goes."""

from __future__ import annotations

import argparse

import pytest

from classifier.commands import bench as command
from classifier.errors import exit_status
from classifier.evaluation.benchmark import generate_images
from scripts import bench_e2e

pytestmark = pytest.mark.slow


def test_end_to_end_figures_and_their_breakdown(tiny_litert_dir, tmp_path):
    runs = 4
    results = bench_e2e.run_e2e(tiny_litert_dir, generate_images(tmp_path, 3), runs=runs, concurrency=2,
                                log=lambda message: None)
    for endpoint in bench_e2e.ENDPOINTS:
        measured = results["end_to_end"][endpoint]
        server = measured["server"]
        assert measured["runs"] == runs and server["requests"] == runs  # the profiler saw exactly our requests
        assert 0 < measured["p50_ms"] <= measured["p95_ms"]
        # The client waits for the server: end to end is longer than the server's share, which holds the handler.
        assert measured["p50_ms"] > server["total_p50_ms"] >= server["fn_call_p50_ms"] > 0
        assert server["upload_p50_ms"] is not None
    assert results["floor"]["server"]["requests"] == runs and results["floor"]["p50_ms"] > 0
    assert results["model_alone"]["p50_ms"] > 0 and set(results["handlers"]) == set(bench_e2e.ENDPOINTS)
    assert set(results["targets"]) == {f"{e} p50 <= 80 ms" for e in bench_e2e.ENDPOINTS}

    text = bench_e2e.table(results)
    assert "/classify end to end" in text and "Gradio floor" in text and "where the median goes" in text
    assert f"{results['end_to_end']['/classify']['p50_ms']:g}" in text


def test_bench_command_checks_its_arguments(capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert exit_status(command.run, parser.parse_args(["--runs", "0"])) == 2
    assert "--runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--part", "e2e"])  # the demo end to end is scripts/bench_e2e.py now
    assert bench_e2e.main(["--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err
