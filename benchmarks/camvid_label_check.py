"""Do the labels of CamVid test frame Seq05VD_f02610 belong to it? (docs/camvid.md, "The worst test image ...")

    .venv/bin/python -m benchmarks.camvid_label_check [--camvid data/camvid]

Prints how alike the frame and its two neighbours are (mean absolute difference of the images, per pixel and
channel), how well their label images agree with each other (mIoU), and how the bundled street-scene model's mask
of the frame scores against each of the three label images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from unet import Predictor, load_model
from unet.labels import IGNORE_INDEX
from unet.metrics import iou

FRAMES = ("Seq05VD_f02580", "Seq05VD_f02610", "Seq05VD_f02640")
CAMVID_VOID = 11


def labels(root: Path, frame: str) -> np.ndarray:
    mask = np.array(Image.open(root / "testannot" / f"{frame}.png"))
    mask[mask == CAMVID_VOID] = IGNORE_INDEX
    return mask


def picture(root: Path, frame: str) -> np.ndarray:
    return np.asarray(Image.open(root / "test" / f"{frame}.png"), dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--camvid", type=Path, default=Path("data/camvid"), help="CamVid's folder (unet.camvid)")
    root = parser.parse_args().camvid
    model, info = load_model("checkpoints/camvid")
    prediction = Predictor(model, info.settings.max_side).predict(root / "test" / f"{FRAMES[1]}.png").mask
    for first, second in ((FRAMES[0], FRAMES[1]), (FRAMES[1], FRAMES[2]), (FRAMES[0], FRAMES[2])):
        difference = np.abs(picture(root, first) - picture(root, second)).mean()
        agreement = np.nanmean(iou(labels(root, first), labels(root, second), 11))
        print(f"{first} vs {second}: images differ by {difference:.1f}, labels agree at mIoU {agreement:.3f}")
    for frame in FRAMES:
        score = np.nanmean(iou(prediction, labels(root, frame), 11))
        print(f"the mask of {FRAMES[1]} against the labels of {frame}: mIoU {score:.3f}")


if __name__ == "__main__":
    main()
