"""The demo under load: python -m benchmarks.app_load [--clients 8] [--requests 10] [--size 512]

Starts `python app.py` (the street-scene model by default) and sends `/segment` calls with a SIZExSIZE image through
gradio_client: first one client alone, then `--clients` clients at once, each `--requests` calls one after another.
Prints the errors, the median, 90th percentile and longest call, the throughput against one client alone, and the
server's peak resident memory (sampled every 0.1 s from /proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

from benchmarks.app_latency import ROOT, free_port, wait_until_up


def resident_mb(pid: int) -> float:
    """The process's resident memory now, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def calls(url: str, image: Path, count: int) -> tuple[list[float], int]:
    """`count` /segment calls from one client: their seconds, and how many failed."""
    client, seconds, errors = Client(url, verbose=False), [], 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            client.predict(handle_file(image), None, api_name="/segment")
        except Exception:  # any failure counts; the benchmark goes on
            errors += 1
        seconds.append(time.perf_counter() - started)
    return seconds, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="calls per client")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="unet-app-load-") as folder:
        image = Path(folder) / "random.png"
        pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image)
        log = Path(folder) / "app.log"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        with log.open("w") as output:
            server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                                      stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        peak, sampling = [0.0], True

        def sample() -> None:
            while sampling:
                peak[0] = max(peak[0], resident_mb(server.pid))
                time.sleep(0.1)

        try:
            wait_until_up(url, server, log, 120.0)
            threading.Thread(target=sample, daemon=True).start()
            calls(url, image, 1)  # warm-up
            started = time.perf_counter()
            alone, alone_errors = calls(url, image, args.requests)
            alone_rate = args.requests / (time.perf_counter() - started)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda _: calls(url, image, args.requests), range(args.clients)))
            loaded_rate = args.clients * args.requests / (time.perf_counter() - started)
        finally:
            sampling = False
            server.terminate()
            server.wait(timeout=30)
    seconds = sorted(value for result, _ in results for value in result)
    errors = sum(count for _, count in results)
    print(f"date {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.size}x{args.size} image, default model")
    print(f"one client, {args.requests} calls: median {statistics.median(alone) * 1000:.0f} ms, "
          f"{alone_rate:.2f} calls/s, {alone_errors} errors")  # fmt: skip
    print(f"{args.clients} clients x {args.requests} calls: {errors} errors, median "
          f"{statistics.median(seconds) * 1000:.0f} ms, p90 {seconds[int(0.9 * (len(seconds) - 1))] * 1000:.0f} ms, "
          f"max {seconds[-1] * 1000:.0f} ms, {loaded_rate:.2f} calls/s = {loaded_rate / alone_rate:.0%} of one "
          "client's")  # fmt: skip
    print(f"server's peak resident memory: {peak[0]:.0f} MB")


if __name__ == "__main__":
    main()
