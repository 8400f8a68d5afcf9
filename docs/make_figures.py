"""Draw the README's pictures with the package's own code: python docs/make_figures.py [--weights W] [--data D]

- `tasks.png`: one example as image, semantic mask, instance map and panoptic map (`unet.instances`), from its
  ground-truth mask, or from a model's prediction with `--weights`;
- `augmentation.png`: one example and random draws of `unet.augment.train_transform` as the shipped model was trained,
  the mask drawn over each;
- `unet.png`: the U-Net's levels, their channels and resolutions traced from a real `UNet(base_width=16, depth=4)`;
- `composites.png`, with `--data DIR` (a set built by `python -m unet.composites`): training composites drawn from
  its train cut-outs, on its photographs, on them turned and recoloured, and on generated backgrounds, each with its
  mask outlined;
- `camvid-unet-curves.png`: the from-scratch U-Net's training curves (`unet.visualize.plot_curves`, as training
  draws every run's `curves.png`) from its recorded `docs/camvid-unet-history.json`.

Every random draw is seeded, so the pictures come out the same on every run.
"""

# ruff: noqa: E402 (the imports of the package follow the sys.path line below)

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python docs/make_figures.py` puts docs/, not the repository, on the path
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from unet.augment import train_transform
from unet.composites import CompositeRecipe, compose, load_sources
from unet.hub import WeightsError, load_model
from unet.instances import describe_instances, instances_from_semantic, panoptic_from_semantic
from unet.labels import IGNORE_INDEX, default_class_names
from unet.model import UNet
from unet.predict import Predictor
from unet.preprocessing import load_image, load_mask, tensor_to_image
from unet.visualize import PALETTE, colorize, legend_image, overlay, plot_curves, side_by_side

EXAMPLES = ROOT / "examples" / "composites"
TASKS_EXAMPLE = "test_0006"  # a notebook and a floppy disk: one class, two objects
AUGMENT_EXAMPLE = "test_0008"  # two playing cards and a pen, with corners a rotation shows off
AUGMENT_SIZE = 176  # the shipped model's training crop size
AUGMENT_PANEL = 256  # each crop's height on the page
AUGMENT_JPEG = {"jpeg_p": 0.5, "jpeg_quality": (75, 100)}  # and its JPEG round trips, as scripts/train.sh sets them
AUGMENT_DRAWS = 5
MASK_ALPHA = 0.35  # light enough to see the object under its mask
SEED = 0
COMPOSITE_SIZE = 200  # the training composites' side (176 px crops are cut from 1.15x that)
COMPOSITES_PER_ROW = 4
LABEL_DIVISOR = 1000
MAX_BOXES = 20  # instance boxes drawn on tasks.png when there are no more instances than this
LEGEND_ENTRIES = 5  # at most this many panoptic segments named under tasks.png
# The from-scratch U-Net's run is not shipped: its recorded history is kept in docs/ to draw its curves from.
UNET_HISTORY = ROOT / "docs" / "camvid-unet-history.json"

WHITE, INK, MUTED = (255, 255, 255), (30, 30, 30), (110, 110, 110)
# Okabe-Ito colours for the diagram's arrows and boxes.
POOL_COLOR, UP_COLOR, SKIP_COLOR = (213, 94, 0), (0, 158, 115), (0, 114, 178)
BOX_COLORS = {
    "contracting": ((222, 235, 247), (0, 114, 178)),  # (fill, outline)
    "bottleneck": ((234, 224, 242), (120, 70, 160)),
    "expanding": ((222, 242, 232), (0, 128, 90)),
    "tensor": ((245, 245, 245), (110, 110, 110)),
}


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=round(size))


def _save(picture: Image.Image, path: Path, photo: bool = False) -> Path:
    """Save as an optimized PNG; pictures with photos go down to 256 dithered colours, a third of the bytes."""
    if photo:
        picture = picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    picture.save(path, format="PNG", optimize=True)
    return path


def _stack(rows: list[Image.Image]) -> Image.Image:
    """Put pictures one under another, centred on a white canvas."""
    width = max(row.width for row in rows)
    canvas = Image.new("RGB", (width, sum(row.height for row in rows)), WHITE)
    y = 0
    for row in rows:
        canvas.paste(row, ((width - row.width) // 2, y))
        y += row.height
    return canvas


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


# Semantic, instance and panoptic --------------------------------------------------------------------------------------


def _shade(color: tuple[int, int, int], instance: int) -> tuple[int, int, int]:
    """The class colour for instance 1, lighter shades for the next ones (golden-ratio steps, so they differ)."""
    lighten = ((instance - 1) * 0.618) % 1 * 0.65
    return tuple(round(c + (255 - c) * lighten) for c in color)


def _panoptic_picture(panoptic: np.ndarray, names: Sequence[str]) -> tuple[Image.Image, list[tuple[str, str]]]:
    """Colour a panoptic map (stuff: the class colour, things: shades of it) and return its legend entries."""
    pixels = np.zeros((*panoptic.shape, 3), dtype=np.uint8)
    legend = []
    for segment in np.unique(panoptic):
        label, instance = divmod(int(segment), LABEL_DIVISOR)
        color = PALETTE[label % len(PALETTE)] if instance == 0 else _shade(PALETTE[label % len(PALETTE)], instance)
        pixels[panoptic == segment] = color
        name = names[label] if label < len(names) else f"class {label}"
        legend.append((f"{segment} = {name}" + (f" #{instance}" if instance else " (stuff)"), _hex(color)))
    return Image.fromarray(pixels), legend


def _instance_picture(instances: np.ndarray) -> Image.Image:
    """Colour each instance on its own and, when there are a few, draw their boxes and ids (`describe_instances`)."""
    # Ids past 254 reuse the colours, never 255, which colorize draws as "ignored" grey.
    picture = colorize(np.where(instances > 0, (instances - 1) % 254 + 1, 0).astype(np.uint8))
    if instances.max() > MAX_BOXES:  # boxes of a noisy prediction would cover the picture
        return picture
    draw = ImageDraw.Draw(picture)
    font = _font(max(12, min(instances.shape) // 14))
    for entry in describe_instances(instances):
        x0, y0, x1, y1 = entry["bbox"]
        draw.rectangle((x0, y0, x1, y1), outline=WHITE, width=2)
        draw.text((x0 + 4, y0 + 2), str(entry["id"]), fill=WHITE, font=font)
    return picture


def tasks_figure(image: Image.Image, mask: np.ndarray, names: Sequence[str], source: str) -> Image.Image:
    """Image | semantic mask | instance map | panoptic map, with a legend of the panoptic ids underneath."""
    things = range(1, len(names))  # every class but the background counts objects here
    instances = instances_from_semantic(mask)
    panoptic = panoptic_from_semantic(mask, things, label_divisor=LABEL_DIVISOR)
    panoptic_picture, legend = _panoptic_picture(panoptic, names)
    count = int(instances.max())
    row = side_by_side(
        [image, colorize(mask), _instance_picture(instances), panoptic_picture],
        [
            "image",
            f"semantic ({source})",
            f"instance ({count} object{'s' * (count != 1)})",
            f"panoptic (class x {LABEL_DIVISOR} + id)",
        ],
        height=300,
    )
    if len(legend) > LEGEND_ENTRIES:  # a noisy prediction can have dozens of segments
        legend = [*legend[: LEGEND_ENTRIES - 1], (f"... {len(legend) - LEGEND_ENTRIES + 1} more segments", "#ffffff")]
    return _stack([row, legend_image(legend, height=28)])


# Augmentation -------------------------------------------------------------------------------------------------------


def augmentation_figure(image: Image.Image, mask: np.ndarray, draws: int = AUGMENT_DRAWS) -> Image.Image:
    """The example, then `draws` seeded draws of the shipped model's training transform, each as the image with its
    mask over it."""
    transform = train_transform(AUGMENT_SIZE, **AUGMENT_JPEG)
    torch.manual_seed(SEED)
    panels = [overlay(image, mask, alpha=MASK_ALPHA)]
    for _ in range(draws):
        tensor, labels = transform(image, mask)  # (3, S, S) normalized, (S, S) int64
        panels.append(overlay(tensor_to_image(tensor), labels.numpy().astype(np.uint8), alpha=MASK_ALPHA))
    titles = ["original", *(f"random draw {i}" for i in range(1, draws + 1))]
    per_row = 3
    rows = [
        side_by_side(panels[i : i + per_row], titles[i : i + per_row], height=AUGMENT_PANEL)
        for i in range(0, len(panels), per_row)
    ]
    # The ignored pixels as the overlay shows them: grey over the black that the rotation fills in.
    ignored = overlay(Image.new("RGB", (1, 1)), np.full((1, 1), IGNORE_INDEX, dtype=np.uint8), MASK_ALPHA)
    entries = [
        ("mask (class 1)", _hex(PALETTE[1])),
        ("ignored (255): outside the rotated image", _hex(ignored.getpixel((0, 0)))),
    ]
    legend = legend_image(entries)
    return _stack([*rows, legend])


# Composites ----------------------------------------------------------------------------------------------------------


def composites_figure(backgrounds: Sequence[Image.Image], cutouts: Sequence[Image.Image]) -> Image.Image:
    """Training composites as `CompositeDataset` draws them: a row each on photographs, on photographs turned and
    recoloured (`--varied-backgrounds`) and on generated backgrounds (`--generated-backgrounds`)."""
    rows = []
    for recipe, title in (
        (CompositeRecipe(), "on a training photo"),
        (CompositeRecipe(varied_backgrounds=1.0), "on a varied photo"),
        (CompositeRecipe(generated_backgrounds=1.0), "on a generated background"),
    ):
        panels = []
        for index in range(COMPOSITES_PER_ROW):
            rng = np.random.default_rng([SEED, index])
            image, mask = compose(backgrounds, cutouts, (COMPOSITE_SIZE, COMPOSITE_SIZE), rng, recipe)
            panels.append(overlay(image, mask, alpha=MASK_ALPHA))
        rows.append(side_by_side(panels, [title] * len(panels), height=COMPOSITE_SIZE))
    return _stack([*rows, legend_image([("mask (the pasted cut-outs)", _hex(PALETTE[1]))])])


# The U-Net diagram ---------------------------------------------------------------------------------------------------


def trace_shapes(model: UNet, size: int = 256) -> dict[str, list[tuple[int, ...]]]:
    """Run one (1, C, size, size) input and record each block's input and output shapes (batch dropped)."""
    shapes: dict[str, list[tuple[int, ...]]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            shapes[name] = [tuple(t.shape[1:]) for t in (*inputs, output)]

        return hook

    blocks = {"inc": model.inc, "head": model.head}
    blocks |= {f"down{i + 1}": down for i, down in enumerate(model.downs)}
    blocks |= {f"up{i + 1}": up for i, up in enumerate(model.ups)}
    handles = [block.register_forward_hook(record(name)) for name, block in blocks.items()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, model.in_channels, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _arrow(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    color: tuple[int, int, int],
    width: int,
    dashed: bool = False,
) -> None:
    """A straight arrow from start to end, its head at end; dashed for skip connections."""
    (x0, y0), (x1, y1) = start, end
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    head = width * 4.5
    bx, by = x1 - ux * head, y1 - uy * head  # where the head's base meets the shaft
    if dashed:
        dash = width * 4
        steps = int((length - head) // (2 * dash))
        for k in range(steps + 1):
            a, b = 2 * k * dash, min(2 * k * dash + dash, length - head)
            draw.line((x0 + ux * a, y0 + uy * a, x0 + ux * b, y0 + uy * b), fill=color, width=width)
    else:
        draw.line((x0, y0, bx, by), fill=color, width=width)
    half = head * 0.55
    draw.polygon([(x1, y1), (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)], fill=color)


def _box(
    draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], kind: str, lines: list[str], scale: int
) -> None:
    """A rounded box with its lines of text centred, the first one larger and darker."""
    fill, outline = BOX_COLORS[kind]
    draw.rounded_rectangle(box, radius=8 * scale, fill=fill, outline=outline, width=2 * scale)
    x = (box[0] + box[2]) / 2
    sizes = [15 * scale] + [13 * scale] * (len(lines) - 1)
    total = sum(sizes) * 1.25
    y = (box[1] + box[3]) / 2 - total / 2
    for i, (line, size) in enumerate(zip(lines, sizes, strict=True)):
        draw.text((x, y + size * 0.625), line, fill=INK if i == 0 else MUTED, font=_font(size), anchor="mm")
        y += size * 1.25


def _resolution(shape: tuple[int, ...]) -> str:
    return f"{shape[-2]} x {shape[-1]}"


def _channels_x(shape: tuple[int, ...]) -> str:
    return " x ".join(str(v) for v in shape)


def _legend(draw: ImageDraw.ImageDraw, canvas: Image.Image, top: float, model: UNet, scale: int) -> None:
    """Two legend rows: what the boxes are, then what the arrows do."""
    norm = {nn.BatchNorm2d: "BatchNorm", nn.GroupNorm: "GroupNorm"}.get(type(model.inc[1]), "no norm")
    boxes = [
        ("contracting: DoubleConv after a max pool", _hex(BOX_COLORS["contracting"][0])),
        ("bottleneck", _hex(BOX_COLORS["bottleneck"][0])),
        ("expanding: DoubleConv after upsample + concatenate", _hex(BOX_COLORS["expanding"][0])),
    ]
    strip = legend_image(boxes, height=24 * scale)
    canvas.paste(strip, (round((canvas.width - strip.width) / 2), round(top * scale)))
    note = f"DoubleConv = (3x3 conv, {norm}, ReLU) x 2;   a -> b ch: channels in and out;   H x W: resolution"
    draw.text((canvas.width / 2, (top + 34) * scale), note, fill=MUTED, font=_font(13 * scale), anchor="mm")

    bilinear = isinstance(model.ups[0].up, nn.Upsample)
    arrows = [
        ("2x2 max pool (halves H and W)", POOL_COLOR, False),
        ("bilinear upsample x2" if bilinear else "2x2 transposed conv x2", UP_COLOR, False),
        ("skip connection", SKIP_COLOR, True),
        ("data flow", INK, False),
    ]
    font, length, gap = _font(14 * scale), 36 * scale, 12 * scale
    widths = [length + gap / 2 + font.getlength(label) for label, _, _ in arrows]
    x = (canvas.width - sum(widths) - gap * 2 * (len(arrows) - 1)) / 2
    y = (top + 60) * scale
    for (label, color, dashed), item_width in zip(arrows, widths, strict=True):
        _arrow(draw, (x, y), (x + length, y), color, 3 * scale, dashed)
        draw.text((x + length + gap / 2, y), label, fill=INK, font=font, anchor="lm")
        x += item_width + gap * 2


def unet_figure(model: UNet, size: int = 256) -> Image.Image:
    """Draw the U: the contracting path on the left, the bottleneck at the bottom, the expanding path on the right."""
    shapes = trace_shapes(model, size)
    depth = model.depth
    scale = 2  # drawn at twice the size and shrunk, since Pillow draws without anti-aliasing
    box_w, box_h, bottom_w, indent, row, top = 140, 66, 170, 40, 96, 70
    tensor_w, head_w, gap, deepest_gap = 96, 84, 26, 110
    left = [gap / 2 + tensor_w + gap + indent * level for level in range(depth)]  # contracting boxes' x
    right = [left[-1] + box_w + deepest_gap + indent * (depth - 1 - level) for level in range(depth)]
    bottom_x = left[-1] + box_w + deepest_gap / 2 - bottom_w / 2
    head_x = right[0] + box_w + gap
    output_x = head_x + head_w + gap
    width = output_x + tensor_w + gap / 2
    legend_top = top + row * depth + box_h + 26
    height = legend_top + 76

    canvas = Image.new("RGB", (round(width * scale), round(height * scale)), WHITE)
    draw = ImageDraw.Draw(canvas)

    def s(*values: float) -> tuple[float, ...]:
        return tuple(v * scale for v in values)

    def y(level: int) -> float:
        return top + row * level

    def mid(level: int) -> float:
        return y(level) + box_h / 2

    def box(x: float, level: int, w: float, kind: str, lines: list[str]) -> None:
        _box(draw, s(x, y(level), x + w, y(level) + box_h), kind, lines, scale)

    def arrow(points: list[tuple[float, float]], color: tuple[int, int, int], dashed: bool = False) -> None:
        """An arrow along a polyline: plain segments, the head on the last one."""
        for a, b in pairwise(points[:-1]):
            draw.line(s(*a, *b), fill=color, width=3 * scale, joint="curve")
        _arrow(draw, s(*points[-2]), s(*points[-1]), color, 3 * scale, dashed)

    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    title = f"U-Net, base width {model.inc[0].out_channels}, depth {depth}: {parameters:.2f} M parameters"
    draw.text(s(width / 2, 22), title, fill=INK, font=_font(20 * scale), anchor="mm")
    subtitle = f"the shapes of one {size} x {size} image through the network, traced with forward hooks"
    draw.text(s(width / 2, 46), subtitle, fill=MUTED, font=_font(13 * scale), anchor="mm")

    # Skip connections: the contracting path's output at each level joins the expanding path at the same level.
    label_font = _font(12 * scale)
    for level in range(depth):
        start, end = left[level] + box_w, right[level]
        arrow([(start, mid(level)), (end, mid(level))], SKIP_COLOR, dashed=True)
        draw.text(s((start + end) / 2, mid(level) - 7), "concatenate", fill=SKIP_COLOR, font=label_font, anchor="mb")

    # Input and the contracting path, each level under the one above through 2x2 max pooling.
    box(gap / 2, 0, tensor_w, "tensor", ["input", _channels_x(shapes["inc"][0])])
    arrow([(gap / 2 + tensor_w, mid(0)), (left[0], mid(0))], INK)
    for level in range(depth):
        name = "inc" if level == 0 else f"down{level}"
        (c_in, *_), out = shapes[name]
        box(left[level], level, box_w, "contracting", [name, f"{c_in} -> {out[0]} ch", _resolution(out)])
        if level > 0:  # through the overlap of this box and the one above
            x = left[level] + (box_w - indent) / 2
            arrow([(x, y(level - 1) + box_h), (x, y(level))], POOL_COLOR)

    # The bottleneck, reached by an elbow from the deepest contracting box and left by one to the expanding path.
    (c_in, *_), out = shapes[f"down{depth}"]
    lines = [f"down{depth} (bottleneck)", f"{c_in} -> {out[0]} ch", _resolution(out)]
    box(bottom_x, depth, bottom_w, "bottleneck", lines)
    x_in, x_out = left[-1] + box_w / 2, right[-1] + box_w / 2
    arrow([(x_in, y(depth - 1) + box_h), (x_in, mid(depth)), (bottom_x, mid(depth))], POOL_COLOR)
    arrow([(bottom_x + bottom_w, mid(depth)), (x_out, mid(depth)), (x_out, y(depth - 1) + box_h)], UP_COLOR)

    # The expanding path: up1 works at level depth - 1, the last Up at level 0.
    for i in range(depth):
        level = depth - 1 - i
        _, (c_skip, *_), out = shapes[f"up{i + 1}"]
        c_up = model.ups[i].conv[0].in_channels - c_skip  # after upsampling: a transposed conv halves the channels
        lines = [f"up{i + 1}", f"{c_skip} + {c_up} -> {out[0]} ch", _resolution(out)]  # torch.cat([skip, x])
        box(right[level], level, box_w, "expanding", lines)
        if level < depth - 1:
            x = right[level] + (box_w + indent) / 2
            arrow([(x, y(level + 1)), (x, y(level) + box_h)], UP_COLOR)

    # The 1x1 conv head and the logits.
    (c_last, *_), logits = shapes["head"]
    arrow([(right[0] + box_w, mid(0)), (head_x, mid(0))], INK)
    box(head_x, 0, head_w, "tensor", ["head", "1x1 conv", f"{c_last} -> {logits[0]} ch"])
    arrow([(head_x + head_w, mid(0)), (output_x, mid(0))], INK)
    box(output_x, 0, tensor_w, "tensor", ["logits", _channels_x(logits)])

    _legend(draw, canvas, legend_top, model, scale)
    return canvas.resize((round(width), round(height)), Image.Resampling.LANCZOS)


# Command line --------------------------------------------------------------------------------------------------------


def tasks_mask(image: Image.Image, weights: str | None) -> tuple[np.ndarray, list[str], str]:
    """The mask tasks.png shows, its class names and where it came from: the ground truth, or a model's prediction."""
    if weights is None:
        mask = load_mask(EXAMPLES / "masks" / f"{TASKS_EXAMPLE}.png", num_labels=2)
        return mask, default_class_names(2, 0), "ground truth"
    model, _ = load_model(weights)
    return Predictor(model).predict(image).mask, model.class_names, "prediction"


def make_figures(out: Path, weights: str | None = None, data: Path | None = None) -> list[Path]:
    """Write tasks.png, augmentation.png, unet.png and camvid-unet-curves.png into `out`; `weights` makes tasks.png
    show a prediction, `data` (a built composite set) adds composites.png."""
    out.mkdir(parents=True, exist_ok=True)
    image = load_image(EXAMPLES / "images" / f"{TASKS_EXAMPLE}.jpg")
    written = [_save(tasks_figure(image, *tasks_mask(image, weights)), out / "tasks.png", photo=True)]

    image = load_image(EXAMPLES / "images" / f"{AUGMENT_EXAMPLE}.jpg")
    mask = load_mask(EXAMPLES / "masks" / f"{AUGMENT_EXAMPLE}.png")
    written.append(_save(augmentation_figure(image, mask), out / "augmentation.png", photo=True))

    written.append(_save(unet_figure(UNet(base_width=16, depth=4, upsampling="transpose")), out / "unet.png"))
    plot_curves(json.loads(UNET_HISTORY.read_text()), out / "camvid-unet-curves.png")
    written.append(out / "camvid-unet-curves.png")
    if data is not None:
        backgrounds, cutouts = load_sources(data, "train")
        written.append(_save(composites_figure(backgrounds, cutouts), out / "composites.png", photo=True))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs (default: docs/)")
    parser.add_argument(
        "--weights",
        metavar="FOLDER|USER/NAME[@REV]",
        help="draw tasks.png from this model's prediction instead of the example's ground-truth mask",
    )
    parser.add_argument("--data", type=Path, help="a built composite set: also draw composites.png from it")
    args = parser.parse_args(argv)
    try:
        written = make_figures(args.out, args.weights, args.data)
    except (WeightsError, FileNotFoundError) as error:  # a message, as the other CLIs give, not a traceback
        sys.exit(f"error: {error}")
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
