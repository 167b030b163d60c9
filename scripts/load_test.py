"""Load test of the Gradio app: many concurrent clients for a fixed time, on 127.0.0.1 only.

    python -m scripts.load_test --model model --clients 50 --seconds 60     # starts app.py, stops it after
    python -m scripts.load_test --url http://127.0.0.1:7860/ --pid 1234     # an app that is already running

The default engine is light: one asyncio loop, one httpx client (own connections) per simulated client, on
Gradio's HTTP API. Each image is uploaded once (POST /gradio_api/upload); each request is
POST /gradio_api/call/<api_name> (with the client's session_hash, like a page), the result read from the event
stream GET /gradio_api/call/<api_name>/<event_id>, and every output file downloaded (GET its url), as the page's
browser would. ``--engine gradio_client`` runs one thread and one ``gradio_client.Client`` per client instead
(uploads every request; much heavier on the load generator's CPU).

Reports requests, errors, p50/p95/max latency, throughput and the server's RSS (VmRSS of /proc/PID/status,
sampled every second: start, end, max). Not part of the test suite. Bounded: it stops after --seconds
(requests in flight get --request-timeout more) or --max-requests, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from classifier.data import HAM_DIR
from classifier.errors import exit_status
from scripts.bench_e2e import free_port, profiling, start_server, stop_server
from scripts.soak import rss_mb

HAM_IMAGES = HAM_DIR / "images_600x450"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = p.add_mutually_exclusive_group()
    target.add_argument("--model", help="start app.py with this model folder or Hub repo id (default: its default)")
    target.add_argument("--url", help="load an app that is already running at this 127.0.0.1 URL")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, to sample its RSS")
    p.add_argument("--port", type=int, help="port for the started app (default: a free one)")
    p.add_argument("--concurrency", type=int, help="the started app's --concurrency (default: app.py's default)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default: 50)")
    p.add_argument("--seconds", type=float, default=60, help="how long to send requests (default: 60)")
    p.add_argument("--max-requests", type=int, default=20_000, help="stop after this many requests in all")
    p.add_argument("--request-timeout", type=float, default=60, help="seconds before a request counts as failed")
    p.add_argument("--startup-timeout", type=float, default=180, help="seconds to wait for the started app")
    p.add_argument("--api-name", default="/classify", choices=("/classify", "/classify_json"),
                   help="endpoint (default: /classify, what the page calls; see app.py)")
    p.add_argument("--engine", default="httpx", choices=("httpx", "gradio_client"),
                   help="httpx: asyncio on Gradio's HTTP API (default); gradio_client: a thread and a Client each")
    p.add_argument("--session", default="client", choices=("client", "request"),
                   help="httpx engine: one session_hash per client, like a page (default), or none, so that "
                        "every request is a new session on the server, like plain HTTP API callers")
    p.add_argument("--no-download", action="store_true", help="httpx engine: do not fetch the output files")
    p.add_argument("--profile", action="store_true",
                   help="start the app with Gradio's profiler (GRADIO_PROFILING=1) and report its medians per phase "
                        "(the queue wait, pre- and postprocessing, the handler) for the requests of the run")
    p.add_argument("--images", type=Path, help="folder of JPEGs (default: HAM10000 600x450 copy, else generated)")
    p.add_argument("--image-count", type=int, default=8, help="distinct images to send (default: 8)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--tta", action="store_true", help="ask for test-time augmentation")
    p.add_argument("--heatmap-class", default="predicted", help="heatmap class argument (default: predicted)")
    args = p.parse_args(argv)
    if args.url and urlparse(args.url).hostname not in LOCAL_HOSTS:
        p.error("--url must point at 127.0.0.1 (this script only loads a local app)")
    if args.clients < 1 or args.seconds <= 0 or args.max_requests < 1:
        p.error("--clients, --seconds and --max-requests must be positive")
    return args


def pick_images(folder: Path | None, count: int, tmp: Path) -> list[Path]:
    """A few real JPEGs, or generated 600x450 ones when there are none."""
    folder = folder or (HAM_IMAGES if HAM_IMAGES.is_dir() else None)
    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:count]
        if paths:
            return paths
    from classifier.evaluation.benchmark import generate_images

    return generate_images(tmp, count)


def start_app(model: str | None, port: int, timeout: float, log_path: Path,
              concurrency: int | None = None, profile: bool = False) -> subprocess.Popen:
    """Start app.py on 127.0.0.1 (bench's server starter) and wait until its page answers."""
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)]
    if model:
        command += ["--model", model]
    if concurrency:
        command += ["--concurrency", str(concurrency)]
    return start_server(command, port, log_path, timeout, profile=profile)


class RssSampler(threading.Thread):
    """VmRSS of one process, once a second, until stopped."""

    def __init__(self, pid: int | None):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self):
        while self.pid and not self.done.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append(value)
            self.done.wait(1.0)

    def summary(self) -> dict:
        if not self.samples:
            return {"start_mb": None, "end_mb": None, "max_mb": None, "samples": 0}
        return {"start_mb": round(self.samples[0], 1), "end_mb": round(self.samples[-1], 1),
                "max_mb": round(max(self.samples), 1), "samples": len(self.samples)}


class Load:
    """Shared counters for the client threads."""

    def __init__(self, max_requests: int, deadline: float):
        self.lock = threading.Lock()
        self.latencies, self.errors, self.messages = [], 0, []
        self.started, self.max_requests, self.deadline = 0, max_requests, deadline

    def take(self) -> bool:
        with self.lock:
            if time.time() >= self.deadline or self.started >= self.max_requests:
                return False
            self.started += 1
            return True

    def record(self, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if error is not None:
                self.errors += 1
                if len(self.messages) < 5 and error not in self.messages:
                    self.messages.append(error)


def client_loop(url: str, load: Load, images: list[Path], offset: int, args) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    except Exception as exc:  # a client that cannot connect counts once as an error
        load.record(0.0, f"connect: {type(exc).__name__}: {exc}")
        return
    i = offset
    while load.take():
        image = images[i % len(images)]
        i += 1
        started = time.perf_counter()
        error = None
        try:
            job = client.submit(handle_file(str(image)), args.top_k, args.tta, args.heatmap_class,
                                api_name=args.api_name)
            outputs = job.result(timeout=args.request_timeout)
            if isinstance(outputs, (list, tuple)) and outputs and outputs[-1] is None:
                error = f"no result: {outputs[0]}"  # /classify reports bad input in its first output, result last
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        load.record(time.perf_counter() - started, error)


def file_urls(outputs) -> list[str]:
    """The urls of the files in an event's outputs (Gradio's FileData dicts, at any depth)."""
    if isinstance(outputs, dict):
        if outputs.get("meta", {}).get("_type") == "gradio.FileData" and outputs.get("url"):
            return [outputs["url"]]
        return [url for value in outputs.values() for url in file_urls(value)]
    if isinstance(outputs, list):
        return [url for value in outputs for url in file_urls(value)]
    return []


def sse_result(lines) -> tuple[str | None, str | None]:
    """The first final event of a Gradio event stream as (event, data): "complete" or "error"."""
    event = None
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            return event, line[5:].strip()
    return event, None


async def upload(http, images: list[Path]) -> list[str]:
    """Upload each image once; their paths on the server."""
    files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in images]
    response = await http.post("gradio_api/upload", files=files)
    response.raise_for_status()
    return response.json()


async def one_request(http, api: str, server_path: str, args, session: str | None) -> str | None:
    """One call through Gradio's HTTP API, its output files fetched; an error message, or None."""
    # Every value in order (this route fills in no defaults): the patient context (age, sex, site) not given
    body = {"data": [{"path": server_path, "meta": {"_type": "gradio.FileData"}}, args.top_k, args.tta,
                     args.heatmap_class, None, None, None]}
    if session:
        body["session_hash"] = session
    response = await http.post(f"gradio_api/call/{api}", json=body)
    if response.status_code != 200:
        return f"call: HTTP {response.status_code}: {response.text[:200]}"
    event_id = response.json()["event_id"]
    async with http.stream("GET", f"gradio_api/call/{api}/{event_id}") as stream:
        lines = [line async for line in stream.aiter_lines()]
    event, data = sse_result(lines)
    if event != "complete" or data is None:
        return f"event {event}: {data}"[:300]
    outputs = json.loads(data)
    # /classify reports bad input in its first output, and no result (the dict with top_k) among the others
    if isinstance(outputs, list) and not any(isinstance(out, dict) and "top_k" in out for out in outputs):
        return f"no result: {outputs[0]}"[:300]
    if not args.no_download:
        for url in file_urls(outputs):
            got = await http.get(url)
            if got.status_code != 200 or not got.content:
                return f"download: HTTP {got.status_code}, {len(got.content)} bytes: {url}"
    return None


async def http_visitor(url: str, load: Load, server_paths: list[str], offset: int, args) -> None:
    import httpx

    api = args.api_name.lstrip("/")
    session = uuid.uuid4().hex if args.session == "client" else None
    async with httpx.AsyncClient(base_url=url, timeout=args.request_timeout) as http:
        i = offset
        while load.take():
            started = time.perf_counter()
            try:
                error = await asyncio.wait_for(
                    one_request(http, api, server_paths[i % len(server_paths)], args, session),
                    args.request_timeout)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            i += 1
            load.record(time.perf_counter() - started, error)


async def run_http(url: str, load: Load, images: list[Path], args) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=args.request_timeout) as http:
        server_paths = await upload(http, images)
    await asyncio.gather(*(http_visitor(url, load, server_paths, n, args) for n in range(args.clients)))


def run_load(url: str, pid: int | None, images: list[Path], args) -> dict:
    sampler = RssSampler(pid)
    sampler.start()
    started = time.time()
    load = Load(args.max_requests, started + args.seconds)
    if args.engine == "httpx":
        asyncio.run(run_http(url, load, images, args))
    else:
        threads = [threading.Thread(target=client_loop, args=(url, load, images, n, args), daemon=True)
                   for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:  # in-flight requests get request_timeout more; then we stop waiting
            thread.join(max(started + args.seconds + args.request_timeout + 10 - time.time(), 0.1))
    elapsed = time.time() - started
    sampler.done.set()
    sampler.join(2)
    with load.lock:
        latencies = np.asarray(load.latencies) * 1000
        finished = len(load.latencies)
        return {
            "url": url, "endpoint": args.api_name, "clients": args.clients, "seconds": round(elapsed, 1),
            "requests": finished, "errors": load.errors, "unfinished": load.started - finished,
            "throughput_per_s": round((finished - load.errors) / elapsed, 2),
            "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 1) if finished else None,
                           "p95": round(float(np.percentile(latencies, 95)), 1) if finished else None,
                           "max": round(float(latencies.max()), 1) if finished else None},
            "server_rss": sampler.summary(), "server_pid": pid, "error_examples": list(load.messages),
            "concurrency": args.concurrency, "engine": args.engine, "session": args.session,
            "load_average": os.getloadavg(),
        }


def report(results: dict) -> str:
    lat, rss = results["latency_ms"], results["server_rss"]
    lines = [
        f"{results['clients']} clients ({results['engine']}) for {results['seconds']} s against {results['url']} "
        f"({results['endpoint']}, app concurrency {results.get('concurrency') or 'default'})",
        f"requests {results['requests']}, errors {results['errors']}, unfinished {results['unfinished']}, "
        f"throughput {results['throughput_per_s']} successful requests/s",
        f"latency ms: p50 {lat['p50']}, p95 {lat['p95']}, max {lat['max']}",
        f"server RSS MB (pid {results['server_pid']}): start {rss['start_mb']}, end {rss['end_mb']}, "
        f"max {rss['max_mb']} ({rss['samples']} samples)",
        "load average at the end (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in results["load_average"]),
    ]
    if "server_profile_p50_ms" in results:
        lines.append(f"Gradio's profiler, medians in ms: {results['server_profile_p50_ms']}")
    lines += [f"error example: {m}" for m in results["error_examples"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    with tempfile.TemporaryDirectory() as tmp:
        images = pick_images(args.images, args.image_count, Path(tmp))
        server = None
        if args.url:
            url, pid = args.url if args.url.endswith("/") else args.url + "/", args.pid
        else:
            port = args.port or free_port()
            print(f"starting app.py on 127.0.0.1:{port} ...", file=sys.stderr, flush=True)
            server = start_app(args.model, port, args.startup_timeout, Path(tmp) / "app.log", args.concurrency,
                               args.profile)  # ServerError: `error: ...`, status 2
            url, pid = f"http://127.0.0.1:{port}/", server.pid
        try:
            print(f"{args.clients} clients for {args.seconds:g} s, {len(images)} images ...", file=sys.stderr,
                  flush=True)
            if args.profile:
                profiling(url, clear=True)  # the page load and the uploads before the run
            results = run_load(url, pid, images, args)
            if args.profile:
                results["server_profile_p50_ms"] = profiling(url)
        finally:
            if server is not None:
                stop_server(server)
    print(report(results))
    print(json.dumps(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
