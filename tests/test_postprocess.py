"""drop_unsure_regions on masks whose regions and probabilities are set by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unet.postprocess import drop_unsure_regions


def binary(foreground: np.ndarray) -> np.ndarray:
    """Two-label probabilities (background, foreground) from a foreground probability map."""
    return np.stack([1 - foreground, foreground]).astype(np.float32)


def two_regions() -> tuple[np.ndarray, np.ndarray]:
    """A 6x10 mask with a sure region (mean foreground probability 0.9) and an unsure one (0.6 and 0.7: mean 0.65)."""
    foreground = np.full((6, 10), 0.1)
    foreground[1:4, 1:4] = 0.9
    foreground[2:5, 6:8] = 0.6
    foreground[2:5, 8:9] = 0.7  # 6 + 3 pixels: (6 * 0.6 + 3 * 0.7) / 9 = 0.6333
    mask = (foreground >= 0.5).astype(np.uint8)
    return mask, binary(foreground)


def test_drops_only_the_regions_below_the_confidence() -> None:
    mask, probabilities = two_regions()
    kept = drop_unsure_regions(mask, probabilities, 0.8)
    expected = np.zeros_like(mask)
    expected[1:4, 1:4] = 1
    np.testing.assert_array_equal(kept, expected)
    # Just below and just above the unsure region's mean (0.6333).
    assert drop_unsure_regions(mask, probabilities, 0.63).sum() == mask.sum()
    assert drop_unsure_regions(mask, probabilities, 0.64).sum() == 9
    assert drop_unsure_regions(mask, probabilities, 0.95).sum() == 0


def test_zero_keeps_the_mask_and_the_input_is_never_changed() -> None:
    mask, probabilities = two_regions()
    before = mask.copy()
    kept = drop_unsure_regions(mask, probabilities, 0.0)
    np.testing.assert_array_equal(kept, mask)
    assert kept is not mask and kept.dtype == np.uint8
    drop_unsure_regions(mask, probabilities, 0.99)
    np.testing.assert_array_equal(mask, before)


def test_regions_touching_at_a_corner_are_judged_together() -> None:
    foreground = np.zeros((4, 4))
    foreground[0:2, 0:2] = 0.95  # 4 pixels
    foreground[2, 2] = 0.55  # touches the block diagonally: (4 * 0.95 + 0.55) / 5 = 0.87
    mask = (foreground >= 0.5).astype(np.uint8)
    np.testing.assert_array_equal(drop_unsure_regions(mask, binary(foreground), 0.85), mask)


def test_each_class_is_judged_by_its_own_probability() -> None:
    # Three labels: a class-1 region sure of class 1, a class-2 region whose class-2 probability is only 0.5.
    probabilities = np.zeros((3, 4, 6), dtype=np.float32)
    probabilities[0] = 1.0
    probabilities[:, :, 0:2] = np.array([0.05, 0.9, 0.05])[:, None, None]
    probabilities[:, :, 4:6] = np.array([0.2, 0.3, 0.5])[:, None, None]
    mask = probabilities.argmax(0).astype(np.uint8)
    kept = drop_unsure_regions(mask, probabilities, 0.6)
    assert set(np.unique(kept[:, 0:2])) == {1} and set(np.unique(kept[:, 4:6])) == {0}
    np.testing.assert_array_equal(kept[:, 2:4], 0)


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan])
def test_refuses_a_confidence_outside_zero_to_one(value: float) -> None:
    mask, probabilities = two_regions()
    with pytest.raises(ValueError, match="min_confidence must lie in"):
        drop_unsure_regions(mask, probabilities, value)


def test_refuses_probabilities_of_another_size() -> None:
    mask, probabilities = two_regions()
    with pytest.raises(ValueError, match=r"expected probabilities \(num_labels, H, W\) for a mask of shape \(6, 10\)"):
        drop_unsure_regions(mask, probabilities[:, :5], 0.5)
