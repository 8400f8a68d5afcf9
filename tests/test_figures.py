"""The README's figures script: it writes the three pictures (four with a built composite set), each of a sensible
size and not blank, the same on every run, and traces the U-Net's real shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from docs.make_figures import (
    AUGMENT_EXAMPLE,
    COMPOSITE_SIZE,
    EXAMPLES,
    TASKS_EXAMPLE,
    augmentation_figure,
    composites_figure,
    main,
    tasks_figure,
    tasks_mask,
    trace_shapes,
)
from unet.composites import load_sources
from unet.model import UNet
from unet.preprocessing import load_image, load_mask

pytestmark = pytest.mark.usefixtures("one_thread")

# name: (least width, most width, least height)
FIGURES = {
    "tasks.png": (800, 1200, 300),
    "augmentation.png": (700, 1200, 500),
    "unet.png": (900, 1200, 500),
    "camvid-unet-curves.png": (900, 900, 360),
}


def test_main_writes_its_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path)])  # no --weights: every picture comes from the examples and a fresh UNet
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(FIGURES)
    for name, (min_width, max_width, min_height) in FIGURES.items():
        path = tmp_path / name
        assert 10_000 < path.stat().st_size < 300_000, name  # small enough for the repository
        with Image.open(path) as picture:
            assert picture.format == "PNG"
            assert min_width <= picture.width <= max_width and picture.height >= min_height, (name, picture.size)
            pixels = np.asarray(picture.convert("RGB"))
        assert pixels.std() > 20, name  # not blank
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, name  # more than a few flat colours
        white = (pixels == 255).all(axis=-1).mean()
        assert 0.02 < white < 0.95, name  # a white canvas with something drawn on it
    printed = capsys.readouterr().out
    assert all(f"wrote {tmp_path / name}" in printed for name in FIGURES)


def test_augmentation_figure_is_the_same_every_run() -> None:
    image = load_image(EXAMPLES / "images" / f"{AUGMENT_EXAMPLE}.jpg")
    mask = load_mask(EXAMPLES / "masks" / f"{AUGMENT_EXAMPLE}.png")
    torch.manual_seed(123)  # whatever the global state, the figure seeds its own draws
    first = np.asarray(augmentation_figure(image, mask, draws=2))
    second = np.asarray(augmentation_figure(image, mask, draws=2))
    assert np.array_equal(first, second)


def test_trace_shapes_follows_the_u() -> None:
    shapes = trace_shapes(UNet(base_width=16, depth=4), size=256)
    assert shapes["inc"] == [(3, 256, 256), (16, 256, 256)]
    assert [shapes[f"down{i}"][-1] for i in range(1, 5)] == [(32, 128, 128), (64, 64, 64), (128, 32, 32), (256, 16, 16)]
    # Each Up takes the level below and the skip of its own level: [x, skip, output].
    assert shapes["up1"] == [(256, 16, 16), (128, 32, 32), (128, 32, 32)]
    assert shapes["up4"] == [(32, 128, 128), (16, 256, 256), (16, 256, 256)]
    assert shapes["head"] == [(16, 256, 256), (1, 256, 256)]


def test_tasks_figure_from_a_prediction(tmp_path: Path) -> None:
    """With --weights the tasks figure shows the model's mask, named by the model's classes."""
    torch.manual_seed(0)
    UNet(num_classes=3, base_width=4, depth=2, class_names=["ground", "pawn", "king"]).save_pretrained(tmp_path)
    image = load_image(EXAMPLES / "images" / f"{TASKS_EXAMPLE}.jpg")
    mask, names, source = tasks_mask(image, str(tmp_path))
    assert mask.shape == (image.height, image.width) and mask.max() <= 2
    assert names == ["ground", "pawn", "king"] and source == "prediction"
    assert tasks_figure(image, mask, names, source).width > 4 * 200

    truth, names, source = tasks_mask(image, None)
    assert set(np.unique(truth).tolist()) == {0, 1} and names == ["background", "foreground"]


def test_bad_weights_exit_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--weights", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert str(exit_info.value.code).startswith("error: ") and "neither an existing folder" in str(exit_info.value.code)


def test_composites_figure_from_a_built_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--data draws composites.png from a built set's train sources: 3 rows of 4, the same on every run."""
    rng = np.random.default_rng(0)
    for index in range(3):
        folder = tmp_path / "set" / "backgrounds" / "train"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / f"photo{index}.jpg")
        disc = np.zeros((48, 48, 4), dtype=np.uint8)
        rows, cols = np.mgrid[:48, :48]
        disc[(rows - 24) ** 2 + (cols - 24) ** 2 < 400] = (200, 40 * index, 40, 255)
        folder = tmp_path / "set" / "cutouts" / "train"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(disc, "RGBA").save(folder / f"disc{index}.png")

    main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "set")])
    assert f"wrote {tmp_path / 'out' / 'composites.png'}" in capsys.readouterr().out
    with Image.open(tmp_path / "out" / "composites.png") as picture:
        first = np.asarray(picture.convert("RGB"))
    assert first.shape[1] >= 4 * COMPOSITE_SIZE and first.shape[0] >= 3 * COMPOSITE_SIZE

    backgrounds, cutouts = load_sources(tmp_path / "set", "train")
    again = np.asarray(composites_figure(backgrounds, cutouts))
    assert np.array_equal(again, np.asarray(composites_figure(backgrounds, cutouts)))

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "unbuilt")])
    assert "build the data set first" in str(exit_info.value.code)
