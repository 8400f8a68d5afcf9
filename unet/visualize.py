"""Pictures of masks and results, drawn with Pillow and NumPy (the training curves with matplotlib), for the app,
evaluation, training and the README.

Masks are `(H, W)` arrays of class indices and `IGNORE_INDEX` (255) marks pixels without a label. Which class, if
any, is background (left undrawn) and which colour each class gets are the model's (`background_class`,
`class_colors`): by default class 0 is background and the colours are `PALETTE`'s. A street-scene model has no
background (its class 0 is the sky) and brings the colours its data set's papers draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from unet.labels import IGNORE_INDEX

Color = tuple[int, int, int]

# Background first, then well separated colours (after Trubetskoy's "20 distinct colours", grey removed because grey
# means "ignored"). Classes past the end of the list reuse the colours in order.
PALETTE: list[Color] = [
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
]
IGNORE_COLOR: Color = (128, 128, 128)

# Okabe-Ito colours, distinguishable with the common colour-vision deficiencies.
ERROR_COLORS: dict[str, Color] = {
    "true positive": (0, 158, 115),
    "false positive": (213, 94, 0),
    "false negative": (0, 114, 178),
    "true negative": (0, 0, 0),
    "ignored": IGNORE_COLOR,
}

_DIM = 0.4  # brightness of the photo under an error map, so the error colours stand out
_BACKGROUND = (255, 255, 255)
_INK = (30, 30, 30)


def _lookup_table() -> np.ndarray:
    """A (256, 3) colour for every possible uint8 class index."""
    table = np.array([PALETTE[1 + (i - 1) % (len(PALETTE) - 1)] for i in range(256)], dtype=np.uint8)
    table[0] = PALETTE[0]
    table[IGNORE_INDEX] = IGNORE_COLOR
    return table


_COLORS = _lookup_table()


def color_table(class_colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """A (256, 3) uint8 colour for every class index: `class_colors` for the first classes (the default palette
    when None), ignored pixels grey, or black where grey is a class's own colour (as CamVid's sky is)."""
    if class_colors is None:
        return _COLORS
    table = _COLORS.copy()
    table[: len(class_colors)] = np.asarray(class_colors, dtype=np.uint8)
    if any(tuple(color) == IGNORE_COLOR for color in class_colors):
        table[IGNORE_INDEX] = (0, 0, 0)
    return table


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _check_mask(mask: np.ndarray, image: Image.Image | None = None, name: str = "mask") -> np.ndarray:
    """Return `mask` as a 2-D integer array, checking it matches the image's size."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name} must be a 2-D array of class indices, got shape {mask.shape} and dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"{name} has values {mask.min()}..{mask.max()}; class indices lie in 0..255")
    if image is not None and mask.shape != (image.height, image.width):
        raise ValueError(
            f"{name} is {mask.shape[1]}x{mask.shape[0]} but the image is {image.width}x{image.height}: "
            "resize the mask with nearest-neighbour resampling to the image's size"
        )
    return mask


def colorize(mask: np.ndarray, class_colors: Sequence[Sequence[int]] | None = None) -> Image.Image:
    """Colour a class-index mask: class i gets `class_colors[i]` (by default `PALETTE[i]`), ignored pixels grey.

    Args:
        mask: `(H, W)` integer array of class indices.
        class_colors: One RGB colour a class (`color_table`).

    Returns:
        An RGB image of the same size.
    """
    mask = _check_mask(mask)
    return Image.fromarray(color_table(class_colors)[mask.astype(np.uint8)], mode="RGB")


def _drawn(mask: np.ndarray, background_class: int | None) -> np.ndarray:
    """Where a mask is drawn: everywhere but the background class (everywhere when there is none)."""
    return np.ones(mask.shape, dtype=bool) if background_class is None else mask != background_class


def _inner_edges(mask: np.ndarray, width: int, background_class: int | None = 0) -> np.ndarray:
    """Pixels of a drawn region that touch another class, thickened to `width` pixels."""
    padded = np.pad(mask, 1, mode="edge")
    edge = np.zeros(mask.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):  # 4-neighbours in the padded array
        edge |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]] != mask
    drawn = _drawn(mask, background_class)
    edge &= drawn
    if width > 1:
        # Grow the edge inwards only: a max filter, then keep what lies inside the same foreground.
        grown = Image.fromarray(edge.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * (width // 2) + 1))
        edge = (np.asarray(grown) > 0) & drawn
    return edge


def overlay(
    image: Image.Image,
    mask: np.ndarray,
    alpha: float = 0.5,
    class_colors: Sequence[Sequence[int]] | None = None,
    background_class: int | None = 0,
) -> Image.Image:
    """Blend the classes of `mask` over `image` and outline each region.

    The background class is left as it is; every other class, ignored pixels included (grey), is mixed with its
    colour at `alpha`, and the inner edge of each region is drawn in the class colour at full strength so that the
    outline reads even at low `alpha`.

    Args:
        image: the picture the mask belongs to.
        mask: `(H, W)` integer array of class indices, the size of `image`.
        alpha: opacity of the class colours, from 0 (image only) to 1 (colours only).
        class_colors: One RGB colour a class (`color_table`); the default palette when None.
        background_class: The class left undrawn; None draws every class.

    Returns:
        An RGB image of the same size.
    """
    image = image.convert("RGB")
    mask = _check_mask(mask, image)
    colors = Image.fromarray(color_table(class_colors)[mask.astype(np.uint8)], mode="RGB")
    drawn = Image.fromarray(_drawn(mask, background_class).astype(np.uint8) * 255, mode="L")
    out = Image.composite(Image.blend(image, colors, alpha), image, drawn)  # PIL's blends: twice numpy's speed
    edge = _inner_edges(mask, max(1, min(mask.shape) // 300), background_class)
    out.paste(colors, mask=Image.fromarray(edge.astype(np.uint8) * 255, mode="L"))
    return out


def error_map(
    pred: np.ndarray,
    target: np.ndarray,
    image: Image.Image | None = None,
    alpha: float = 0.6,
    background_class: int | None = 0,
) -> Image.Image:
    """Colour every pixel by how the prediction compares with the ground truth (see `ERROR_COLORS`).

    - true positive: `pred == target` and both are foreground (not the background class);
    - false positive: `pred` is foreground but differs from `target` (a wrong foreground class counts here);
    - false negative: `target` is foreground and `pred` is background;
    - true negative: both are background, shown as the dimmed image (black without an image);
    - ignored: `target == IGNORE_INDEX`, grey.
    For a binary mask these are the usual foreground counts. Without a background class (`background_class` None)
    every labelled pixel is a true positive or, given another class, a false positive; a pixel the prediction left
    unlabelled (`IGNORE_INDEX`) is a false negative.

    Args:
        pred: `(H, W)` predicted class indices.
        target: `(H, W)` ground-truth class indices, the same size.
        image: optional picture underneath; without one the colours are drawn on black.
        alpha: opacity of the error colours over the dimmed image.
        background_class: the class that means "nothing here"; None when every class is something.

    Returns:
        An RGB image of the masks' size.
    """
    pred = _check_mask(pred, name="pred")
    target = _check_mask(target, name="target")
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape} but target has shape {target.shape}: they must be the same")
    ignored = target == IGNORE_INDEX
    empty = IGNORE_INDEX if background_class is None else background_class  # what "predicted nothing" is
    categories = {
        "true positive": (pred == target) & (target != empty),
        "false positive": (pred != empty) & (pred != target),
        "false negative": (target != empty) & (pred == empty),
    }
    if image is None:
        base = np.zeros((*pred.shape, 3), dtype=np.float32)
        alpha = 1.0
    else:
        image = image.convert("RGB")
        _check_mask(pred, image, name="pred")
        base = np.asarray(image, dtype=np.float32) * _DIM
    out = base.copy()
    for name, where in categories.items():
        where = where & ~ignored
        out[where] = (1 - alpha) * base[where] + alpha * np.array(ERROR_COLORS[name], dtype=np.float32)
    out[ignored] = (1 - alpha) * base[ignored] + alpha * np.array(IGNORE_COLOR, dtype=np.float32)
    return Image.fromarray(np.rint(out).astype(np.uint8), mode="RGB")


# What the error colours mean for a model without a background class (`error_map`).
_NO_BACKGROUND_LABELS = {
    "true positive": "right class",
    "false positive": "wrong class",
    "false negative": "left unlabelled",
}


def error_legend(background_class: int | None = 0) -> list[tuple[str, str]]:
    """The error map's legend as (label, "#rrggbb") pairs; true negatives are the dimmed image and not listed.

    Without a background class the same colours read "right class", "wrong class" and "left unlabelled".
    """
    return [
        (
            name if background_class is not None else _NO_BACKGROUND_LABELS.get(name, name),
            "#{:02x}{:02x}{:02x}".format(*color),
        )
        for name, color in ERROR_COLORS.items()
        if name != "true negative"
    ]


def legend_image(entries: Sequence[tuple[str, str]] | None = None, height: int = 24) -> Image.Image:
    """Draw a one-row legend of colour swatches and labels (the error map's legend by default).

    Args:
        entries: (label, colour) pairs; a colour is anything Pillow accepts, e.g. "#009e73".
        height: height of the strip in pixels.
    """
    entries = error_legend() if entries is None else entries
    font = _font(max(10, round(height * 0.6)))
    swatch, gap = round(height * 0.6), round(height * 0.4)
    widths = [swatch + gap // 2 + round(font.getlength(label)) for label, _ in entries]
    strip = Image.new("RGB", (sum(widths) + gap * (len(entries) + 1), height), _BACKGROUND)
    draw = ImageDraw.Draw(strip)
    x = gap
    for (label, color), width in zip(entries, widths, strict=True):
        top = (height - swatch) // 2
        draw.rectangle((x, top, x + swatch - 1, top + swatch - 1), fill=color, outline=_INK)
        draw.text((x + swatch + gap // 2, height / 2), label, fill=_INK, font=font, anchor="lm")
        x += width + gap
    return strip


def _resize_to_height(panel: Image.Image, height: int) -> Image.Image:
    if panel.height == height:
        return panel
    width = max(1, round(panel.width * height / panel.height))
    # At most 256 colours means a mask or a colour map: keep its class edges crisp.
    is_map = panel.getcolors(maxcolors=256) is not None
    return panel.resize((width, height), Image.Resampling.NEAREST if is_map else Image.Resampling.LANCZOS)


def side_by_side(panels: list[Image.Image], titles: list[str] | None = None, height: int | None = None) -> Image.Image:
    """Put pictures in a row at a common height, with a title above each.

    Panels with at most 256 colours (masks, colour maps) are resized with nearest neighbour, photos with Lanczos.

    Args:
        panels: the pictures, left to right.
        titles: one title per panel, or None for no title strip.
        height: the common height; the tallest panel's height by default.
    """
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"got {len(titles)} titles for {len(panels)} panels: give one title per panel")
    height = height or max(panel.height for panel in panels)
    resized = [_resize_to_height(panel.convert("RGB"), height) for panel in panels]
    gap = max(4, height // 64)
    font = _font(max(12, min(28, height // 16)))
    title_height = 0 if titles is None else round(font.size * 1.6)
    width = sum(panel.width for panel in resized) + gap * (len(resized) + 1)
    canvas = Image.new("RGB", (width, title_height + height + 2 * gap), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x = gap
    for i, panel in enumerate(resized):
        if titles is not None:
            draw.text((x + panel.width / 2, gap + title_height / 2), titles[i], fill=_INK, font=font, anchor="mm")
        canvas.paste(panel, (x, gap + title_height))
        x += panel.width + gap
    return canvas


# Training curves ------------------------------------------------------------------------------------------------------

_SERIES_COLORS: dict[str, Color] = {
    "train_loss": (0, 114, 178),
    "val_loss": (213, 94, 0),
    "val_iou": (0, 158, 115),
    "val_dice": (204, 121, 167),
}
_SERIES_LABELS = {"train_loss": "train loss", "val_loss": "val loss", "val_iou": "val IoU", "val_dice": "val Dice"}


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """The epochs and values of `key`, skipping epochs where it is missing or not a finite number."""
    epochs, values = [], []
    for index, row in enumerate(history):
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            epochs.append(float(row.get("epoch", index + 1)))
            values.append(float(value))
    return epochs, values


def plot_curves(history: list[dict], path: str | Path | None = None, size: tuple[int, int] = (900, 360)) -> Image.Image:
    """Draw the training curves with matplotlib: losses on the left, validation IoU and Dice (0 to 1) on the right.

    Args:
        history: one dict per epoch, e.g. `{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_iou": 0.7,
            "val_dice": 0.8}`; missing keys and non-finite values are skipped, a missing "epoch" counts from 1.
        path: where to save the picture as PNG, or None.
        size: (width, height) of the picture in pixels.

    Returns:
        The picture as an RGB image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only training and the docs draw charts
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    dpi = 100
    figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, layout="constrained")
    figure.suptitle("Training curves")
    panels = (("Loss", ("train_loss", "val_loss"), "upper right"), ("Scores", ("val_iou", "val_dice"), "lower right"))
    for axes, (title, keys, corner) in zip(figure.subplots(1, 2), panels, strict=True):
        axes.set(title=title, xlabel="epoch")
        axes.grid(color="#e1e1e1")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        drawn = False
        for key in keys:
            epochs, values = _series(history, key)
            if values:
                color = "#{:02x}{:02x}{:02x}".format(*_SERIES_COLORS[key])
                marker = "o" if len(values) <= 20 else None  # markers help short runs; one epoch has no line
                axes.plot(epochs, values, color=color, linewidth=2, marker=marker, label=_SERIES_LABELS[key])
                drawn = True
        if title == "Scores":
            axes.set_ylim(0, 1)
        else:
            axes.set_ylim(bottom=0)
        if drawn:
            axes.legend(loc=corner)  # losses fall and scores rise: each legend where its curves usually are not
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    picture = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    if picture.size != tuple(size):  # constrained layout keeps the figure's size; rounding may not
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    if path is not None:
        picture.save(path, format="PNG")
    return picture
