"""Start-up time and end-to-end latency of the demo server: python -m benchmarks.app_latency [--weights SOURCE]

Starts `python app.py` on a free port, measures the seconds until it answers, then calls `/segment` through
gradio_client with a 512x512 image `--calls` times (after one warm-up call) and prints the median latency: upload,
queue, preprocessing, forward pass, pictures, PNG files and download of the results, as a client sees them. It does
so with the demo's defaults, without test-time augmentation, and without it and with every region kept (least region
confidence 0), calls of the three alternating. First, in the same run, it times the same calls to an echo app with the
same inputs and outputs and no model (`benchmarks.echo_app`), and prints the demo's time over that floor.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# The /segment inputs changed from the demo's defaults (the served model's inference.json), by keyword.
SETTINGS = {
    "defaults (the model's inference settings)": {},
    "no test-time augmentation": {"augment": False},
    "neither (one view, every region kept)": {"augment": False, "min_confidence": 0.0},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout_s: float) -> float:
    """Seconds until `url` answers; exits with the server's output when it stops or does not answer in time."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if server.poll() is not None:
            sys.exit(f"app.py exited with code {server.returncode} before it answered:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    sys.exit(f"app.py did not answer at {url} within {timeout_s:.0f} s:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights",
        metavar="FOLDER|USER/NAME[@REV]",
        help="more weights for app.py's picker (the calls go to its default model, the street-scene one)",
    )
    parser.add_argument("--calls", type=int, default=20, help="timed /segment calls (the median is printed)")
    parser.add_argument("--size", type=int, default=512, help="side of the square test image, in pixels")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server to answer")
    args = parser.parse_args()

    demo = [sys.executable, "app.py"] + (["--weights", args.weights] if args.weights else [])
    echo = [sys.executable, "-m", "benchmarks.echo_app", "--size", str(args.size)]
    with tempfile.TemporaryDirectory(prefix="unet-app-latency-") as folder:
        image = Path(folder) / "random.png"
        pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image)
        floor_startup, floor = time_server(echo, {"echo": {}}, image, args, Path(folder) / "echo.log")
        startup, times = time_server(demo, SETTINGS, image, args, Path(folder) / "app.log")

    print(f"date {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, weights: {args.weights or 'default'}")
    print(f"start-up until the server answers: {startup:.1f} s (the echo app: {floor_startup:.1f} s)")
    print(f"/segment with a {args.size}x{args.size} image, end to end through gradio_client:")
    echo_ms = statistics.median(floor["echo"]) * 1000
    print(f"  the echo app (Gradio's floor: the same inputs and outputs, no model): median {echo_ms:.0f} ms")
    for name, seconds in times.items():
        median = statistics.median(seconds) * 1000
        print(
            f"  {name}: median {median:.0f} ms over {len(seconds)} calls (min {min(seconds) * 1000:.0f}, max "
            f"{max(seconds) * 1000:.0f}), {median - echo_ms:+.0f} ms over the floor, {median / echo_ms:.1f}x it"
        )


def time_server(
    command: list[str], settings: dict[str, dict], image: Path, args: argparse.Namespace, log: Path
) -> tuple[float, dict[str, list[float]]]:
    """Start a server, time its start-up, then `args.calls` rounds of /segment calls, one per setting."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as output:
        server = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, env=env, stdout=output,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        startup = wait_until_up(url, server, log, args.timeout)
        client = Client(url, verbose=False)
        client.predict(handle_file(image), None, api_name="/segment")  # warm-up: first forward pass, caches
        times: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.calls):
            for name, seconds in times.items():
                started = time.perf_counter()
                client.predict(handle_file(image), None, **settings[name], api_name="/segment")
                seconds.append(time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return startup, times


if __name__ == "__main__":
    main()
