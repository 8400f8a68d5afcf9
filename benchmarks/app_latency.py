"""Start-up time and end-to-end latency of the demo server: python -m benchmarks.app_latency [--weights SOURCE]

Starts `python app.py` on a free port, measures the seconds until it answers, waits until it has chosen how to run
each model (`unet.backends`, which it prints), then calls `/segment` through gradio_client with a 512x512 JPEG of a
bundled CamVid example
`--calls` times (after one warm-up call) and prints the median latency: upload, queue, preprocessing, forward pass,
pictures, PNG files and download of the results, as a client sees them. It does so with the demo's defaults, without
test-time augmentation, and without it and with every region kept (least region confidence 0), calls of the three
alternating. First, in the same run, it times the same calls to an echo app with the same inputs and outputs and no
model (`benchmarks.echo_app`), and prints the demo's time over that floor. Then it sends a phone-sized photo (a
4032x3024 JPEG of the same example) `--photo-calls` times and prints the median and the server's peak
resident memory. Last, with the servers stopped, it times the default model's forward pass on the same image in
this process, the way the server chose to run it, and prints what each setting's median spends beyond the floor and
that forward pass: the serving path's own cost.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from gradio_client import Client, handle_file
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTO_SIZE = (4032, 3024)  # a 12-megapixel phone photo
EXAMPLE = sorted((ROOT / "examples" / "camvid" / "images").glob("*"))[0]
CHOSEN = "every model's way to run is chosen"  # what app.py logs once `unet.catalog.choose_backends` is done
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


def resident_mb(pid: int) -> float:
    """The process's resident memory now, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """Samples a process's resident memory every 0.1 s in a thread, from `start()`; `peak_mb` is the largest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak_mb, self._sampling = pid, 0.0, False

    def _sample(self) -> None:
        while self._sampling:
            self.peak_mb = max(self.peak_mb, resident_mb(self.pid))
            time.sleep(0.1)

    def start(self) -> PeakMemory:
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def stop(self) -> float:
        self._sampling = False
        return self.peak_mb


def wait_for_log(log: Path, text: str, timeout_s: float) -> list[str]:
    """Wait until the server's log holds `text`; returns the log's lines that say how a model runs."""
    started = time.perf_counter()
    while text not in log.read_text():
        if time.perf_counter() - started > timeout_s:
            sys.exit(f"the server never logged {text!r} within {timeout_s:.0f} s:\n{log.read_text()}")
        time.sleep(0.2)
    return [line for line in log.read_text().splitlines() if " runs " in line]


def example_photo(path: Path, size: tuple[int, int]) -> Path:
    """A JPEG (quality 90) of the first bundled CamVid example at `size` (width, height): a street photo as a
    visitor sends one."""
    with Image.open(EXAMPLE) as picture:
        picture.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def forward_ms(image: Path, way: str, weights: str | None) -> float:
    """The median milliseconds of the default model's forward pass on `image` as the server feeds it (shrunk to its
    `max_side`), run `way` (a name of `unet.backends.candidates`, as the server logged its choice)."""
    from unet.backends import candidates, choose_forward
    from unet.catalog import describe_catalog, requested_sources
    from unet.preprocessing import image_to_tensor, load_image, resize_for_model

    served = describe_catalog(requested_sources([weights] if weights else None))[0][0]
    served.load()
    predictor = served.predictor
    tensor = image_to_tensor(resize_for_model(load_image(image), predictor.max_side))
    ways = candidates(predictor.model)
    return choose_forward(predictor.model, [tensor], {way: ways[way]}, runs=15).milliseconds[way]


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
    parser.add_argument("--photo-calls", type=int, default=5, help="timed calls with the 4032x3024 photo")
    args = parser.parse_args()

    demo = [sys.executable, "app.py"] + (["--weights", args.weights] if args.weights else [])
    echo = [sys.executable, "-m", "benchmarks.echo_app", "--size", str(args.size)]
    with tempfile.TemporaryDirectory(prefix="unet-app-latency-") as folder:
        image = example_photo(Path(folder) / "street.jpg", (args.size, args.size))
        photo = example_photo(Path(folder) / "photo.jpg", PHOTO_SIZE)
        photo_mb = photo.stat().st_size / 1e6
        floor_startup, floor, _ = time_server(echo, {"echo": {}}, image, args, Path(folder) / "echo.log")
        startup, times, served = time_server(demo, SETTINGS, image, args, Path(folder) / "app.log", photo)
        way = served["runs"][0].split(" runs in ", 1)[1].split(",", 1)[0]  # the default model's, as the server chose
        forward = forward_ms(image, way, args.weights)

    print(f"date {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, weights: {args.weights or 'default'}")
    print(f"start-up until the server answers: {startup:.1f} s (the echo app: {floor_startup:.1f} s)")
    for line in served["runs"]:
        print(f"  {line}")
    print(f"/segment with a {args.size}x{args.size} street photo (JPEG), end to end through gradio_client:")
    echo_ms = statistics.median(floor["echo"]) * 1000
    print(f"  the echo app (Gradio's floor: the same inputs and outputs, no model): median {echo_ms:.0f} ms")
    for name, seconds in times.items():
        median = statistics.median(seconds) * 1000
        print(
            f"  {name}: median {median:.0f} ms over {len(seconds)} calls (min {min(seconds) * 1000:.0f}, max "
            f"{max(seconds) * 1000:.0f}), {median - echo_ms:+.0f} ms over the floor, {median / echo_ms:.1f}x it; "
            f"{median - echo_ms - forward:+.0f} ms over the floor and the forward pass"
        )
    print(f"  (the forward pass alone, {way}, as the server runs it: median {forward:.0f} ms, in this process)")
    width, height = PHOTO_SIZE
    print(
        f"/segment with a {width}x{height} JPEG photo ({photo_mb:.1f} MB): median "
        f"{statistics.median(served['photo']) * 1000:.0f} ms over {len(served['photo'])} calls; the server's peak "
        f"resident memory {served['peak_mb']:.0f} MB (after the 512x512 calls: {served['before_mb']:.0f} MB)"
    )


def time_server(
    command: list[str],
    settings: dict[str, dict],
    image: Path,
    args: argparse.Namespace,
    log: Path,
    photo: Path | None = None,
) -> tuple[float, dict[str, list[float]], dict]:
    """Start a server, time its start-up, then `args.calls` rounds of /segment calls, one per setting; with a
    `photo`, the demo: wait for its choice of how to run, and time the photo's calls and the peak memory."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as output:
        server = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, env=env, stdout=output,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        startup = wait_until_up(url, server, log, args.timeout)
        served: dict = {"runs": wait_for_log(log, CHOSEN, args.timeout) if photo else []}
        client = Client(url, verbose=False)
        client.predict(handle_file(image), None, api_name="/segment")  # warm-up: first forward pass, caches
        times: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.calls):
            for name, seconds in times.items():
                started = time.perf_counter()
                client.predict(handle_file(image), None, **settings[name], api_name="/segment")
                seconds.append(time.perf_counter() - started)
        if photo:
            served["before_mb"] = resident_mb(server.pid)
            memory = PeakMemory(server.pid).start()
            served["photo"] = []
            for _ in range(args.photo_calls):
                started = time.perf_counter()
                client.predict(handle_file(photo), None, api_name="/segment")
                served["photo"].append(time.perf_counter() - started)
            served["peak_mb"] = memory.stop()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return startup, times, served


if __name__ == "__main__":
    main()
