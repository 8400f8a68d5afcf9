"""Pictures: colours at hand-chosen pixels, sizes, and training curves drawn with Pillow alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet.visualize import (
    ERROR_COLORS,
    IGNORE_COLOR,
    PALETTE,
    colorize,
    error_legend,
    error_map,
    legend_image,
    overlay,
    plot_curves,
    side_by_side,
)

TP, FP, FN = ERROR_COLORS["true positive"], ERROR_COLORS["false positive"], ERROR_COLORS["false negative"]


def _grey(width: int, height: int, value: int = 100) -> Image.Image:
    return Image.new("RGB", (width, height), (value, value, value))


def _blend(base: float, color: tuple[int, int, int], alpha: float) -> tuple[int, ...]:
    return tuple(round((1 - alpha) * base + alpha * c) for c in color)


def _blend_down(base: float, color: tuple[int, int, int], alpha: float) -> tuple[int, ...]:
    return tuple(int(base + alpha * (c - base)) for c in color)  # as PIL's Image.blend (the overlay's): rounded down


def _has_color(image: Image.Image, color: tuple[int, int, int], tolerance: int = 12) -> bool:
    pixels = np.asarray(image, dtype=np.int16)
    return bool((np.abs(pixels - np.array(color)).max(axis=-1) <= tolerance).any())


def test_palette_colours_are_distinct() -> None:
    assert len(set(PALETTE)) == len(PALETTE) and IGNORE_COLOR not in PALETTE


def test_colorize() -> None:
    mask = np.array([[0, 1, 2], [255, 19, 20]], dtype=np.uint8)
    pixels = np.asarray(colorize(mask))
    assert pixels.shape == (2, 3, 3)
    assert pixels[0].tolist() == [list(PALETTE[0]), list(PALETTE[1]), list(PALETTE[2])]
    # 255 is "ignore"; class 20 is past the palette's end and reuses the first class colour.
    assert pixels[1].tolist() == [list(IGNORE_COLOR), list(PALETTE[19]), list(PALETTE[1])]


def test_overlay_blends_foreground_and_outlines_it() -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 1
    pixels = np.asarray(overlay(_grey(8, 8), mask, alpha=0.5))
    assert tuple(pixels[0, 0]) == (100, 100, 100)  # background untouched
    assert tuple(pixels[3, 3]) == _blend_down(100, PALETTE[1], 0.5)  # inside the square
    assert tuple(pixels[2, 2]) == PALETTE[1] and tuple(pixels[5, 4]) == PALETTE[1]  # its edge at full colour
    assert tuple(pixels[1, 2]) == (100, 100, 100)  # the outline stays inside the region


def test_overlay_alpha_zero_keeps_only_the_outline() -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 2
    pixels = np.asarray(overlay(_grey(8, 8), mask, alpha=0.0))
    assert tuple(pixels[3, 3]) == (100, 100, 100) and tuple(pixels[2, 3]) == PALETTE[2]


def test_overlay_refuses_a_mask_of_another_size() -> None:
    with pytest.raises(ValueError, match="mask is 4x4 but the image is 8x8"):
        overlay(_grey(8, 8), np.zeros((4, 4), dtype=np.uint8))


def test_error_map_binary_without_image() -> None:
    target = np.array([[1, 1, 0, 0, 255]], dtype=np.uint8)
    pred = np.array([[1, 0, 1, 0, 1]], dtype=np.uint8)
    pixels = [tuple(p) for p in np.asarray(error_map(pred, target))[0]]
    assert pixels == [TP, FN, FP, (0, 0, 0), IGNORE_COLOR]


def test_error_map_binary_over_an_image() -> None:
    target = np.array([[1, 1, 0, 0]], dtype=np.uint8)
    pred = np.array([[1, 0, 1, 0]], dtype=np.uint8)
    pixels = [tuple(p) for p in np.asarray(error_map(pred, target, image=_grey(4, 1), alpha=0.6))[0]]
    dimmed = 100 * 0.4
    assert pixels == [_blend(dimmed, TP, 0.6), _blend(dimmed, FN, 0.6), _blend(dimmed, FP, 0.6), (40, 40, 40)]


def test_error_map_multiclass() -> None:
    # Right class, wrong foreground class (a false positive), missed, predicted on background.
    target = np.array([[2, 2, 1, 0]], dtype=np.uint8)
    pred = np.array([[2, 1, 0, 2]], dtype=np.uint8)
    pixels = [tuple(p) for p in np.asarray(error_map(pred, target))[0]]
    assert pixels == [TP, FP, FN, FP]


def test_error_map_checks_shapes() -> None:
    with pytest.raises(ValueError, match="same"):
        error_map(np.zeros((2, 2), dtype=np.uint8), np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="pred is 2x2 but the image is 3x3"):
        error_map(np.zeros((2, 2), dtype=np.uint8), np.zeros((2, 2), dtype=np.uint8), image=_grey(3, 3))


def test_error_legend() -> None:
    legend = dict(error_legend())
    assert legend["true positive"] == "#009e73" and legend["false positive"] == "#d55e00"
    assert legend["false negative"] == "#0072b2" and "true negative" not in legend
    strip = legend_image(height=24)
    assert strip.height == 24 and _has_color(strip, TP, tolerance=0) and _has_color(strip, FN, tolerance=0)


def test_side_by_side_sizes_and_nearest_resizing() -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8))
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[:, 5:] = 1
    picture = side_by_side([photo, colorize(mask)], titles=["image", "mask"])
    gap, title = 4, round(12 * 1.6)  # smallest gap and title strip for a 20-pixel-high row
    assert picture.size == (40 + 20 + 3 * gap, title + 20 + 2 * gap)
    # The mask doubled to 20x20 with nearest neighbour: still only its two colours.
    panel = picture.crop((gap + 40 + gap, gap + title, gap + 40 + gap + 20, gap + title + 20))
    assert sorted(panel.getcolors()) == [(200, PALETTE[0]), (200, PALETTE[1])]

    plain = side_by_side([photo, photo], height=10)
    assert plain.size == (20 + 20 + 3 * gap, 10 + 2 * gap)
    with pytest.raises(ValueError, match="one title per panel"):
        side_by_side([photo], titles=["a", "b"])


def _history(epochs: int) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_iou": 0.9 - 0.5 / e, "val_dice": 0.95 - 0.4 / e}
        for e in range(1, epochs + 1)
    ]


def test_plot_curves(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    picture = plot_curves(_history(5), path)
    assert picture.size == (900, 360)
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == (900, 360)
    left, right = picture.crop((0, 0, 450, 360)), picture.crop((450, 0, 900, 360))
    # Each series is drawn in its colour, on its own panel.
    assert _has_color(left, (0, 114, 178)) and _has_color(left, (213, 94, 0))
    assert _has_color(right, (0, 158, 115)) and _has_color(right, (204, 121, 167))
    assert not _has_color(right, (213, 94, 0))


def test_plot_curves_one_epoch_and_missing_keys() -> None:
    picture = plot_curves([{"epoch": 1, "train_loss": 0.7, "val_iou": 0.5}], size=(600, 240))
    assert picture.size == (600, 240)
    assert _has_color(picture, (0, 114, 178)) and _has_color(picture, (0, 158, 115))  # single points as markers
    assert not _has_color(picture, (213, 94, 0)) and not _has_color(picture, (204, 121, 167))
    assert plot_curves([]).size == (900, 360)


def test_masks_must_be_class_indices() -> None:
    with pytest.raises(ValueError, match="2-D array of class indices"):
        colorize(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"values 0\.\.300"):
        colorize(np.array([[0, 300]]))
