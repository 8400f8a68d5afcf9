"""Segmentation metrics, every one derived from one set of per-class counts.

`confusion_counts` turns a predicted and a true mask of class indices into an int64 array of shape
(num_labels, 3): the true positives, false positives and false negatives of each class, in that column order.
IoU = tp / (tp + fp + fn) and Dice = 2tp / (2tp + fp + fn) are computed from those counts alone, by
`iou_from_counts` and `dice_from_counts`, both for one image (`iou`, `dice`) and for a whole data set
(`ConfusionMeter`, which sums the counts of every batch first). A binary problem has 2 classes: 0 = background,
1 = foreground (`UNet.num_labels`). Pixels whose target equals `ignore_index` are left out of every count.

The empty case, decided once: a class absent from both the prediction and the target (tp + fp + fn == 0) scores
NaN, "not present, not counted", and every mean over classes or images is a `nanmean` that skips it (as the
torchvision references and mmsegmentation do for dataset-level mIoU). A class present in the target but never
predicted, or predicted but absent from the target, scores 0.

Per image versus per data set: on one image with no foreground in either mask, `iou(...)[1]` is NaN, so a mean of
per-image scores leaves that image out instead of rewarding "predict nothing" with a 1.0. `ConfusionMeter` pools the
counts before dividing, so such an image adds nothing to any class, and a class is NaN only when it is absent from
the whole data set. The two means differ in general: per-image means weight images equally, pooled scores weight
pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

Mask = np.ndarray | torch.Tensor


def _as_class_indices(mask: Mask, name: str) -> torch.Tensor:
    """Return the mask as an int64 tensor, refusing floating-point masks (logits or probabilities)."""
    if isinstance(mask, torch.Tensor):
        if mask.is_floating_point() or mask.is_complex():
            raise ValueError(
                f"{name} has dtype {mask.dtype}, but masks must hold integer class indices: take "
                "logits.argmax(1) for a multi-class model or (logits > 0).long() for a binary one"
            )
        return mask.long()
    array = np.asarray(mask)
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise ValueError(
            f"{name} has dtype {array.dtype}, but masks must hold integer class indices: convert it with "
            ".astype(np.int64) after mapping its values to 0..num_labels-1"
        )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))


def _check_range(values: torch.Tensor, name: str, num_labels: int, ignore_index: int | None) -> None:
    """Raise when a mask holds values that are neither a class index nor (for the target) ignore_index."""
    bad = values[(values < 0) | (values >= num_labels)]
    if bad.numel() == 0:
        return
    found = torch.unique(bad).tolist()
    shown = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
    skip = f" or ignore_index ({ignore_index})" if name == "target" and ignore_index is not None else ""
    raise ValueError(
        f"{name} holds values [{shown}] outside the class range [0, {num_labels}){skip}. Masks must hold class "
        f"indices 0..{num_labels - 1}: map a 0/255 binary mask to 0/1 (e.g. mask // 255), mark pixels to skip "
        "with ignore_index, or pass the right num_labels (2 for a binary model)"
    )


def confusion_counts(pred: Mask, target: Mask, num_labels: int, ignore_index: int | None = 255) -> np.ndarray:
    """Count the true positives, false positives and false negatives of every class.

    Args:
        pred: Predicted class indices, a numpy array or tensor of any integer dtype and any shape (batches too).
        target: True class indices, the same shape as `pred`.
        num_labels: Number of classes, background included (2 for a binary problem).
        ignore_index: Target value of pixels to leave out of every count; None counts every pixel. A predicted
            `ignore_index` ("unlabelled") counts as a false negative of the true class and a positive of none.

    Returns:
        An int64 array of shape (num_labels, 3) whose columns are tp, fp, fn.
    """
    if num_labels < 2:
        raise ValueError(
            f"num_labels must be at least 2 (background and foreground), got {num_labels}; "
            "for a binary model with one output channel pass model.num_labels, which is 2"
        )
    pred_t, target_t = _as_class_indices(pred, "pred"), _as_class_indices(target, "target")
    if pred_t.shape != target_t.shape:
        raise ValueError(
            f"pred has shape {tuple(pred_t.shape)} but target has shape {tuple(target_t.shape)}; they must match "
            "pixel for pixel: turn logits (B, C, H, W) into class indices (B, H, W) and drop any channel axis of "
            "the target"
        )
    target_t = target_t.to(pred_t.device)
    unlabelled = torch.zeros(num_labels, dtype=torch.int64, device=pred_t.device)
    if ignore_index is not None:
        keep = target_t != ignore_index
        pred_t, target_t = pred_t[keep], target_t[keep]
        # A pixel the prediction left unlabelled (a dropped region of a model without background) misses its class.
        left_out = pred_t == ignore_index
        if left_out.any():
            _check_range(target_t[left_out], "target", num_labels, ignore_index)
            unlabelled = torch.bincount(target_t[left_out], minlength=num_labels)
            pred_t, target_t = pred_t[~left_out], target_t[~left_out]
    _check_range(pred_t, "pred", num_labels, ignore_index)
    _check_range(target_t, "target", num_labels, ignore_index)

    # One bincount gives the confusion matrix: rows are true classes, columns predicted classes.
    flat = target_t.flatten() * num_labels + pred_t.flatten()
    matrix = torch.bincount(flat, minlength=num_labels**2).reshape(num_labels, num_labels)
    tp = matrix.diagonal()
    fp = matrix.sum(dim=0) - tp  # predicted as the class, truly another
    fn = matrix.sum(dim=1) - tp + unlabelled  # truly the class, predicted as another or as nothing
    return torch.stack([tp, fp, fn], dim=1).cpu().numpy()


def _columns(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split counts of shape (num_labels, 3) into float64 tp, fp, fn."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != 3:
        raise ValueError(f"counts must have shape (num_labels, 3) with columns tp, fp, fn, got {counts.shape}")
    tp, fp, fn = counts.T
    return tp, fp, fn


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (the class is in neither mask)."""
    out = np.full_like(numerator, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """IoU of every class, tp / (tp + fp + fn), from counts of shape (num_labels, 3); NaN for an absent class."""
    tp, fp, fn = _columns(counts)
    return _ratio(tp, tp + fp + fn)


def dice_from_counts(counts: np.ndarray) -> np.ndarray:
    """Dice of every class, 2tp / (2tp + fp + fn), from counts of shape (num_labels, 3); NaN for an absent class."""
    tp, fp, fn = _columns(counts)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def iou(pred: Mask, target: Mask, num_labels: int, ignore_index: int | None = 255) -> np.ndarray:
    """Per-class IoU (float64) of one prediction, pooled over every pixel of `pred`; see `confusion_counts`."""
    return iou_from_counts(confusion_counts(pred, target, num_labels, ignore_index))


def dice(pred: Mask, target: Mask, num_labels: int, ignore_index: int | None = 255) -> np.ndarray:
    """Per-class Dice (float64) of one prediction, pooled over every pixel of `pred`; see `confusion_counts`."""
    return dice_from_counts(confusion_counts(pred, target, num_labels, ignore_index))


def accuracy_from_counts(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """Global pixel accuracy and the accuracy (recall) of every class, as the CamVid literature reports them.

    Global accuracy is the share of all labelled pixels given their true class, sum(tp) / sum(tp + fn) (every
    labelled pixel is counted once, in the tp or fn of its true class); a class's accuracy is tp / (tp + fn), NaN
    for a class absent from the target. Their mean over classes is the "class average accuracy".
    """
    tp, _, fn = _columns(counts)
    labelled = (tp + fn).sum()
    return (float(tp.sum() / labelled) if labelled else math.nan), _ratio(tp, tp + fn)


def _check_counts(counts: np.ndarray, num_labels: int) -> np.ndarray:
    """Return counts as int64, after checking they have the shape (num_labels, 3)."""
    counts = np.asarray(counts)
    if counts.shape != (num_labels, 3):
        raise ValueError(
            f"counts must have shape ({num_labels}, 3) (one row of tp, fp, fn a class), got {counts.shape}"
        )
    return counts.astype(np.int64)


class ConfusionMeter:
    """Sums per-class counts over batches, for data-set-level IoU and Dice.

    For distributed evaluation, sum `counts` across processes and set it back:

        total = torch.from_numpy(meter.counts).to(device)
        torch.distributed.all_reduce(total)
        meter.counts = total.cpu().numpy()

    Args:
        num_labels: Number of classes, background included (2 for a binary problem).
        ignore_index: Target value of pixels to leave out of every count; None counts every pixel.
    """

    def __init__(self, num_labels: int, ignore_index: int | None = 255) -> None:
        self.num_labels = num_labels
        self.ignore_index = ignore_index
        self._counts = np.zeros((num_labels, 3), dtype=np.int64)

    @property
    def counts(self) -> np.ndarray:
        """A copy of the int64 counts so far, shape (num_labels, 3), columns tp, fp, fn."""
        return self._counts.copy()

    @counts.setter
    def counts(self, counts: np.ndarray) -> None:
        self._counts = _check_counts(counts, self.num_labels)

    def update(self, pred: Mask, target: Mask) -> None:
        """Add the counts of one batch of predicted and true class-index masks."""
        self._counts += confusion_counts(pred, target, self.num_labels, self.ignore_index)

    def merge(self, other: ConfusionMeter | np.ndarray) -> None:
        """Add the counts of another meter, or a counts array, to these."""
        counts = other.counts if isinstance(other, ConfusionMeter) else other
        self._counts += _check_counts(counts, self.num_labels)

    def reset(self) -> None:
        """Forget every count, e.g. at the start of an evaluation."""
        self._counts[:] = 0

    def iou(self) -> np.ndarray:
        """Per-class IoU over everything seen so far; NaN for a class absent from every batch."""
        return iou_from_counts(self._counts)

    def dice(self) -> np.ndarray:
        """Per-class Dice over everything seen so far; NaN for a class absent from every batch."""
        return dice_from_counts(self._counts)


def _nanmean(scores: np.ndarray) -> float:
    """Mean over the classes that are not NaN; NaN (without numpy's warning) when every class is."""
    present = scores[~np.isnan(scores)]
    return float(present.mean()) if present.size else math.nan


def _json_float(value: float) -> float | None:
    """A plain float for JSON, None for NaN."""
    return None if math.isnan(value) else float(value)


def summary(
    iou_per_class: np.ndarray,
    dice_per_class: np.ndarray,
    class_names: Sequence[str],
    counts: np.ndarray | None = None,
) -> dict[str, Any]:
    """Gather per-class scores into a JSON-able report with per-class values, means and a headline.

    Args:
        iou_per_class: IoU of every class, e.g. `ConfusionMeter.iou()`.
        dice_per_class: Dice of every class, in the same class order.
        class_names: One distinct name a class, in the same order.
        counts: The confusion counts behind the scores (num_labels, 3): when given, the report also holds
            `"accuracy": {"global": g, "class_average": c, "per_class": {name: value}}` (`accuracy_from_counts`).

    Returns:
        `{"iou": {"per_class": {name: value}, "mean": m}, "dice": {...}, "headline": {"iou": h, "dice": h}}`, where
        means skip NaN classes, the headline is the foreground class (index 1) for two classes and the mean for more
        (the mIoU of the literature), and NaN becomes None (JSON null).
    """
    scores = {"iou": np.asarray(iou_per_class, dtype=np.float64), "dice": np.asarray(dice_per_class, dtype=np.float64)}
    names = list(class_names)
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct, got {names}")
    for metric, values in scores.items():
        if values.shape != (len(names),):
            raise ValueError(
                f"{metric} has shape {values.shape} but there are {len(names)} class names; pass one score a class"
            )

    report: dict[str, Any] = {}
    headline: dict[str, float | None] = {}
    for metric, values in scores.items():
        mean = _nanmean(values)
        report[metric] = {
            "per_class": {name: _json_float(value) for name, value in zip(names, values, strict=True)},
            "mean": _json_float(mean),
        }
        # With two classes the background score is high for free; the foreground is the number that matters.
        headline[metric] = _json_float(values[1] if len(names) == 2 else mean)
    report["headline"] = headline
    if counts is not None:
        pixel, per_class = accuracy_from_counts(_check_counts(counts, len(names)))
        report["accuracy"] = {
            "global": _json_float(pixel),
            "class_average": _json_float(_nanmean(per_class)),
            "per_class": {name: _json_float(value) for name, value in zip(names, per_class, strict=True)},
        }
    return report


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = 255, eps: float = 1.0
) -> torch.Tensor:
    """1 - mean soft Dice over the batch, the differentiable counterpart of `dice` for training.

    Each class's Dice is pooled over the whole batch (sums over B, H, W) before the mean over classes.

    Args:
        logits: Raw scores (B, C, H, W). C == 1 is binary: sigmoid, scored on the foreground alone.
            C >= 2 is multi-class: softmax, scored on every class.
        target: Class indices (B, H, W), 0..C-1 (0/1 when C == 1).
        ignore_index: Target value of pixels left out of the loss; None uses every pixel.
        eps: Smoothing added to numerator and denominator, so a class absent from both scores 1, not 0/0.

    Returns:
        A scalar tensor in [0, 1).
    """
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"logits must be (B, C, H, W) and target (B, H, W) with the same B, H, W; got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}: drop any channel axis of the target"
        )
    if target.is_floating_point():
        raise ValueError(f"target has dtype {target.dtype}; pass integer class indices (e.g. target.long())")
    channels = logits.shape[1]
    num_labels = 2 if channels == 1 else channels
    target = target.long()
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    _check_range(target[valid], "target", num_labels, ignore_index)

    logits = logits.float()  # sums over a batch of pixels lose too much in half precision
    target = target.masked_fill(~valid, 0)  # any class will do: these pixels are masked out below
    if channels == 1:
        probs = torch.sigmoid(logits)  # (B, 1, H, W): the foreground only
        one_hot = (target == 1).unsqueeze(1).float()  # (B, 1, H, W)
    else:
        probs = logits.softmax(dim=1)  # (B, C, H, W)
        one_hot = torch.nn.functional.one_hot(target, channels).permute(0, 3, 1, 2).float()  # (B, C, H, W)
    weight = valid.unsqueeze(1).float()  # (B, 1, H, W)
    probs, one_hot = probs * weight, one_hot * weight

    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)  # (C,)
    total = probs.sum(dims) + one_hot.sum(dims)  # (C,)
    soft_dice = (2 * intersection + eps) / (total + eps)
    return 1 - soft_dice.mean()
