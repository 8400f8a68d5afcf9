"""The demo's logic without any Gradio layout: segment an upload and score it against a ground truth (what the page
says about the model is `unet.describe`).

Every function takes plain values (file paths, PIL images, numbers) and returns plain values, so `app.py` only lays
out the page and the tests call these directly. Input the demo cannot use raises `InputError`, whose message is
written for the person at the page (what is wrong, what to do); `app.py` shows it as a `gr.Error`.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unet.describe import score_cell, score_table
from unet.labels import ModelLabels
from unet.metrics import confusion_counts, dice_from_counts, iou_from_counts, summary
from unet.predict import TTA_VIEWS, Predictor, class_shares, foreground_share
from unet.preprocessing import ImageError, MaskError, load_image, load_mask, mask_to_image, resize_for_model
from unet.visualize import error_map, overlay

# A 4096 x 4096 upload already takes seconds on a small CPU server; larger photos are refused with a message.
MAX_PIXELS = 4096 * 4096
DISPLAY_MAX_SIDE = 1024  # pictures are drawn at most this large; the mask download keeps the upload's full size
DOWNLOADS_MAX_AGE_S = 3600.0  # download files older than this are deleted (Gradio serves its own copies)
DOWNLOADS_MAX_BYTES = 500 * 1024 * 1024  # and the oldest beyond this much in all
DOWNLOADS_PRUNE_EVERY_S = 30.0  # how often the run folders are looked over for those to delete
_last_pruned: dict[Path, float] = {}  # when each downloads folder was last looked over (time.monotonic)

ImageInput = str | Path | Image.Image | Mapping[str, Any]


class InputError(ValueError):
    """An input the demo cannot use; the message says what is wrong and what to do, for the person at the page."""


@dataclass(frozen=True)
class Segmentation:
    """What one forward pass gave for an upload, kept so that new drawing settings (opacity, threshold, least region
    confidence) are applied without running the network again (`redraw`)."""

    picture: Image.Image  # the upload as the model saw it (RGB, EXIF orientation applied), display size
    size: tuple[int, int]  # the upload's full (width, height)
    probabilities: np.ndarray  # (num_labels, h, w) float32 at the network's resolution (`Predictor.probabilities`)
    truth: np.ndarray | None  # (H, W) uint8 ground truth at full size; None without one
    stem: str  # the upload's file name without suffix, for the download's name
    tta: str  # the test-time augmentation the probabilities were made with
    seconds: float  # from the request to the probabilities: reading the upload and the forward pass(es)


@dataclass(frozen=True)
class DemoResult:
    """Everything the page shows for one run: the mask at the upload's full size, pictures at display size (at most
    `DISPLAY_MAX_SIDE`), the scores, and the segmentation they were drawn from."""

    segmentation: Segmentation
    mask: np.ndarray  # (H, W) uint8 class indices at the upload's full size
    overlay: Image.Image  # the prediction over the image, display size
    truth_overlay: Image.Image | None  # the ground truth over the image, display size; None without one
    error_map: Image.Image | None  # true/false positives and false negatives, display size; None without one
    scores: dict[str, Any]  # JSON-able: iou, dice, headline (with a ground truth), foreground_share, seconds, ...
    table: str  # Markdown: the scores table (with a ground truth) and a line with the share and the time
    mask_file: Path  # PNG of class indices, full size: `<upload's name>_mask.png` in a folder of this run

    def picture_files(self) -> dict[str, Path | None]:
        """The display pictures as PNG files beside `mask_file`, the one place a run's pictures are written: overlay
        (`<upload's name>_overlay.png`, which the page also offers for download), truth_overlay, error_map.

        A web page should be handed these files rather than the images: Gradio copies a file into its cache under a
        temporary name and renames it into place, while it writes an image over the cached copy of an identical
        earlier result, which a browser may be downloading at that moment (the same example run twice, say).
        """
        stem = self.mask_file.name.removesuffix("_mask.png")
        files: dict[str, Path | None] = {}
        for name in ("overlay", "truth_overlay", "error_map"):
            picture = getattr(self, name)
            file_name = f"{stem}_overlay.png" if name == "overlay" else f"{name}.png"
            files[name] = None if picture is None else self.mask_file.parent / file_name
            if picture is not None:
                picture.save(files[name], format="PNG", compress_level=1)  # fast; photo-like pictures
        return files


def upload_path(value: ImageInput | None) -> str | Path | Image.Image | None:
    """The file behind an input: a Gradio file payload (a mapping with "path") becomes its path; others pass through.

    Args:
        value: A path, a PIL image, a Gradio file payload such as `{"path": "/tmp/gradio/.../photo.jpg", ...}`,
            or None.
    """
    if not isinstance(value, Mapping):
        return value
    path = value.get("path")
    if not path:
        raise InputError(
            "The upload arrived without a file. From Python, send images as files: "
            "gradio_client.handle_file('photo.jpg')."
        )
    return path


def _sentence(error: Exception) -> str:
    """An error's message as a sentence: one full stop at its end."""
    return str(error).rstrip(". ") + "."


def read_image(source: ImageInput | None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read the uploaded image as RGB the way the rest of the package does (`load_image`), with user-facing errors.

    Args:
        source: A path, a PIL image, a Gradio file payload, or None.
        max_pixels: Larger images are refused before they are decoded.

    Raises:
        InputError: No image, not an image, a truncated or corrupt file, or more than `max_pixels` pixels.
    """
    source = upload_path(source)
    if source is None:
        raise InputError("No image yet: upload, drop, paste or take a photo first.")
    try:
        return load_image(source, max_pixels=max_pixels)
    except ImageError as error:
        raise InputError(f"Image: {_sentence(error)}") from error
    except FileNotFoundError as error:
        raise InputError("Image: the uploaded file is gone from the server; upload it again.") from error


def read_ground_truth(source: ImageInput | None, size: tuple[int, int], num_labels: int) -> np.ndarray | None:
    """Read a ground-truth mask of class indices (`load_mask`) and check it fits the image and the model.

    Args:
        source: A path, a PIL image, a Gradio file payload, or None (no ground truth).
        size: The image's (width, height).
        num_labels: The classes the model predicts (`UNet.num_labels`).

    Returns:
        The (H, W) uint8 mask, or None without a ground truth.

    Raises:
        InputError: Not an image, corrupt, values the model does not know, or a size other than the image's.
    """
    source = upload_path(source)
    if source is None:
        return None
    try:
        truth = load_mask(source, num_labels=num_labels)
    except (ImageError, MaskError) as error:
        raise InputError(f"Ground truth: {_sentence(error)}") from error
    except FileNotFoundError as error:
        raise InputError("Ground truth: the uploaded file is gone from the server; upload it again.") from error
    width, height = size
    if truth.shape != (height, width):
        raise InputError(
            f"Ground truth: the mask is {truth.shape[1]}x{truth.shape[0]} pixels but the image is {width}x{height}. "
            "Use the mask made for this image, at the image's size (resize masks only with nearest-neighbour)."
        )
    return truth


def score(mask: np.ndarray, truth: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """IoU and Dice per class, their means and the headline (`metrics.summary`); pixels marked 255 are ignored.

    Args:
        mask: Predicted class indices (H, W).
        truth: True class indices (H, W), 255 for pixels to ignore.
        class_names: One name a class, background first.
    """
    counts = confusion_counts(mask, truth, num_labels=len(class_names))
    return summary(iou_from_counts(counts), dice_from_counts(counts), class_names, counts)


def scores_markdown(scores: dict[str, Any]) -> str:
    """The scores as Markdown: a table of IoU and Dice per class and their mean, then the share and the time.

    Args:
        scores: `DemoResult.scores`.
    """
    parts = []
    if "iou" in scores:
        parts.append(score_table(scores, absent="omit"))  # a class in neither mask has no score
        absent = [name for name, iou in scores["iou"]["per_class"].items() if iou is None]
        accuracy = f"Pixel accuracy **{score_cell(scores['accuracy']['global'])}** (ignored pixels left out)"
        parts.append(accuracy + (f"; in neither mask, so left out: {', '.join(absent)}." if absent else "."))
    else:
        parts.append("Add the ground-truth mask to see IoU and Dice.")
    width, height = scores["image_size"]
    if scores["foreground_share"] is not None:
        content = f"Foreground: **{scores['foreground_share']:.1%}** of the {width}×{height} image"
    else:  # no background class: say what the picture holds most
        top = list(scores["class_shares"].items())[:4]
        content = f"The {width}×{height} image: " + ", ".join(f"{name} **{share:.0%}**" for name, share in top)
    if scores.get("reused"):
        timing = f"the last prediction drawn again in {scores['total_seconds'] * 1000:.0f} ms"
    else:
        timing = f"model {scores['seconds'] * 1000:.0f} ms · in all {scores['total_seconds'] * 1000:.0f} ms"
    parts.append(f"{content} · {timing}")
    return "\n\n".join(parts)


def class_regions(mask: np.ndarray, labels: ModelLabels, size: tuple[int, int]) -> list[tuple[np.ndarray, str]]:
    """A (H, W) float 0/1 map and the class name for every class in `mask` but the background, largest first, at
    `size` (width, height): what `gr.AnnotatedImage` highlights a class by."""
    shown = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    counts = np.bincount(shown.ravel(), minlength=labels.num_labels)[: labels.num_labels]
    background = labels.background_class
    order = [index for index in np.argsort(-counts, kind="stable") if counts[index] and index != background]
    return [((shown == index).astype(np.float32), labels.class_names[index]) for index in order]


def prune_downloads(
    folder: Path,
    max_age_s: float = DOWNLOADS_MAX_AGE_S,
    max_bytes: int = DOWNLOADS_MAX_BYTES,
    every_s: float = DOWNLOADS_PRUNE_EVERY_S,
) -> None:
    """Delete the run folders under `folder` older than `max_age_s`, then the oldest ones until the rest hold at
    most `max_bytes`, so a long-running server does not fill its disk. It walks every run folder, so it does so at
    most once every `every_s` seconds a folder: a request then costs no more with thousands of folders kept."""
    now = time.monotonic()
    if now - _last_pruned.get(folder, -math.inf) < every_s:
        return
    _last_pruned[folder] = now
    if not folder.is_dir():
        return
    runs = []
    for run in folder.iterdir():
        try:
            runs.append((run.stat().st_mtime, sum(file.stat().st_size for file in run.iterdir()), run))
        except OSError:  # another request is pruning the same folder
            continue
    cutoff, total = time.time() - max_age_s, sum(size for _, size, _ in runs)
    for modified, size, run in sorted(runs):  # oldest first
        if modified >= cutoff and total <= max_bytes:
            break
        shutil.rmtree(run, ignore_errors=True)
        total -= size


def _mask_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class mask at `size` (width, height), by nearest neighbour: the same classes, never a blend."""
    if mask.shape == (size[1], size[0]):
        return mask
    return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


def _stem(source: ImageInput | None) -> str:
    """The upload's file name without suffix, for the download names; "image" for a picture without a name."""
    if isinstance(source, str | Path) and Path(source).stem:
        return Path(source).stem
    return "image"


def _check_settings(threshold: float, opacity: float, min_confidence: float) -> None:
    for name, value in (("threshold", threshold), ("opacity", opacity), ("least region confidence", min_confidence)):
        if not 0.0 <= value <= 1.0:  # also refuses nan
            raise InputError(f"The {name} must lie between 0 and 1, got {value}.")


def segment(
    predictor: Predictor,
    image: ImageInput | None,
    ground_truth: ImageInput | None = None,
    threshold: float = 0.5,
    opacity: float = 0.5,
    tta: str = "none",
    min_confidence: float = 0.0,
    *,
    downloads: str | Path | None = None,
    max_pixels: int = MAX_PIXELS,
) -> DemoResult:
    """Segment one image, draw the overlays, and score the prediction when a ground truth is given.

    Args:
        predictor: The model and its preprocessing.
        image: A path, a PIL image or a Gradio file payload.
        ground_truth: The true mask (class indices; 0/255 for binary), the image's size; None for none.
        threshold: Foreground probability from which a pixel is foreground (binary models only).
        opacity: Opacity of the mask colours in the overlays, 0 to 1.
        tta: The test-time augmentation, a name of `TTA_VIEWS` ("dihedral": the average of eight views).
        min_confidence: Drop predicted regions whose mean probability of their class is below it; 0 keeps all.
        downloads: Folder for the mask and overlay PNGs (a new folder per run inside it); default a folder in the
            system's temporary directory. Run folders older than an hour are deleted.
        max_pixels: Larger images are refused.

    Raises:
        InputError: The inputs cannot be used; the message says why and what to do.
    """
    started = time.perf_counter()
    _check_settings(threshold, opacity, min_confidence)
    if tta not in TTA_VIEWS:
        raise InputError(f"Unknown test-time augmentation {tta!r}: choose one of {', '.join(TTA_VIEWS)}.")
    picture = read_image(image, max_pixels)
    truth = read_ground_truth(ground_truth, picture.size, predictor.model.num_labels)
    probabilities = predictor.probabilities(picture, tta).numpy()
    segmentation = Segmentation(
        picture=resize_for_model(picture, DISPLAY_MAX_SIDE),
        size=picture.size,
        probabilities=probabilities,
        truth=truth,
        stem=_stem(upload_path(image)),
        tta=tta,
        seconds=time.perf_counter() - started,
    )
    return redraw(predictor, segmentation, threshold, opacity, min_confidence, downloads=downloads, started=started)


def redraw(
    predictor: Predictor,
    segmentation: Segmentation,
    threshold: float = 0.5,
    opacity: float = 0.5,
    min_confidence: float = 0.0,
    *,
    downloads: str | Path | None = None,
    started: float | None = None,
) -> DemoResult:
    """The result of a segmentation at these drawing settings, without running the network again: the mask (the
    threshold and the least region confidence applied to its probabilities), the pictures and the scores.

    Args:
        predictor: The predictor that made `segmentation`.
        segmentation: What `segment` returned as `DemoResult.segmentation`.
        threshold, opacity, min_confidence, downloads: As `segment` takes them.
        started: When the request began (`time.perf_counter()`), if it also ran the network; the result then says
            the model ran, else that the last prediction was drawn again.

    Raises:
        InputError: A setting is out of range.
    """
    reused = started is None
    started = time.perf_counter() if started is None else started
    _check_settings(threshold, opacity, min_confidence)
    model = predictor.model
    mask = predictor.mask(segmentation.probabilities, segmentation.size, threshold, min_confidence)
    # The pictures are drawn at display size; only the scores need the full-size masks.
    style = {"class_colors": model.class_colors, "background_class": model.background_class}
    shown = segmentation.picture
    shown_mask = _mask_at(mask, shown.size)
    scores: dict[str, Any] = {}
    truth_overlay = errors = None
    if segmentation.truth is not None:
        scores = score(mask, segmentation.truth, model.class_names)
        shown_truth = _mask_at(segmentation.truth, shown.size)
        truth_overlay = overlay(shown, shown_truth, opacity, **style)
        errors = error_map(shown_mask, shown_truth, shown, background_class=model.background_class)

    folder = Path(downloads) if downloads is not None else Path(tempfile.gettempdir()) / "unet-demo"
    prune_downloads(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    mask_file = run / f"{segmentation.stem}_mask.png"
    mask_to_image(mask).save(mask_file, format="PNG", compress_level=1)  # fast; masks stay small anyway

    background = model.background_class
    scores.update(
        foreground_share=None if background is None else foreground_share(mask, background),
        class_shares=class_shares(mask, model.class_names),
        image_size=list(segmentation.size),
        threshold=threshold if model.is_binary else None,
        tta=segmentation.tta,
        min_confidence=min_confidence,
        seconds=segmentation.seconds,
        reused=reused,
        total_seconds=time.perf_counter() - started,
    )
    return DemoResult(
        segmentation=segmentation,
        mask=mask,
        overlay=overlay(shown, shown_mask, opacity, **style),
        truth_overlay=truth_overlay,
        error_map=errors,
        scores=scores,
        table=scores_markdown(scores),
        mask_file=mask_file,
    )
