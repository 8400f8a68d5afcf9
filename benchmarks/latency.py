"""Speed of the model on this machine, in one run so the figures compare: python -m benchmarks.latency

Prints the machine's measured fp32 matmul peak, the model's GFLOPs per image, the predictor's median end-to-end
latency (preprocessing, forward, resizing back, mask) at several input sizes with the GFLOP/s it achieves, and the
forward pass of the shipped model against the classic U-Net (base width 64, 31M parameters) at 1x3x256x256, and the
forward pass at 512x512 in each way this machine can run it (eager fp32 in the contiguous and the channels-last
layout, bf16 autocast, onnxruntime in fp32 and quantized to int8) with the share of the matmul peak and how well its
masks agree with eager fp32's on the bundled examples (mean IoU of the two masks). int8 is measured here only: the
demo does not weigh it, as its masks disagree (docs/benchmarks.md). Medians of repeated runs: machines here are
shared and noisy.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from unet.hub import add_weights_argument, load_model, resolve_weights
from unet.model import UNet
from unet.predict import Predictor


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `run` over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matmul throughput in GFLOP/s (2 n^3 flops a product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def forward_gflops(model: torch.nn.Module, height: int, width: int) -> float:
    """GFLOPs of one forward pass at (height, width), counted by PyTorch's flop counter (a multiply-add is 2)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    return counter.get_total_flops() / 1e9


@torch.inference_mode()
def forward_seconds(model: torch.nn.Module, size: int, repeats: int) -> float:
    x = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    model = model.eval().to(memory_format=torch.channels_last)
    return median_seconds(lambda: model(x), repeats)


def onnx_int8(model: torch.nn.Module, calibration: list[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model exported to ONNX and quantized to int8 by onnxruntime: static quantization, weights per channel,
    activations calibrated (entropy) on the images of `calibration` of the first one's size (the calibrator stacks
    them: the eight CamVid examples), the first and the last convolution left in fp32 (quantizing them too made the
    masks worse still in a trial on 2026-12-02)."""
    import onnx
    import onnxruntime
    from onnxruntime import quantization
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from unet.export import export_onnx

    same_size = [image for image in calibration if image.shape == calibration[0].shape]
    batches = iter([{"image": image[None].numpy()} for image in same_size])

    class Calibration(quantization.CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(batches, None)

    with tempfile.TemporaryDirectory(prefix="unet-int8-") as folder:
        exported, prepared, quantized = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        export_onnx(model, exported)
        quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)
        convolutions = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
        quantization.quantize_static(
            str(prepared),
            str(quantized),
            Calibration(),
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            calibrate_method=quantization.CalibrationMethod.Entropy,
            nodes_to_exclude=[convolutions[0], convolutions[-1]],
        )
        session = onnxruntime.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
    return lambda batch: torch.from_numpy(session.run(["logits"], {"image": batch.contiguous().numpy()})[0])


def backends(model: torch.nn.Module, peak: float, repeats: int, size: int = 512) -> None:
    """Time the forward pass in each way (`unet.backends`, with bf16 autocast and the channels-last layout even where
    they would not be served) on the bundled examples at serving size, and compare each way's masks with eager
    fp32's: what the demo's choice at start-up weighs, printed."""
    from unet.backends import candidates, choose_forward
    from unet.preprocessing import image_to_tensor, load_image, resize_for_model

    model = model.eval()
    examples = sorted(Path(__file__).resolve().parent.parent.glob("examples/*/images/*"))
    inputs = [image_to_tensor(resize_for_model(load_image(path), size)) for path in examples]
    ways = candidates(model, bf16=True)
    ways["channels-last fp32"] = lambda x: model.to(memory_format=torch.channels_last)(x)
    ways["onnxruntime int8"] = onnx_int8(model, inputs)
    choice = choose_forward(model, inputs, ways, runs=repeats)
    height, width = inputs[0].shape[-2:]
    gflop = forward_gflops(model, height, width)
    print(f"\nforward pass at 1x3x{height}x{width} ({gflop:.1f} GFLOP); masks vs eager fp32, {len(inputs)} examples")
    print(f"{'way':>22} {'median ms':>10} {'of peak':>8} {'mask mIoU':>10}")
    for name, ms in choice.milliseconds.items():
        print(f"{name:>22} {ms:10.1f} {gflop / (ms / 1000) / peak:8.0%} {choice.agreement[name]:10.4f}")
    print(f"fastest whose masks agree: {choice.name} (the demo weighs eager, bf16 where native, onnxruntime)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(parser)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per figure (the median is printed)")
    parser.add_argument("--sizes", default="256,512,1024", help="square input sizes for the predictor")
    args = parser.parse_args()
    torch.manual_seed(0)

    model, info = load_model(resolve_weights(args.weights))
    predictor = Predictor(model)
    print(f"date {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    print(f"weights: {info.source}, {sum(p.numel() for p in model.parameters()):,} parameters")
    peak = matmul_peak()
    print(f"fp32 matmul peak (2048x2048): {peak:.0f} GFLOP/s")

    print(f"\npredictor, end to end, fp32 (max_side {predictor.max_side}: larger inputs run at that size)")
    print(f"{'input':>10} {'runs at':>10} {'GFLOP':>7} {'median ms':>10} {'GFLOP/s':>8} {'of peak':>8}")
    rng = np.random.default_rng(0)
    for size in (int(s) for s in args.sizes.split(",")):
        image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        side = min(size, predictor.max_side or size)
        gflop = forward_gflops(model, side, side)
        seconds = median_seconds(lambda image=image: predictor.predict(image), args.repeats)
        achieved = gflop / seconds
        print(f"{size:>4}x{size:<5} {side:>4}x{side:<5} {gflop:7.2f} {seconds * 1000:10.1f} {achieved:8.1f} "
              f"{achieved / peak:8.0%}")  # fmt: skip

    backends(model, peak, args.repeats)

    classic = UNet(base_width=64, depth=4, upsampling="transpose", norm="batch")
    ours_s, classic_s = forward_seconds(model, 256, args.repeats), forward_seconds(classic, 256, args.repeats)
    print("\nforward pass at 1x3x256x256, fp32, channels_last")
    for name, net, seconds in (("this model", model, ours_s), ("classic U-Net (base 64)", classic, classic_s)):
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:>24}: {params / 1e6:6.2f} M params, {forward_gflops(net, 256, 256):6.1f} GFLOP, "
              f"{seconds * 1000:7.1f} ms")  # fmt: skip
    print(f"{'speed-up':>24}: {classic_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
