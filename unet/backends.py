"""Ways to run a network's forward pass when serving it, and the choice among them at start-up.

Eager PyTorch fp32 is the reference and always available. bf16 autocast is a candidate only where the CPU computes
bf16 natively (AVX512-BF16 or AMX; elsewhere it is emulated and many times slower). onnxruntime runs the graph
`unet.export` writes; it needs the `onnx` and `onnxruntime` packages. `choose_forward` times each candidate on the
model's own example images and keeps the fastest one whose masks agree with eager fp32's (mean IoU at least
`MIN_AGREEMENT`), so a faster way never changes what a visitor sees beyond that.

Training, evaluation and `unet.predict` always run eager fp32: the published figures are those of the reference.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unet.metrics import iou
from unet.model import UNet
from unet.preprocessing import logits_to_mask

log = logging.getLogger("unet.backends")

Forward = Callable[[torch.Tensor], torch.Tensor]  # a normalized batch (B, 3, H, W) -> logits (B, C, H, W)
EAGER = "eager fp32"
MIN_AGREEMENT = 0.99  # mean IoU of a candidate's masks against eager fp32's, over the examples
TIMED_RUNS = 5  # the median of these is a candidate's time


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX tiles)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


class Bf16Forward:
    """The model under bf16 autocast, its logits returned in fp32."""

    def __init__(self, model: UNet):
        self.model = model

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(batch).float()


def return_freed_memory() -> None:
    """Give the memory the process has freed back to the system, which glibc's allocator would otherwise keep: an
    export's (about 70 MB for the street-scene model), and the forward passes' of choosing among the ways (100-300 MB
    of a serving demo's peak of 1.4 GB, `benchmarks.app_latency`); elsewhere (not glibc) nothing happens."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class OnnxForward:
    """The model exported to ONNX (`unet.export.export_onnx`) and run by onnxruntime on the CPU.

    Raises:
        ModuleNotFoundError: `onnx` or `onnxruntime` is not installed.
        torch.onnx.OnnxExporterError: The export failed.
    """

    def __init__(self, model: UNet):
        import onnxruntime
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        from unet.export import export_onnx

        self.model, self._unpaddable = model, InvalidArgument
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # the one refusal expected (below) is handled: log only what is fatal
        with tempfile.TemporaryDirectory(prefix="unet-onnx-") as folder:  # the session keeps the graph in memory
            path = export_onnx(model, Path(folder) / "model.onnx")
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return_freed_memory()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        try:
            (logits,) = self.session.run(["logits"], {"image": batch.contiguous().numpy()})
        except self._unpaddable:
            # A side shorter than the padding it needs (a few pixels): the network pads such images by repeating
            # their edge, a choice the traced graph froze the other way. The model itself runs them.
            with torch.inference_mode():
                return self.model(batch)
        return torch.from_numpy(logits)


def candidates(model: UNet, bf16: bool | None = None) -> dict[str, Forward]:
    """The ways this machine can run `model`, by name: eager fp32 first, then bf16 autocast (where `bf16`, by
    default where the CPU has it natively) and onnxruntime (where it installs and the export works)."""
    model = model.eval()
    ways: dict[str, Forward] = {EAGER: model}
    if native_bf16_cpu() if bf16 is None else bf16:
        ways["bf16 autocast"] = Bf16Forward(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on traced shapes; the agreement check decides
            ways["onnxruntime fp32"] = OnnxForward(model)
    except (ModuleNotFoundError, torch.onnx.OnnxExporterError, RuntimeError) as error:
        log.info("onnxruntime is not used: %s", error)
    return ways


class Stopped(Exception):
    """The server is stopping: the choice is given up."""


def _go_on(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped


def _masks(forward: Forward, images: Sequence[torch.Tensor], stop: threading.Event | None) -> list[np.ndarray]:
    masks = []
    with torch.inference_mode():
        for image in images:
            _go_on(stop)
            masks.append(logits_to_mask(forward(image[None]))[0].numpy())
    return masks


def _median_seconds(forward: Forward, image: torch.Tensor, runs: int, stop: threading.Event | None) -> float:
    batch = image[None].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        forward(batch)  # the first run of a way allocates its buffers
        times = []
        for _ in range(runs):
            _go_on(stop)
            started = time.perf_counter()
            forward(batch)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


@dataclass(frozen=True)
class ForwardChoice:
    """The chosen way to run a model, with each candidate's median time and agreement with eager fp32."""

    name: str
    forward: Forward
    milliseconds: dict[str, float]
    agreement: dict[str, float]  # mean mask IoU against eager fp32 over the examples

    def describe(self) -> str:
        others = ", ".join(
            f"{name} {ms:.0f} ms (masks {self.agreement[name]:.3f})"
            for name, ms in self.milliseconds.items()
            if name != self.name
        )
        return f"{self.name}, {self.milliseconds[self.name]:.0f} ms a forward pass" + (f"; {others}" if others else "")


def choose_forward(
    model: UNet,
    images: Sequence[torch.Tensor],
    ways: dict[str, Forward] | None = None,
    runs: int = TIMED_RUNS,
    stop: threading.Event | None = None,
) -> ForwardChoice:
    """The fastest way to run `model` whose masks of `images` agree with eager fp32's (`MIN_AGREEMENT`).

    Args:
        model: The network.
        images: Normalized images (3, H, W) as the predictor feeds them (`image_to_tensor` of `resize_for_model`);
            the first one is also what each way is timed on.
        ways: The candidates (`candidates(model)` by default); the first is the reference.
        runs: Timed runs of each way; their median counts.
        stop: Once set, the choice is given up (between two forward passes) by raising `Stopped`.
    """
    if not images:
        raise ValueError("choosing how to run a model needs at least one example image")
    ways = candidates(model) if ways is None else ways
    reference_name = next(iter(ways))
    reference = _masks(ways[reference_name], images, stop)
    milliseconds, agreement = {}, {}
    for name, forward in ways.items():
        masks = reference if name == reference_name else _masks(forward, images, stop)
        agreement[name] = float(
            np.mean([np.nanmean(iou(mask, ref, model.num_labels)) for mask, ref in zip(masks, reference, strict=True)])
        )
        milliseconds[name] = 1000 * _median_seconds(forward, images[0], runs, stop)
    eligible = [name for name in ways if agreement[name] >= MIN_AGREEMENT]
    best = min(eligible, key=milliseconds.__getitem__)
    return ForwardChoice(best, ways[best], milliseconds, agreement)
