"""Clean up a predicted class mask at the level of regions rather than pixels.

A pixel threshold judges every pixel alone. Many of a segmentation model's false positives, though, are whole
regions it is only half sure of: a patch of paving, a shadow, a textured wall that looks a little like an object.
Their pixels often lie not far above the threshold, while most pixels of a real object lie far above it. So
`drop_unsure_regions` takes each connected region of a class and asks how sure the model is of it on average; a
region whose mean probability of its class falls below `min_confidence` goes back to background.

On the composite validation set this removed mostly such false positives (docs/composites.md tells
how the demo's setting was chosen, docs/experiments.md what it removed). It can also remove a real object the model
barely found, so it is a setting (`--min-confidence`, the demo's slider) and 0 turns it off.
"""

from __future__ import annotations

import numpy as np

from unet.instances import connected_components
from unet.labels import IGNORE_INDEX


def drop_unsure_regions(
    mask: np.ndarray, probabilities: np.ndarray, min_confidence: float, background_class: int | None = 0
) -> np.ndarray:
    """Set to background every connected region whose mean probability of its class is below `min_confidence`.

    Args:
        mask: Class indices (H, W), as `probabilities_to_mask` gives them.
        probabilities: Per-class probabilities (num_labels, H, W) behind the mask.
        min_confidence: From 0 (keep every region: the mask is returned unchanged) to 1.
        background_class: The class a dropped region becomes, itself never dropped. None for a model without one
            (a street scene's class 0 is the sky): every class can be dropped, and a dropped region becomes
            unlabelled (`IGNORE_INDEX`), which pictures draw as such and scores count as missed.

    Returns:
        A new uint8 mask (H, W); regions are 8-connected and judged per class.
    """
    if not 0.0 <= min_confidence <= 1.0:  # also refuses nan
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
    if probabilities.ndim != 3 or probabilities.shape[1:] != mask.shape:
        raise ValueError(
            f"expected probabilities (num_labels, H, W) for a mask of shape {mask.shape}, got {probabilities.shape}"
        )
    cleaned = mask.astype(np.uint8, copy=True)
    if min_confidence == 0.0:
        return cleaned
    dropped = IGNORE_INDEX if background_class is None else background_class
    for label in np.unique(mask):
        if label == background_class:
            continue
        regions, count = connected_components(mask == label)
        # Mean probability of `label` over each region: sums per region id, divided by the region's area.
        sums = np.bincount(regions.ravel(), weights=probabilities[label].ravel(), minlength=count + 1)
        areas = np.bincount(regions.ravel(), minlength=count + 1)
        unsure = sums[1:] < min_confidence * areas[1:]
        cleaned[np.isin(regions, np.flatnonzero(unsure) + 1)] = dropped
    return cleaned
