"""The training loss: a pixel-wise classification term plus soft Dice.

Cross-entropy (binary cross-entropy for a one-channel model) gives every pixel a well-behaved gradient from the
first step; soft Dice scores the overlap of whole regions, so a small foreground is not drowned by the background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unet.metrics import soft_dice_loss
from unet.preprocessing import IGNORE_INDEX


class SegmentationLoss(nn.Module):
    """(B)CE + dice_weight * soft Dice, skipping pixels labelled `ignore_index`."""

    def __init__(self, dice_weight: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, C, H, W) with C = 1 (binary) or the number of classes; target (B, H, W) class indices."""
        logits = logits.float()  # the loss in fp32 even when the forward pass ran in bf16
        if logits.shape[1] == 1:
            valid = target != self.ignore_index
            bce = F.binary_cross_entropy_with_logits(logits[:, 0], (target == 1).float(), reduction="none")
            pixel_loss = bce[valid].mean() if valid.any() else bce.sum() * 0
        else:
            pixel_loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        if self.dice_weight == 0:
            return pixel_loss
        return pixel_loss + self.dice_weight * soft_dice_loss(logits, target, ignore_index=self.ignore_index)
