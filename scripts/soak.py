"""Soak test of the Gradio app: simulated visitors for minutes on 127.0.0.1, the server's memory sampled.

    python -m scripts.soak                          # 20 visitors, 10 minutes, the bundled model
    python -m scripts.soak --minutes 30 --visitors 30 --model model

Starts app.py itself on a free 127.0.0.1 port and stops it after. Each visitor is one ``gradio_client.Client``
(one thread) calling ``/classify`` over and over with the example images in examples/, output files (the heatmap)
downloaded, as a browser would. Every --interval seconds the server's RSS (VmRSS of /proc/PID/status) is sampled
and printed with the requests and failures so far. Verdict: PASS when no request failed and the RSS at the end is
at most --limit (1.10) times its value after the first minute (the warm-up: sessions, arenas, caches).
Exit status 0 on PASS, 1 on FAIL, 2 when the app could not be started. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from classifier.errors import ArgumentError, exit_status
from scripts.bench_e2e import free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
WARM_UP_S = 60.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10, help="how long the visitors send requests (default: 10)")
    p.add_argument("--visitors", type=int, default=20, help="simulated visitors, one Client each (default: 20)")
    p.add_argument("--model", help="app.py --model (default: app.py's default, the bundled model/)")
    p.add_argument("--concurrency", type=int, help="app.py --concurrency (default: app.py's default)")
    p.add_argument("--api-name", default="/classify", choices=("/classify", "/classify_json"),
                   help="endpoint (default: /classify, what the page calls)")
    p.add_argument("--images", type=Path, default=ROOT / "examples", help="folder of JPEGs (default: examples/)")
    p.add_argument("--interval", type=float, default=10, help="seconds between RSS samples (default: 10)")
    p.add_argument("--limit", type=float, default=1.10,
                   help="largest allowed ratio of the final RSS to the RSS after the first minute (default: 1.10)")
    p.add_argument("--request-timeout", type=float, default=60, help="seconds before a request counts as failed")
    p.add_argument("--startup-timeout", type=float, default=180, help="seconds to wait for the app to answer")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.visitors < 1 or args.interval <= 0 or args.limit < 1:
        p.error("--minutes, --visitors and --interval must be positive and --limit at least 1")
    return args


def rss_mb(pid: int) -> float | None:
    """VmRSS of process ``pid`` in MB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_after(samples: list[dict], seconds: float) -> float | None:
    """The RSS of the first sample taken at or after ``seconds``."""
    return next((s["rss_mb"] for s in samples if s["t"] >= seconds and s["rss_mb"] is not None), None)


def verdict(samples: list[dict], failures: int, limit: float = 1.10, warm_up: float = WARM_UP_S) -> tuple[bool, str]:
    """PASS when nothing failed and the last RSS is at most ``limit`` times the RSS after ``warm_up`` seconds."""
    base = rss_after(samples, warm_up)
    end = samples[-1]["rss_mb"] if samples else None
    if base is None or end is None:
        return False, f"FAIL: no RSS sample after {warm_up:g} s and at the end (the server died or the run was short)"
    ratio = end / base
    problems = []
    if failures:
        problems.append(f"{failures} failed requests")
    if ratio > limit:
        problems.append(f"RSS grew {ratio:.3f}x after the first minute (limit {limit:g}x)")
    figures = (f"RSS {samples[0]['rss_mb']:.1f} MB at the start, {base:.1f} MB after {warm_up:g} s, "
               f"{end:.1f} MB at the end ({ratio:.3f}x), {failures} failed requests")
    return (not problems), ("PASS: " if not problems else "FAIL: " + "; ".join(problems) + ". ") + figures


def start_app(port: int, args, log: Path) -> subprocess.Popen:
    """app.py on 127.0.0.1:``port``, once its page answers (bench's server starter, without the profiler)."""
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)]
    if args.model:
        command += ["--model", args.model]
    if args.concurrency:
        command += ["--concurrency", str(args.concurrency)]
    return start_server(command, port, log, args.startup_timeout, profile=False)


class Tally:
    """Requests, failures and latencies of all visitors."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests, self.failures, self.latencies, self.messages = 0, 0, [], []

    def record(self, seconds: float, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.latencies.append(seconds)
            if error is not None:
                self.failures += 1
                if len(self.messages) < 5 and error not in self.messages:
                    self.messages.append(error)


def visitor(url: str, images: list[Path], offset: int, deadline: float, tally: Tally, downloads: Path, args) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))
    except Exception as exc:  # a visitor that cannot connect counts once as a failure
        tally.record(0.0, f"connect: {type(exc).__name__}: {exc}"[:300])
        return
    i = offset
    while time.time() < deadline:
        started = time.perf_counter()
        error = None
        try:
            job = client.submit(handle_file(str(images[i % len(images)])), 3, False, "predicted",
                                api_name=args.api_name)
            outputs = job.result(timeout=args.request_timeout)
            if isinstance(outputs, (list, tuple)) and outputs[-1] is None:
                error = f"no result: {outputs[0]}"[:300]  # /classify reports bad input in its first output
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        i += 1
        tally.record(time.perf_counter() - started, error)


def soak(url: str, pid: int, images: list[Path], downloads: Path, args) -> tuple[list[dict], Tally]:
    tally = Tally()
    started = time.time()
    deadline = started + args.minutes * 60
    threads = [threading.Thread(target=visitor, args=(url, images, n, deadline, tally, downloads, args), daemon=True)
               for n in range(args.visitors)]
    for thread in threads:
        thread.start()
    samples = []
    while True:
        now = time.time()
        with tally.lock:
            sample = {"t": round(now - started, 1), "rss_mb": rss_mb(pid), "requests": tally.requests,
                      "failures": tally.failures}
        samples.append(sample)
        rss = "gone" if sample["rss_mb"] is None else f"{sample['rss_mb']:.1f} MB"
        print(f"t={sample['t']:7.1f} s  RSS {rss:>10}  requests {sample['requests']:6d}  failures "
              f"{sample['failures']}  load {os.getloadavg()[0]:.2f}", flush=True)
        if now >= deadline or sample["rss_mb"] is None:
            break
        time.sleep(min(args.interval, max(deadline - now, 0.1)))
    for thread in threads:  # requests in flight get request_timeout more; then we stop waiting
        thread.join(max(deadline + args.request_timeout + 5 - time.time(), 0.1))
    samples.append({"t": round(time.time() - started, 1), "rss_mb": rss_mb(pid), "requests": tally.requests,
                    "failures": tally.failures})
    return samples, tally


def main(argv=None) -> int:
    args = parse_args(argv)
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not images:
        raise ArgumentError(f"no JPEGs in {args.images}")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        port = free_port()
        print(f"starting app.py on 127.0.0.1:{port} ...", file=sys.stderr, flush=True)
        server = start_app(port, args, Path(tmp) / "app.log")  # ServerError: `error: ...`, status 2
        try:
            print(f"{args.visitors} visitors for {args.minutes:g} min on {args.api_name}, {len(images)} images; "
                  f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            downloads = Path(tmp) / "downloads"
            downloads.mkdir()
            samples, tally = soak(f"http://127.0.0.1:{port}/", server.pid, images, downloads, args)
            alive = server.poll() is None
        finally:
            stop_server(server)
    passed, summary = verdict(samples, tally.failures, args.limit)
    if not alive:
        passed, summary = False, "FAIL: the server died. " + summary
    latencies = sorted(tally.latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else None
    print(f"{tally.requests} requests, {tally.failures} failed"
          + (f", p95 {p95:.2f} s" if p95 is not None else "")
          + f"; load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for message in tally.messages:
        print(f"failure example: {message}")
    print(summary)
    print(json.dumps({"passed": passed, "visitors": args.visitors, "minutes": args.minutes,
                      "endpoint": args.api_name, "requests": tally.requests, "failures": tally.failures,
                      "samples": samples, "failure_examples": tally.messages}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(exit_status(main))
