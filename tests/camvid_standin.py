"""A tiny CamVid in the SegNet tutorial's layout, made in the test: what the reader, the fetch command and the
trainer are tried on (no test downloads the real data set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unet.datasets import CAMVID_SPLITS, CAMVID_VOID

WIDTH, HEIGHT = 48, 32


def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A street-like picture and its annotation: sky (0) on top, building (1) in the middle, road (3) below, a car
    (8) on the road, a strip of void (11) at the bottom; each class its own colour plus noise."""
    values = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    values[HEIGHT // 4 : HEIGHT // 2] = 1
    values[HEIGHT // 2 :] = 3
    left = int(rng.integers(0, WIDTH - 16))
    values[HEIGHT // 2 + 2 : HEIGHT // 2 + 10, left : left + 14] = 8
    values[-3:] = CAMVID_VOID
    colours = np.array([[130, 180, 230], [150, 60, 40], [0, 0, 0], [90, 90, 90]] + [[0, 0, 0]] * 4 +
                       [[220, 30, 30]] + [[0, 0, 0]] * 3, dtype=np.int16)  # fmt: skip
    noise = rng.integers(-15, 16, (HEIGHT, WIDTH, 3))
    pixels = np.clip(colours[values] + noise, 0, 255).astype(np.uint8)
    return pixels, values


def write_camvid(root: Path, counts: dict[str, int] | None = None, seed: int = 0) -> Path:
    """`root/{train,val,test}/*.png` with `root/{split}annot/*.png`, as the SegNet tutorial lays CamVid out."""
    counts = counts or {"train": 6, "val": 3, "test": 2}
    rng = np.random.default_rng(seed)
    for split in CAMVID_SPLITS:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for index in range(counts[split]):
            pixels, values = scene(rng)
            name = f"0001TP_{index:06d}.png"
            Image.fromarray(pixels).save(root / split / name)
            Image.fromarray(values).save(root / f"{split}annot" / name)
    return root
