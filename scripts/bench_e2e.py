"""Latency a visitor feels: the demo's endpoints timed end to end through ``gradio_client`` on 127.0.0.1, and
where that time goes.

The app (``app.py``) runs in its own process with Gradio's profiler on (``GRADIO_PROFILING=1``), so its
``/gradio_api/profiling/summary`` reports the server's share of each request: the upload, the wait in the
queue, pre- and postprocessing and the handler itself. The same client against a do-nothing endpoint with the
same upload (``FLOOR_APP``) measures Gradio's own per-request work: the floor no model can go under. Beside
them, in this process: the model alone (``Classifier.classify``) and each handler's work without Gradio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from classifier.errors import ClassifierError
from classifier.evaluation.benchmark import latency, percentiles

ROOT = Path(__file__).resolve().parents[1]  # the repository
ENDPOINTS = ("/classify", "/classify_json")
TARGET_P50_MS = 80.0
# Gradio's floor: the JSON endpoint's signature and upload, and a handler that does nothing.
FLOOR_APP = """
import sys
import gradio as gr
from gradio.data_classes import FileData

def classify_json(image: FileData, top_k: int = 3, tta: bool = False, heatmap_class: str = "predicted") -> dict:
    return {"label": "none"}

with gr.Blocks() as demo:
    gr.api(classify_json, api_name="classify_json")
demo.queue(default_concurrency_limit=int(sys.argv[2]))
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), prevent_thread_lock=False)
"""


def percentiles_ms(seconds: list[float]) -> dict:
    return {**percentiles(seconds), "runs": len(seconds)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(ClassifierError):
    """The app's server exited or did not answer in time; the message holds the end of its log."""


def start_server(command: list[str], port: int, log: Path, timeout: float = 180,
                 profile: bool = True) -> subprocess.Popen:
    """Start a server process (with Gradio's profiler on, unless ``profile`` is False) and wait until its page
    answers; ServerError when it exits or does not answer in time."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "2",
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("GRADIO_PROFILING", None)
    if profile:
        env["GRADIO_PROFILING"] = "1"
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise ServerError(f"server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    stop_server(server)
    raise ServerError(f"server did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(5)


def profiling(url: str, clear: bool = False) -> dict:
    """Gradio's profiling summary of the server at ``url`` (medians in ms), or clear it."""
    request = urllib.request.Request(f"{url}gradio_api/profiling/{'clear' if clear else 'summary'}",
                                     method="POST" if clear else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        summary = json.loads(response.read())
    if clear:
        return {}
    phases = {name: round(values["p50"], 1) for name, values in summary.get("phases", {}).items()}
    upload = summary.get("upload")
    return {"requests": summary.get("count", 0), **{f"{k}_p50_ms": v for k, v in phases.items()},
            "upload_p50_ms": round(upload["p50"], 1) if upload else None}


def time_client(url: str, endpoint: str, paths: list[Path], runs: int, warmup: int = 3) -> dict:
    """p50/p95 of ``Client.predict`` of one image, as the README shows it (files downloaded), one at a time."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, analytics_enabled=False)
    for i in range(warmup):
        client.predict(handle_file(str(paths[i % len(paths)])), 3, False, "predicted", api_name=endpoint)
    profiling(url, clear=True)
    times = []
    for i in range(runs):
        started = time.perf_counter()
        client.predict(handle_file(str(paths[i % len(paths)])), 3, False, "predicted", api_name=endpoint)
        times.append(time.perf_counter() - started)
    return {**percentiles_ms(times), "server": profiling(url)}


def time_in_process(function, paths: list[Path], runs: int) -> dict:
    return {**latency(function, paths, runs), "runs": runs}


def run_e2e(folder: Path, paths: list[Path], runs: int = 100, concurrency: int = 2, log=print) -> dict:
    """Model alone, handlers alone, both endpoints end to end, and Gradio's floor; every figure in ms."""
    from classifier import app_logic as logic
    from classifier.api import Classifier

    classifier = Classifier(folder)
    results = {"model": str(folder), "images": len(paths), "image_folder": str(paths[0].parent), "runs": runs,
               "concurrency": concurrency, "cpus": os.cpu_count()}
    log("in process: the model alone and each handler's work ...")
    results["model_alone"] = time_in_process(classifier.classify, paths, runs)
    results["handlers"] = {
        "/classify": time_in_process(lambda p: logic.show(classifier, {"path": str(p)}), paths, runs),
        "/classify_json": time_in_process(lambda p: logic.classify(classifier, {"path": str(p)}), paths, runs),
    }
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        log(f"starting app.py on 127.0.0.1:{port} (concurrency {concurrency}) ...")
        server = start_server([sys.executable, "app.py", "--model", str(folder), "--host", "127.0.0.1", "--port",
                               str(port), "--concurrency", str(concurrency)], port, Path(tmp) / "app.log")
        try:
            url = f"http://127.0.0.1:{port}/"
            results["end_to_end"] = {}
            for endpoint in ENDPOINTS:
                log(f"gradio_client -> {endpoint}: {runs} requests, one at a time ...")
                results["end_to_end"][endpoint] = time_client(url, endpoint, paths, runs)
        finally:
            stop_server(server)
        port = free_port()
        log("Gradio's floor: a do-nothing endpoint with the same upload ...")
        server = start_server([sys.executable, "-c", FLOOR_APP, str(port), str(concurrency)], port,
                              Path(tmp) / "floor.log")
        try:
            results["floor"] = time_client(f"http://127.0.0.1:{port}/", "/classify_json", paths, runs)
        finally:
            stop_server(server)
    results["targets"] = {f"{e} p50 <= {TARGET_P50_MS:g} ms": results["end_to_end"][e]["p50_ms"] <= TARGET_P50_MS
                          for e in ENDPOINTS}
    return results


def _cell(value) -> str:
    return "-" if value is None else f"{value:g}"


def table(results: dict) -> str:
    """End-to-end figures beside the model's own, then where each endpoint's median goes."""
    e2e, floor, handlers = results["end_to_end"], results["floor"], results["handlers"]
    lines = [f"end to end through gradio_client on 127.0.0.1: {results['images']} JPEGs from "
             f"{results['image_folder']}, {results['runs']} requests each, one at a time, {results['cpus']} CPUs, "
             f"concurrency {results['concurrency']}",
             f"{'':34}{'p50 ms':>9}{'p95 ms':>9}  target",
             f"{'model alone (Classifier.classify)':34}{results['model_alone']['p50_ms']:>9g}"
             f"{results['model_alone']['p95_ms']:>9g}"]
    for endpoint in ENDPOINTS:
        ok = results["targets"][f"{endpoint} p50 <= {TARGET_P50_MS:g} ms"]
        lines.append(f"{endpoint + ' end to end':34}{e2e[endpoint]['p50_ms']:>9g}{e2e[endpoint]['p95_ms']:>9g}  "
                     f"p50 <= {TARGET_P50_MS:g}: {'pass' if ok else 'FAIL'}")
    lines.append(f"{'Gradio floor (do-nothing endpoint)':34}{floor['p50_ms']:>9g}{floor['p95_ms']:>9g}")
    lines += ["", "where the median goes (ms; medians of each part, so the rest is a difference of medians):",
              f"{'':34}{'/classify':>14}{'/classify_json':>16}{'floor':>8}"]
    rows = [("end to end (client)", lambda r, e: r["p50_ms"]),
            ("upload (server)", lambda r, e: r["server"].get("upload_p50_ms")),
            ("wait in queue", lambda r, e: r["server"].get("queue_wait_p50_ms")),
            ("preprocess", lambda r, e: r["server"].get("preprocess_p50_ms")),
            ("handler (Gradio's fn_call)", lambda r, e: r["server"].get("fn_call_p50_ms")),
            ("  of which the model alone", lambda r, e: results["model_alone"]["p50_ms"] if e else 0.0),
            ("  the same handler without Gradio", lambda r, e: handlers[e]["p50_ms"] if e else 0.0),
            ("postprocess (results to files)", lambda r, e: r["server"].get("postprocess_p50_ms")),
            ("rest: HTTP, SSE, client, downloads", lambda r, e: round(
                r["p50_ms"] - (r["server"].get("upload_p50_ms") or 0) - (r["server"].get("queue_wait_p50_ms") or 0)
                - (r["server"].get("total_p50_ms") or 0), 1))]
    for name, value in rows:
        lines.append(f"{name:34}{_cell(value(e2e['/classify'], '/classify')):>14}"
                     f"{_cell(value(e2e['/classify_json'], '/classify_json')):>16}{_cell(value(floor, None)):>8}")
    return "\n".join(lines)


def e2e(source: str | None, images: Path | None, runs: int, concurrency: int, max_images: int, log=print) -> dict:
    """Resolve the model and the images as ``classifier.evaluation.benchmark.bench`` does, then :func:`run_e2e`."""
    from classifier.evaluation.benchmark import on_model_and_images

    return on_model_and_images(source, images, max_images, log,
                               lambda folder, paths: run_e2e(folder, paths, runs, concurrency, log))


def main(argv: list[str] | None = None) -> int:
    """``python -m scripts.bench_e2e [--model M] [--images DIR] [--runs N] [--concurrency C]``: the table, then the
    figures as one JSON line."""
    import argparse

    from classifier.errors import ArgumentError, exit_status

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder or Hub repo id (default: as the app resolves it)")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: the HAM10000 600x450 copy if "
                        "present, else generated 600x450 JPEGs)")
    parser.add_argument("--runs", type=int, default=100, help="timed requests per endpoint (default: 100)")
    parser.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency (default: 2)")
    parser.add_argument("--max-images", type=int, default=256, help="at most this many images from --images")
    args = parser.parse_args(argv)

    def run(args) -> int:
        if args.runs < 1 or args.concurrency < 1 or args.max_images < 1:
            raise ArgumentError("--runs, --concurrency and --max-images must be at least 1")
        results = e2e(args.model, args.images, args.runs, args.concurrency, args.max_images,
                      log=lambda message: print(message, file=sys.stderr, flush=True))
        print(table(results))
        print(json.dumps(results))
        return 0

    return exit_status(run, args)


if __name__ == "__main__":
    sys.exit(main())
