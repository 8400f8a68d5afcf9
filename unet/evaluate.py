"""Score a model on a folder of images and masks: python -m unet.evaluate --weights SOURCE --images DIR --masks DIR

or on a split of CamVid (`python -m unet.camvid`): python -m unet.evaluate --weights SOURCE --camvid DIR --split test

Every image goes through `Predictor`, the same path as the app and `unet.predict`, so the mask is predicted at the
image's own size. The confusion counts of all images are pooled into data-set-level IoU and Dice per class and
their mean (`unet.metrics`), and, as the multi-class literature reports them, global pixel accuracy and the
class-average accuracy; every image is also scored on its own. The scores are printed, and `--out DIR` receives:

- `eval.json`: the settings, the pooled scores (`metrics.summary`), how the wrong pixels divide into kinds (within
  2 px of a true outline, or farther: false objects, missed objects, wrong class; `error_kinds`), the date and the
  time taken;
- `per_image.csv`: image, iou, dice, foreground_share_true, foreground_share_pred (the headline class: the
  foreground of a binary model, the mean over classes otherwise; an empty cell where the score is undefined);
  with `--groups CSV` (columns image, group; a composite set's `photos.csv` names each picture's photograph),
  `eval.json` also holds the pooled headline scores of each group, and they are printed;
- `cases.png`: the best and worst images by IoU, each as image | prediction | ground truth | error map.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from unet.datasets import CAMVID_SPLITS, CamVid, PairedFolder
from unet.hub import WeightsError, add_weights_argument, load_model, resolve_weights
from unet.labels import IGNORE_INDEX
from unet.metrics import confusion_counts, dice_from_counts, iou_from_counts, summary
from unet.predict import Predictor, add_inference_arguments, inference_settings
from unet.visualize import error_legend, error_map, legend_image, overlay, side_by_side

CSV_COLUMNS = ("image", "iou", "dice", "foreground_share_true", "foreground_share_pred")
OUTLINE_PX = 2  # a wrong pixel this close to a change of true class is an outline error
ERROR_KINDS = ("near_outline", "false_object", "missed", "wrong_class")


@dataclass(frozen=True)
class ImageScore:
    """One image's headline scores and foreground shares; NaN where a value is undefined."""

    image: str  # the image's file name
    iou: float
    dice: float
    foreground_share_true: float  # share of labelled pixels (not IGNORE_INDEX) whose true class is not background
    foreground_share_pred: float  # share of the same pixels predicted as a class other than background


@dataclass(frozen=True)
class EvalResult:
    """The pooled confusion counts and per-image scores of one evaluation, with the settings that produced them."""

    counts: np.ndarray  # (num_labels, 3) int64: tp, fp, fn of every class over the whole data set
    image_counts: np.ndarray  # (num_images, num_labels, 3) int64: the same, image by image
    rows: list[ImageScore]
    class_names: list[str]
    images_dir: Path
    masks_dir: Path
    threshold: float
    tta: str
    min_confidence: float
    max_side: int | None
    seconds: float
    error_counts: np.ndarray  # (4,) int64: wrong pixels of the whole data set by kind, as `error_kinds` counts them

    def scores(self) -> dict[str, Any]:
        """The pooled scores as `metrics.summary` gives them: per class, mean, headline and accuracies, NaN as None."""
        return summary(iou_from_counts(self.counts), dice_from_counts(self.counts), self.class_names, self.counts)

    def errors(self) -> dict[str, Any]:
        """How many pixels are wrong, and the share of each kind (`error_kinds`); the shares are None if none is."""
        total = int(self.error_counts.sum())
        counts = zip(ERROR_KINDS, self.error_counts, strict=True)
        shares = {kind: float(count / total) if total else None for kind, count in counts}
        return {"wrong_pixels": total, "outline_px": OUTLINE_PX, **shares}


def error_kinds(
    pred: np.ndarray, target: np.ndarray, outline_px: int = OUTLINE_PX, background_class: int | None = 0
) -> np.ndarray:
    """Count an image's wrong pixels by kind, in the order of ERROR_KINDS.

    near_outline: within `outline_px` pixels (a square window) of a pixel of another true class, where masks of the
    same object differ by a pixel or two; the others lie farther from every true outline: false_object, background
    marked as a class; missed, a class marked as background; wrong_class, one class marked as another. Ignored
    pixels (IGNORE_INDEX) are never counted, but pixels near them count as near an outline. Without a background
    class (`background_class` None) no pixel is a false object, and a missed one is one the prediction left
    unlabelled (IGNORE_INDEX).
    """
    labelled = target != IGNORE_INDEX
    wrong = labelled & (pred != target)
    classes = torch.from_numpy(target.astype(np.float32))[None, None]
    window = 2 * outline_px + 1
    highest = F.max_pool2d(classes, window, stride=1, padding=outline_px)
    lowest = -F.max_pool2d(-classes, window, stride=1, padding=outline_px)
    near = (highest != lowest)[0, 0].numpy()
    away = wrong & ~near
    empty = IGNORE_INDEX if background_class is None else background_class  # what "nothing here" is
    return np.array(
        [(wrong & near).sum(), (away & (target == empty)).sum(), (away & (pred == empty)).sum(),
         (away & (target != empty) & (pred != empty)).sum()], dtype=np.int64,
    )  # fmt: skip


def _headline(counts: np.ndarray, class_names: list[str]) -> tuple[float, float]:
    """The headline IoU and Dice of one image's counts, by the same rule as the data-set report; NaN if undefined."""
    headline = summary(iou_from_counts(counts), dice_from_counts(counts), class_names)["headline"]
    return tuple(math.nan if headline[key] is None else headline[key] for key in ("iou", "dice"))


def _foreground_shares(pred: np.ndarray, target: np.ndarray, background_class: int | None = 0) -> tuple[float, float]:
    """Shares of labelled pixels that are foreground in the target and in the prediction; NaN if none is labelled
    or the model has no background class."""
    labelled = target != IGNORE_INDEX
    if not labelled.any() or background_class is None:
        return math.nan, math.nan
    return float((target[labelled] != background_class).mean()), float((pred[labelled] != background_class).mean())


def evaluate(
    predictor: Predictor,
    dataset: PairedFolder | CamVid,
    threshold: float = 0.5,
    tta: str = "none",
    class_names: Sequence[str] | None = None,
    progress: bool = False,
    min_confidence: float = 0.0,
) -> EvalResult:
    """Predict every pair of `dataset` and score it, pooled over the data set and image by image.

    Args:
        predictor: The model wrapped for inference; its `max_side` is recorded in the result.
        dataset: The images and masks; give it `num_labels=model.num_labels` so bad masks are refused by name.
        threshold: Foreground probability cut for binary models.
        tta: The test-time augmentation, a name of `TTA_VIEWS` (`Predictor.probabilities`).
        class_names: One name a class of the model; the model's own `class_names` when None.
        progress: Show a progress bar on a terminal.
        min_confidence: Drop predicted regions the model is less sure of on average (`drop_unsure_regions`).

    Raises:
        MaskError: A mask holds values that are not the model's classes (the message names the file).
        ImageError: An image or mask cannot be read (the message names the file).
        ValueError: A mask's size differs from its image's, or the class names do not match the model.
    """
    num_labels = predictor.model.num_labels
    names = list(class_names) if class_names is not None else predictor.model.class_names
    if len(names) != num_labels:
        raise ValueError(
            f"got {len(names)} class names ({', '.join(names)}) for a model with {num_labels} classes: "
            "give one name a class, background first"
        )
    background = predictor.model.background_class
    started = time.perf_counter()
    rows, image_counts, errors = [], [], np.zeros(len(ERROR_KINDS), dtype=np.int64)
    for index in tqdm(range(len(dataset)), desc="evaluate", unit="image", disable=None if progress else True):
        image, target = dataset.load_pair(index)
        pred = predictor.predict(image, threshold, tta, min_confidence).mask
        counts = confusion_counts(pred, target, num_labels, ignore_index=IGNORE_INDEX)
        image_counts.append(counts)
        errors += error_kinds(pred, target, background_class=background)
        shares = _foreground_shares(pred, target, background)
        rows.append(ImageScore(dataset.pairs[index][0].name, *_headline(counts, names), *shares))
    per_image = np.array(image_counts, dtype=np.int64).reshape(-1, num_labels, 3)
    return EvalResult(
        counts=per_image.sum(axis=0),
        image_counts=per_image,
        rows=rows,
        class_names=names,
        images_dir=dataset.images_dir,
        masks_dir=dataset.masks_dir,
        threshold=threshold,
        tta=tta,
        min_confidence=min_confidence,
        max_side=predictor.max_side,
        seconds=time.perf_counter() - started,
        error_counts=errors,
    )


def read_groups(path: Path) -> dict[str, str]:
    """Image file name -> group name, from a CSV with the columns image and group (more columns are ignored)."""
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        if not {"image", "group"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path} needs the columns image and group, found {reader.fieldnames}")
        return {row["image"]: row["group"] for row in reader}


def group_scores(result: EvalResult, groups: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The headline IoU and Dice pooled over each group's images, groups sorted by name.

    Raises:
        ValueError: Some images have no group (the message names the first few).
    """
    missing = [row.image for row in result.rows if row.image not in groups]
    if missing:
        raise ValueError(f"{len(missing)} images have no group: {', '.join(missing[:5])}{', ...' * (len(missing) > 5)}")
    members: dict[str, list[int]] = {}
    for index, row in enumerate(result.rows):
        members.setdefault(groups[row.image], []).append(index)
    scores = {}
    for name in sorted(members):
        counts = result.image_counts[members[name]].sum(axis=0)
        headline = summary(iou_from_counts(counts), dice_from_counts(counts), result.class_names)["headline"]
        scores[name] = {"num_images": len(members[name]), **headline}
    return scores


def report(
    result: EvalResult, weights: str, dataset_name: str | None = None, groups: dict[str, str] | None = None
) -> dict[str, Any]:
    """The `eval.json` content: settings, pooled scores, date and time taken.

    Args:
        result: What `evaluate` returned.
        weights: The weights source, as given to `load_model`.
        dataset_name: A name for the data set; by default the name of the images folder's parent.
        groups: Image file name -> group: adds each group's pooled headline scores (`group_scores`).
    """
    content = {
        "dataset": dataset_name or result.images_dir.resolve().parent.name,
        "images": str(result.images_dir),
        "masks": str(result.masks_dir),
        "num_images": len(result.rows),
        "threshold": result.threshold,
        "tta": result.tta,
        "min_confidence": result.min_confidence,
        "max_side": result.max_side,
        "weights": weights,
        "class_names": result.class_names,
        **result.scores(),
        "errors": result.errors(),
        "date": datetime.date.today().isoformat(),
        "seconds": round(result.seconds, 3),
    }
    if groups is not None:
        content["groups"] = group_scores(result, groups)
    return content


def _cell(value: str | float) -> str | float:
    """A CSV cell: NaN becomes an empty cell."""
    return "" if isinstance(value, float) and math.isnan(value) else value


def write_report(
    result: EvalResult,
    out: Path,
    weights: str,
    dataset_name: str | None = None,
    groups: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write `eval.json` and `per_image.csv` into `out` (created if needed) and return the `eval.json` content."""
    out.mkdir(parents=True, exist_ok=True)
    content = report(result, weights, dataset_name, groups)
    (out / "eval.json").write_text(json.dumps(content, indent=2) + "\n")
    with open(out / "per_image.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for row in result.rows:
            writer.writerow(_cell(getattr(row, column)) for column in CSV_COLUMNS)
    return content


def pick_cases(rows: Sequence[ImageScore], count: int = 3) -> tuple[list[int], list[int]]:
    """Indices of the `count` best and `count` worst images by IoU, best first, worst last; NaN scores skipped.

    With fewer than 2 * count scored images every scored image appears once, in one list or the other.
    """
    ranked = sorted((index for index, row in enumerate(rows) if not math.isnan(row.iou)), key=lambda i: -rows[i].iou)
    best = ranked[:count]
    worst = ranked[max(len(best), len(ranked) - count) :]
    return best, worst


def _stack(pictures: Sequence[Image.Image], gap: int) -> Image.Image:
    """Stack pictures top to bottom on white, left-aligned, `gap` pixels apart and around."""
    width = max(picture.width for picture in pictures) + 2 * gap
    height = sum(picture.height for picture in pictures) + gap * (len(pictures) + 1)
    canvas = Image.new("RGB", (width, height), "white")
    y = gap
    for picture in pictures:
        canvas.paste(picture, (gap, y))
        y += picture.height + gap
    return canvas


def cases_picture(
    predictor: Predictor, dataset: PairedFolder, result: EvalResult, count: int = 3, height: int = 256
) -> Image.Image | None:
    """Draw the error map's legend, then the best and worst images as rows of image | prediction | truth | errors.

    The chosen images are predicted again with the result's settings (cheaper than keeping every mask).

    Args:
        predictor: The predictor `result` came from.
        dataset: The data set `result` came from.
        result: What `evaluate` returned.
        count: How many best and how many worst images to show.
        height: Height of every panel in pixels.

    Returns:
        The picture, or None when no image has a defined IoU.
    """
    best, worst = pick_cases(result.rows, count)
    if not best:
        return None
    ranks = [(f"best {n}", index) for n, index in enumerate(best, 1)]
    ranks += [(f"worst {n}", index) for n, index in enumerate(reversed(worst), 1)]  # the very worst first
    rows = []
    for rank, index in ranks:
        image, target = dataset.load_pair(index)
        pred = predictor.predict(image, result.threshold, result.tta, result.min_confidence).mask
        score = result.rows[index]
        style = {"class_colors": predictor.model.class_colors, "background_class": predictor.model.background_class}
        panels = [image, overlay(image, pred, **style), overlay(image, target, **style)]
        panels.append(error_map(pred, target, image, background_class=style["background_class"]))
        titles = [f"{rank}: {score.image}", f"prediction, IoU {score.iou:.3f}", "ground truth", "errors"]
        rows.append(side_by_side(panels, titles, height=height))
    # The legend goes first, so the error colours are explained before the eye reaches them.
    legend = legend_image(error_legend(predictor.model.background_class), height=max(20, height // 10))
    return _stack([legend, *rows], gap=max(4, height // 64))


def format_table(result: EvalResult, groups: dict[str, dict[str, Any]] | None = None) -> str:
    """The pooled scores as a plain-text table: one line a class, the mean, the headline, then one line a group of
    `groups` (as `group_scores` gives them)."""
    scores = result.scores()
    width = max(len(name) for name in [*result.class_names, "headline"])

    def number(value: float | None) -> str:
        return f"{'n/a':>7}" if value is None else f"{value:7.4f}"

    lines = [f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}"]
    for name in result.class_names:
        lines.append(f"{name:<{width}}  {number(scores['iou']['per_class'][name])}  "
                     f"{number(scores['dice']['per_class'][name])}")  # fmt: skip
    lines.append(f"{'mean':<{width}}  {number(scores['iou']['mean'])}  {number(scores['dice']['mean'])}")
    if len(result.class_names) > 2:  # the figures the multi-class literature reports beside mIoU
        accuracy = scores["accuracy"]
        lines.append(
            f"global pixel accuracy {number(accuracy['global']).strip()}, "
            f"class-average accuracy {number(accuracy['class_average']).strip()}"
        )
    which = result.class_names[1] if len(result.class_names) == 2 else "mean over classes"
    lines.append(
        f"headline ({which}): IoU {number(scores['headline']['iou']).strip()}, "
        f"Dice {number(scores['headline']['dice']).strip()}"
    )
    errors = result.errors()
    if errors["wrong_pixels"]:
        lines.append(
            f"wrong pixels: {errors['wrong_pixels']}, {errors['near_outline']:.1%} within {OUTLINE_PX} px of a true "
            f"outline; farther: {errors['false_object']:.1%} false objects, {errors['missed']:.1%} missed, "
            f"{errors['wrong_class']:.1%} wrong class"
        )
    for name, group in (groups or {}).items():
        lines.append(
            f"  {name}: {group['num_images']} images, IoU {number(group['iou']).strip()}, "
            f"Dice {number(group['dice']).strip()}"
        )
    lines.append(f"{len(result.rows)} images in {result.seconds:.1f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(parser)
    parser.add_argument("--images", type=Path, help="folder of images")
    parser.add_argument("--masks", type=Path, help="folder of masks, paired with the images by stem")
    parser.add_argument("--camvid", type=Path, help="instead of --images/--masks: CamVid's folder (unet.camvid)")
    parser.add_argument("--split", choices=CAMVID_SPLITS, default="test", help="the CamVid split to score")
    parser.add_argument("--out", type=Path, help="folder for eval.json, per_image.csv and cases.png")
    add_inference_arguments(parser)
    parser.add_argument("--class-names", help="comma-separated, background first (default: the model's config)")
    parser.add_argument("--dataset", help="name in eval.json (default: the images folder's parent folder)")
    parser.add_argument(
        "--save-settings",
        action="store_true",
        help="make the settings of this evaluation the model's defaults: write them as inference.json into the "
        "weights folder (choose them on validation data, never on the test split)",
    )
    parser.add_argument(
        "--groups",
        type=Path,
        metavar="CSV",
        help="CSV of image,group (e.g. a composite set's photos.csv): also score each group's images pooled",
    )
    args = parser.parse_args(argv)
    if (args.camvid is None) == (args.images is None or args.masks is None):
        parser.error("give --images and --masks, or --camvid (with --split)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    weights = resolve_weights(args.weights)
    class_names = args.class_names.split(",") if args.class_names else None
    try:
        model, info = load_model(weights)
        settings = inference_settings(args, info.settings)  # a flag out of range: a ValueError that names it
        if args.camvid is not None:
            dataset = CamVid(args.camvid, args.split)
            if model.num_labels != dataset.num_labels:
                raise ValueError(f"CamVid has {dataset.num_labels} classes but the model predicts {model.num_labels}")
        else:
            dataset = PairedFolder(images_dir=args.images, masks_dir=args.masks, num_labels=model.num_labels)
        predictor = Predictor(model, settings.max_side)
        groups = read_groups(args.groups) if args.groups else None
        result = evaluate(
            predictor,
            dataset,
            settings.threshold,
            settings.tta,
            class_names,
            progress=True,
            min_confidence=settings.min_confidence,
        )
        per_group = group_scores(result, groups) if groups is not None else None
        if args.save_settings and info.repo_id is not None:
            raise ValueError("--save-settings writes into a weights folder; a Hub repo is changed by a push")
        if args.save_settings and args.camvid is not None and args.split == "test":
            raise ValueError("--save-settings chooses settings: use the val split, never the test split")
    # MaskError and ImageError (both ValueErrors) name the file; the folder errors say what layout is expected.
    except (WeightsError, FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(format_table(result, per_group))
    if args.save_settings:
        print(f"wrote the model's default settings to {settings.write(info.folder)}")
    if args.out is not None:
        write_report(result, args.out, weights, args.dataset, groups)
        written = ["eval.json", "per_image.csv"]
        picture = cases_picture(predictor, dataset, result)
        if picture is not None:  # None when no image has a defined IoU
            picture.save(args.out / "cases.png")
            written.append("cases.png")
        print(f"wrote {', '.join(written)} to {args.out}")


if __name__ == "__main__":
    main()
