"""The training loss: a pixel-wise classification term plus soft Dice.

Cross-entropy (binary cross-entropy for a one-channel model) gives every pixel a well-behaved gradient from the
first step; soft Dice scores the overlap of whole regions, so a small foreground is not drowned by the background.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unet.labels import IGNORE_INDEX
from unet.metrics import soft_dice_loss


class SegmentationLoss(nn.Module):
    """(B)CE + dice_weight * soft Dice, skipping pixels labelled `ignore_index`.

    `class_weights` (multi-class only) weighs each class's pixels in the cross-entropy, e.g. by median frequency
    balancing (`median_frequency_weights`), so that rare classes such as poles and signs are not drowned by road
    and sky.
    """

    def __init__(
        self, dice_weight: float = 1.0, ignore_index: int = IGNORE_INDEX, class_weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, C, H, W) with C = 1 (binary) or the number of classes; target (B, H, W) class indices."""
        logits = logits.float()  # the loss in fp32 even when the forward pass ran in bf16
        if logits.shape[1] == 1:
            valid = target != self.ignore_index
            bce = F.binary_cross_entropy_with_logits(logits[:, 0], (target == 1).float(), reduction="none")
            pixel_loss = bce[valid].mean() if valid.any() else bce.sum() * 0
        else:
            pixel_loss = F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=self.ignore_index)
        if self.dice_weight == 0:
            return pixel_loss
        return pixel_loss + self.dice_weight * soft_dice_loss(logits, target, ignore_index=self.ignore_index)


def median_frequency_weights(
    masks: Iterable[np.ndarray], num_labels: int, max_weight: float | None = None
) -> list[float]:
    """Class weights by median frequency balancing (Eigen and Fergus 2015, as SegNet trained on CamVid).

    A class's frequency is its pixels divided by the labelled pixels of the images it appears in; its weight is the
    median of the frequencies divided by its own, so a class rarer than the median weighs more than 1. Pixels
    labelled `IGNORE_INDEX` count for nothing; a class that never appears gets weight 0 (it cannot be learned).

    Args:
        masks: The training masks, (H, W) arrays of class indices.
        num_labels: The number of classes.
        max_weight: Cap the weights at this value (None: no cap).
    """
    pixels = np.zeros(num_labels, dtype=np.float64)
    present_in = np.zeros(num_labels, dtype=np.float64)  # labelled pixels of the images each class appears in
    for mask in masks:
        labelled = mask[mask != IGNORE_INDEX].astype(np.int64)
        counts = np.bincount(labelled, minlength=num_labels)[:num_labels]
        pixels += counts
        present_in[counts > 0] += labelled.size
    seen = pixels > 0
    if not seen.any():
        raise ValueError("no labelled pixel in the masks: class weights need at least one")
    frequency = np.zeros(num_labels)
    frequency[seen] = pixels[seen] / present_in[seen]
    weights = np.zeros(num_labels)
    weights[seen] = np.median(frequency[seen]) / frequency[seen]
    if max_weight is not None:
        weights = np.minimum(weights, max_weight)
    return [round(float(weight), 4) for weight in weights]
