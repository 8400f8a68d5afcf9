"""CamVid's test split as a user would send it: python -m benchmarks.camvid_photos [--camvid DIR] [--out DIR]

Writes each test image upscaled 2x (bicubic) and saved as a quality-70 JPEG, with its annotation upscaled 2x by
nearest neighbour (void as the ignore index), into OUT/images and OUT/masks. Score a model on them with

    python -m unet.evaluate --weights checkpoints/camvid --images OUT/images --masks OUT/masks

to see whether it holds up on photos of another size and compression than its training images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from unet.datasets import CamVid


def write_photos(camvid: Path, out: Path, scale: int = 2, quality: int = 70) -> int:
    """Write the upscaled JPEGs and their masks; returns how many pairs."""
    dataset = CamVid(camvid, "test")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for index, (image_path, _) in enumerate(dataset.pairs):
        image, mask = dataset.load_pair(index)
        size = (image.width * scale, image.height * scale)
        image.resize(size, Image.Resampling.BICUBIC).save(out / "images" / f"{image_path.stem}.jpg", quality=quality)
        Image.fromarray(mask).resize(size, Image.Resampling.NEAREST).save(out / "masks" / f"{image_path.stem}.png")
    return len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--camvid", type=Path, default=Path("data/camvid"))
    parser.add_argument("--out", type=Path, default=Path("data/camvid-photos"))
    args = parser.parse_args()
    print(f"wrote {write_photos(args.camvid, args.out)} pairs to {args.out}")


if __name__ == "__main__":
    main()
