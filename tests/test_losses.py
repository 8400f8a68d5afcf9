"""The training loss: class weights in the cross-entropy, and median frequency balancing counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet.labels import IGNORE_INDEX
from unet.losses import SegmentationLoss, median_frequency_weights


def test_median_frequency_weights_by_hand():
    """Class 0 fills image a (4 px) and half of b; class 1 the other half of b; class 2 one pixel of c, whose other
    three pixels are class 0. Frequencies: 0: 4+2+3 of 4+4+4 = 0.75; 1: 2 of 4 = 0.5; 2: 1 of 4 = 0.25."""
    a = np.zeros((2, 2), np.uint8)
    b = np.array([[0, 0], [1, 1]], np.uint8)
    c = np.array([[0, 0], [0, 2]], np.uint8)
    weights = median_frequency_weights([a, b, c], 3)
    assert weights == pytest.approx([0.5 / 0.75, 1.0, 0.5 / 0.25], abs=1e-4)
    assert median_frequency_weights([a, b, c], 3, max_weight=1.5) == pytest.approx([0.6667, 1.0, 1.5], abs=1e-4)


def test_ignored_pixels_and_absent_classes_count_for_nothing():
    mask = np.array([[0, 1], [IGNORE_INDEX, IGNORE_INDEX]], np.uint8)
    assert median_frequency_weights([mask], 3) == [1.0, 1.0, 0.0]  # class 2 never appears: weight 0
    with pytest.raises(ValueError, match="no labelled pixel"):
        median_frequency_weights([np.full((2, 2), IGNORE_INDEX, np.uint8)], 3)


def test_class_weights_weigh_the_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    target[0, 0, 0] = IGNORE_INDEX
    weights = [0.5, 1.0, 2.0]
    loss = SegmentationLoss(dice_weight=0, class_weights=weights)(logits, target)
    by_hand = F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(loss, by_hand)
    assert not torch.allclose(loss, SegmentationLoss(dice_weight=0)(logits, target))
