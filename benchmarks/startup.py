"""Start-up of the demo server against Gradio's own: python -m benchmarks.startup [--runs N]

Starts `python app.py` and the echo app (`benchmarks.echo_app`: the same kind of page inputs and outputs, no model)
`--runs` times each, alternately, on free ports, and prints for each the seconds until its page answers, with
their medians; for the demo also the seconds until every network is built (`unet.catalog.load_models`), from which
on a request no longer waits for its model. Each server is stopped with SIGTERM before the next starts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.app_latency import ROOT, free_port, wait_until_up
from unet.catalog import MODELS_BUILT


def start_once(command: list[str], log: Path, timeout_s: float) -> tuple[float, float | None]:
    """Seconds until `command`'s page answers, and until its log says every model is built (None for the echo)."""
    port = free_port()
    with log.open("w") as out:
        started = time.perf_counter()
        server = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            answered = wait_until_up(f"http://127.0.0.1:{port}/", server, log, timeout_s)
            if command[1] != "app.py":
                return answered, None
            while MODELS_BUILT not in log.read_text():
                if time.perf_counter() - started > timeout_s:
                    sys.exit(f"app.py never logged {MODELS_BUILT!r}:\n{log.read_text()}")
                time.sleep(0.05)
            return answered, time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="start-ups of each server (the medians are printed)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a server")
    args = parser.parse_args()

    demo, echo = [sys.executable, "app.py"], [sys.executable, "-m", "benchmarks.echo_app"]
    pages: dict[str, list[float]] = {"echo": [], "demo": []}
    built: list[float] = []
    with tempfile.TemporaryDirectory(prefix="unet-startup-") as folder:
        for run in range(args.runs):
            pages["echo"].append(start_once(echo, Path(folder) / f"echo-{run}.log", args.timeout)[0])
            answered, ready = start_once(demo, Path(folder) / f"demo-{run}.log", args.timeout)
            pages["demo"].append(answered)
            built.append(ready)

    print(f"date {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.runs} start-ups of each, alternately")
    for name, seconds in pages.items():
        listed = ", ".join(f"{value:.1f}" for value in seconds)
        print(f"  {name:>4}: the page answers after a median {statistics.median(seconds):.1f} s ({listed})")
    listed = ", ".join(f"{value:.1f}" for value in built)
    print(f"  demo: every network built after a median {statistics.median(built):.1f} s ({listed})")
    difference = statistics.median(d - e for d, e in zip(pages["demo"], pages["echo"], strict=True))
    print(f"  the demo's page after the echo's, run by run: median {difference:+.1f} s")


if __name__ == "__main__":
    main()
