"""Segment images: python -m unet.predict [--weights SOURCE] IMAGE... --out DIR

For each image it writes `DIR/<stem>.png`, the class mask (pixel value = class index, the image's size), and
`DIR/<stem>_overlay.png`, the mask drawn over the image.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unet.hub import WeightsError, add_weights_argument, load_model, resolve_weights
from unet.model import UNet
from unet.postprocess import drop_unsure_regions
from unet.preprocessing import (
    ImageError,
    image_to_tensor,
    load_image,
    logits_to_probabilities,
    mask_to_image,
    probabilities_to_mask,
    resize_for_model,
)
from unet.settings import TTA_HELP, InferenceSettings
from unet.visualize import overlay

log = logging.getLogger("unet.predict")

DEFAULT_MAX_SIDE = InferenceSettings.max_side
MIRRORS = ((), (-1,), (-2,), (-2, -1))  # the dims to flip: as is, left-right, up-down, both
# Test-time augmentation: the views whose predictions are averaged, each as (transposed?, dims to flip). "flip" is the
# four mirror images; "dihedral" adds the four of the transposed image, which makes all eight ways to turn a picture
# by quarter turns and mirror it.
TTA_VIEWS: dict[str, tuple[tuple[bool, tuple[int, ...]], ...]] = {
    "none": ((False, ()),),
    "flip": tuple((False, dims) for dims in MIRRORS),
    "dihedral": tuple((transposed, dims) for transposed in (False, True) for dims in MIRRORS),
    "hflip": ((False, ()), (False, (-1,))),  # the image and its left-right mirror: for scenes with an up and down
}


@dataclass(frozen=True)
class Prediction:
    """A class mask with the input's size, the per-class probabilities behind it, and the time it took."""

    mask: np.ndarray  # (H, W) uint8 class indices, the image's size
    probabilities: np.ndarray  # (num_labels, h, w) float32 at the network's resolution (`Predictor.probabilities`)
    seconds: float

    def foreground_share(self, background_class: int = 0) -> float:
        """Share of pixels given a class other than the background class."""
        return foreground_share(self.mask, background_class)

    def class_shares(self, class_names: Sequence[str]) -> dict[str, float]:
        """Share of the pixels given each class, largest first; classes given no pixel are left out."""
        return class_shares(self.mask, class_names)


def foreground_share(mask: np.ndarray, background_class: int = 0) -> float:
    """Share of the pixels of `mask` given a class other than the background class."""
    return float((mask != background_class).mean())


def class_shares(mask: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Share of the pixels of `mask` given each class, largest first; classes given no pixel are left out."""
    counts = np.bincount(mask.ravel(), minlength=len(class_names))[: len(class_names)]
    shares = {name: float(count / mask.size) for name, count in zip(class_names, counts, strict=True)}
    return dict(sorted(((name, share) for name, share in shares.items() if share > 0), key=lambda kv: -kv[1]))


class Predictor:
    """Turn images into class masks with a U-Net, the same preprocessing as training.

    Args:
        model: The network; it is put in eval mode.
        max_side: Images whose longer side exceeds it are shrunk to it for the forward pass (the mask is scaled back
            to the input's size). It bounds the time and memory of huge uploads; None runs at full size.
        device: Where to run; by default the model's device.

    `forward` runs the network on a batch: the model itself (eager fp32) unless a server gives it a faster way
    whose masks agree (`unet.backends.choose_forward`).
    """

    def __init__(self, model: UNet, max_side: int | None = DEFAULT_MAX_SIDE, device: torch.device | None = None):
        self.device = device or next(model.parameters()).device
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        self.max_side = max_side

    @torch.inference_mode()
    def probabilities(self, image: Image.Image, tta: str = "none") -> torch.Tensor:
        """Per-class probabilities (num_labels, h, w) at the size the network saw: the image's, or, for an image
        larger than `max_side`, the shrunk copy's (`resize_for_model`).

        `tta` names the test-time augmentation (`TTA_VIEWS`): every view of the image goes through the model, the
        mirror images of one orientation as one batch, and their logits, turned back, are averaged.
        """
        if tta not in TTA_VIEWS:
            raise ValueError(f"unknown test-time augmentation {tta!r}: choose one of {', '.join(TTA_VIEWS)}")
        seen = resize_for_model(image, self.max_side)
        image_tensor = image_to_tensor(seen)[None].to(self.device)
        logits = []
        for transposed in (False, True):  # a transposed picture has another shape unless square: its own batch
            mirrors = [dims for view_transposed, dims in TTA_VIEWS[tta] if view_transposed == transposed]
            if not mirrors:
                continue
            base = image_tensor.transpose(-2, -1) if transposed else image_tensor
            views = [base.flip(dims) if dims else base for dims in mirrors]  # flip(()) would copy the image
            batch = (torch.cat(views) if len(views) > 1 else views[0]).contiguous(memory_format=torch.channels_last)
            for view_logits, dims in zip(self.forward(batch), mirrors, strict=True):
                view_logits = view_logits.flip(dims) if dims else view_logits
                logits.append(view_logits.transpose(-2, -1) if transposed else view_logits)
        mean = torch.stack(logits).mean(0) if len(logits) > 1 else logits[0]
        return logits_to_probabilities(mean, (seen.height, seen.width))

    def predict(
        self, image: Image.Image | str | Path, threshold: float = 0.5, tta: str = "none", min_confidence: float = 0.0
    ) -> Prediction:
        """Segment one image (a PIL image, or a path read with `load_image`).

        `threshold` applies to binary models: the foreground probability a pixel needs to count as foreground.
        `tta` names the test-time augmentation (`TTA_VIEWS`; `probabilities`).
        `min_confidence` above 0 drops the regions the model is less sure of on average (`drop_unsure_regions`).
        """
        started = time.perf_counter()
        image = image if isinstance(image, Image.Image) and image.mode == "RGB" else load_image(image)
        probabilities = self.probabilities(image, tta).numpy()
        mask = self.mask(probabilities, image.size, threshold, min_confidence)
        return Prediction(mask, probabilities, time.perf_counter() - started)

    def mask(
        self, probabilities: np.ndarray, size: tuple[int, int], threshold: float = 0.5, min_confidence: float = 0.0
    ) -> np.ndarray:
        """The class mask at `size` (width, height) from the probabilities at the network's resolution
        (`probabilities`): thresholded or arg-maxed, unsure regions dropped (`predict` says how), and then, only
        the finished mask, scaled to `size` once."""
        mask = probabilities_to_mask(torch.from_numpy(probabilities), threshold)
        mask = drop_unsure_regions(mask, probabilities, min_confidence, self.model.background_class)
        if mask.shape != (size[1], size[0]):
            mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
        return mask


def predict_files(
    predictor: Predictor, paths: Sequence[Path], out: Path, threshold: float, tta: str, min_confidence: float = 0.0
) -> int:
    """Write mask and overlay PNGs for each path; returns how many images failed (each reported on stderr)."""
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in paths:
        try:
            image = load_image(path)
        except (ImageError, OSError) as error:
            print(f"skipped {path}: {error}", file=sys.stderr)
            failures += 1
            continue
        prediction = predictor.predict(image, threshold, tta, min_confidence)
        model = predictor.model
        mask_to_image(prediction.mask).save(out / f"{path.stem}.png")
        overlay(image, prediction.mask, 0.5, model.class_colors, model.background_class).save(
            out / f"{path.stem}_overlay.png"
        )
        if model.background_class is None:  # every class is something: say which the picture holds most
            top = list(prediction.class_shares(model.class_names).items())[:3]
            content = ", ".join(f"{name} {share:.0%}" for name, share in top)
        else:
            content = f"{prediction.foreground_share(model.background_class):.1%} foreground"
        print(f"{path} -> {out / path.stem}.png  ({content}, {prediction.seconds * 1000:.0f} ms)")
    return failures


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the commands that make masks (predict, evaluate): --threshold, --tta (and --flip, its short form
    for `--tta flip`), --min-confidence and --max-side. Each left out takes the model's `inference.json` value, else
    the library's default (`InferenceSettings`); `inference_settings` merges them."""
    default = InferenceSettings()
    from_model = "default: the model's inference.json, else"
    parser.add_argument(
        "--threshold", type=float, help=f"foreground probability cut, binary models ({from_model} {default.threshold})"
    )
    parser.add_argument(
        "--tta",
        choices=list(TTA_VIEWS),
        help=f"test-time augmentation ({from_model} {default.tta}): "
        + "; ".join(f"{name}: {text}" for name, text in TTA_HELP.items()),
    )
    parser.add_argument("--flip", dest="tta", action="store_const", const="flip", help="the same as --tta flip")
    parser.add_argument(
        "--min-confidence",
        type=float,
        help="drop predicted regions whose mean probability of their class is below this "
        f"({from_model} {default.min_confidence}: keep all)",
    )
    parser.add_argument(
        "--max-side", type=int, help=f"shrink larger images to this side ({from_model} {default.max_side})"
    )


def inference_settings(args: argparse.Namespace, model_settings: InferenceSettings) -> InferenceSettings:
    """The model's settings with the flags given on the command line in their place.

    Raises:
        ValueError: A flag's value is out of range (the message names the setting).
    """
    given = {name: getattr(args, name) for name in ("threshold", "tta", "min_confidence", "max_side")}
    return dataclasses.replace(model_settings, **{name: value for name, value in given.items() if value is not None})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, WebP, BMP, TIFF)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the masks and overlays")
    add_weights_argument(parser)
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    for flag, value in (("--threshold", args.threshold), ("--min-confidence", args.min_confidence)):
        if value is not None and not 0 <= value <= 1:  # also refuses nan
            parser.error(f"{flag} is a probability: give a value from 0 to 1, not {value}")
    if args.max_side is not None and args.max_side < 1:
        parser.error(f"--max-side is the longest side in pixels the model sees: give 1 or more, not {args.max_side}")
    shared = sorted(stem for stem, count in Counter(path.stem for path in args.images).items() if count > 1)
    if shared:
        parser.error(
            f"these inputs share a file name stem, so their masks would overwrite each other: {', '.join(shared)}; "
            "rename them or run them into separate --out folders"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model, info = load_model(resolve_weights(args.weights))
    except WeightsError as error:  # a message, as evaluate and hub give, not a traceback
        sys.exit(f"error: {error}")
    settings = inference_settings(args, info.settings)
    predictor = Predictor(model, settings.max_side)
    failures = predict_files(
        predictor, args.images, args.out, settings.threshold, settings.tta, settings.min_confidence
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
