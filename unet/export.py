"""Export a U-Net to ONNX, for onnxruntime and other runtimes: python -m unet.export --weights SOURCE --out FILE.onnx

The graph holds the network alone: input `image`, a float32 batch (B, 3, H, W) already normalized by
`unet.preprocessing.image_to_tensor`; output `logits` (B, C, H, W) at the same size. Batch, height and width are free
(height and width of at least 2**depth pixels, 16 for the shipped model, since the graph reflect-pads to a multiple of
it). Turn logits into a mask as `unet.preprocessing.logits_to_probabilities` and `probabilities_to_mask` do: a sigmoid
for one channel, a softmax otherwise.

The export needs the `onnx` package, and the check against PyTorch `onnxruntime` (both in requirements.txt: the
demo serves through onnxruntime where it is faster, `unet.backends`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from unet.hub import WeightsError, add_weights_argument, load_model, resolve_weights
from unet.model import UNet

OPSET = 17
# Shapes the check runs: odd sizes that need padding, a batch of two, and an image wider than tall.
CHECK_SHAPES = ((1, 3, 97, 131), (2, 3, 64, 64), (1, 3, 48, 200))


def export_onnx(model: UNet, path: str | Path, opset: int = OPSET) -> Path:
    """Write `model` (put in eval mode) as an ONNX graph with free batch, height and width; returns the path.

    Args:
        model: The network to export.
        path: The .onnx file to write; its folder is created.
        opset: The ONNX operator set version.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(1, model.in_channels, 97, 131)  # an odd size, so the padding is traced into the graph
    free = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The tracer warns that Python conditions on shapes are frozen; the padding amounts themselves are traced,
        # which the check below confirms on sizes other than the example's.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,  # the dynamo exporter needs onnxscript, and this graph needs nothing it adds
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": free, "logits": free},
            opset_version=opset,
        )
    return path


def max_difference(model: UNet, path: str | Path, shapes: Sequence[tuple[int, ...]] = CHECK_SHAPES) -> float:
    """The largest absolute difference between the logits of onnxruntime on `path` and of `model`, over `shapes`.

    Args:
        model: The network that was exported.
        path: The exported .onnx file.
        shapes: Input shapes (B, C, H, W) to compare on, with random inputs.
    """
    import onnxruntime  # only the check needs it

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in shapes:
        image = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            expected = model.eval()(image).numpy()
        (logits,) = session.run(["logits"], {"image": image.numpy()})
        if logits.shape != expected.shape:
            raise RuntimeError(f"onnxruntime gave logits {logits.shape} for input {shape}; PyTorch {expected.shape}")
        worst = max(worst, float(np.abs(logits - expected).max()))
    return worst


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX operator set version")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch in onnxruntime")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model, info = load_model(resolve_weights(args.weights))
        path = export_onnx(model, args.out, args.opset)
    except WeightsError as error:
        sys.exit(f"error: {error}")
    except torch.onnx.OnnxExporterError as error:  # what torch raises without the onnx package, among others
        sys.exit(f"error: the export failed ({error}); `pip install onnx` if it is missing")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) from {info.describe()}")
    if not args.no_check:
        try:
            difference = max_difference(model, path)
        except ModuleNotFoundError as error:
            sys.exit(f"error: the check needs onnxruntime ({error}): `pip install onnxruntime`, or pass --no-check")
        print(f"onnxruntime vs PyTorch on {len(CHECK_SHAPES)} input shapes: largest logit difference {difference:.2e}")
        if difference > 1e-3:
            sys.exit("error: the exported graph does not compute what the model does")


if __name__ == "__main__":
    main()
