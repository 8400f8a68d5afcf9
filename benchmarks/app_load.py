"""The demo under load: python -m benchmarks.app_load [--clients 8] [--requests 10] [--size 512]

Starts `python app.py` (the street-scene model by default) and sends `/segment` calls with a SIZExSIZE JPEG of a
CamVid example through gradio_client: first one client alone, then `--clients` clients at once, each `--requests`
calls one after another. Prints the errors, the median, 90th percentile and longest call, the throughput against one
client alone, and the server's peak resident memory (sampled every 0.1 s from /proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gradio_client import Client, handle_file

from benchmarks.app_latency import CHOSEN, ROOT, PeakMemory, example_photo, free_port, wait_for_log, wait_until_up


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
        image = example_photo(Path(folder) / "street.jpg", (args.size, args.size))
        log = Path(folder) / "app.log"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        with log.open("w") as output:
            server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                                      stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        memory = PeakMemory(server.pid)
        try:
            wait_until_up(url, server, log, 120.0)
            runs = wait_for_log(log, CHOSEN, 120.0)  # how each model runs is chosen before the calls begin
            memory.start()
            calls(url, image, 1)  # warm-up
            started = time.perf_counter()
            alone, alone_errors = calls(url, image, args.requests)
            alone_rate = args.requests / (time.perf_counter() - started)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda _: calls(url, image, args.requests), range(args.clients)))
            loaded_rate = args.clients * args.requests / (time.perf_counter() - started)
        finally:
            memory.stop()
            server.terminate()
            server.wait(timeout=30)
    seconds = sorted(value for result, _ in results for value in result)
    errors = sum(count for _, count in results)
    print(f"date {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.size}x{args.size} street photo, "
          "default model")  # fmt: skip
    for line in runs:
        print(f"  {line}")
    print(f"one client, {args.requests} calls: median {statistics.median(alone) * 1000:.0f} ms, "
          f"{alone_rate:.2f} calls/s, {alone_errors} errors")  # fmt: skip
    print(f"{args.clients} clients x {args.requests} calls: {errors} errors, median "
          f"{statistics.median(seconds) * 1000:.0f} ms, p90 {seconds[int(0.9 * (len(seconds) - 1))] * 1000:.0f} ms, "
          f"max {seconds[-1] * 1000:.0f} ms, {loaded_rate:.2f} calls/s = {loaded_rate / alone_rate:.0%} of one "
          "client's")  # fmt: skip
    print(f"server's peak resident memory: {memory.peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
