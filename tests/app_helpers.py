"""Shared by the demo tests: a tiny checkpoint that predicts some foreground, free ports, and the app as a process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch

from unet.model import UNet
from unet.preprocessing import image_to_tensor, load_image
from unet.settings import InferenceSettings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_IMAGE = ROOT / "examples" / "composites" / "images" / "test_0000.jpg"
EXAMPLE_MASK = ROOT / "examples" / "composites" / "masks" / "test_0000.png"


def save_tiny_checkpoint(folder: Path) -> Path:
    """Save a seeded U-Net of width 4 and depth 2 whose 0.5 threshold splits the example image into two classes."""
    torch.manual_seed(0)
    model = UNet(base_width=4, depth=2).eval()
    with torch.no_grad():
        # A random network's logits lie on one side of 0 almost everywhere: centring them gives a prediction with
        # foreground and background, so IoU and Dice are neither 0 nor 1 and a mix-up of classes would show.
        logits = model(image_to_tensor(load_image(EXAMPLE_IMAGE))[None])  # (1, 1, H, W)
        model.head.bias -= logits.median()
        # Scaled to a spread of 4 (the split at 0.5 stays where it was): most regions are then sure enough to pass
        # the demo's default least region confidence, so the demo's default output is not empty.
        scale = 4 / logits.std()
        model.head.weight *= scale
        model.head.bias *= scale
    model.save_pretrained(folder)
    # The settings the bundled composites model ships with, so the page's defaults run every step of a request.
    InferenceSettings(tta="dihedral", min_confidence=0.8).write(folder)
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(*args: str, log: Path, temp: Path | None = None) -> subprocess.Popen:
    """Start `python app.py ARGS` from the repository root, offline, its output in `log`; its caches beside it, or,
    with `temp`, wherever the app puts them with `temp` as the system's temporary folder."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_EXAMPLES_CACHE": str(log.parent / "examples-cache"),
        "PYTHONUNBUFFERED": "1",
    }
    if temp is not None:
        env["TMPDIR"] = str(temp)
        for name in ("GRADIO_EXAMPLES_CACHE", "GRADIO_TEMP_DIR"):
            env.pop(name, None)
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "app.py", *args], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 90.0) -> float:
    """Seconds until `url` answers; raises with the app's output when it exits or does not answer in time."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise RuntimeError(f"app.py did not answer at {url} within {timeout_s:.0f} s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process started by `start_app`: politely, then by force."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
