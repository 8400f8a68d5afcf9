"""Instance and panoptic segmentation built on a semantic mask, by connected components.

The three tasks, on the same picture of two cats on a lawn:

- semantic segmentation gives every pixel a class (what the U-Net predicts): both cats are "cat";
- instance segmentation gives every object its own id: cat 1, cat 2, and no id for the lawn;
- panoptic segmentation does both at once: every pixel gets a class, and pixels of countable "thing" classes (cat)
  also get an instance number, while amorphous "stuff" classes (lawn, sky, background) form one segment per class.

Here instances are the connected regions of each class of a semantic mask (`instances_from_semantic`). That is
honest and often enough (cells apart from each other, objects on a table), but it has one plain limitation:
objects of the same class that touch become one instance, because nothing in a class mask says where one ends and
the other begins. True instance segmentation separates them: Mask R-CNN predicts one mask per detected box, and a
U-Net can learn an extra boundary or distance-to-centre channel whose watershed splits touching objects
(as StarDist and Cellpose do). Objects of different classes that touch stay apart, since each class is labelled
on its own.

Panoptic maps use the COCO-panoptic / Cityscapes encoding `id = class * label_divisor + instance`, with instance 0
for stuff classes, and `decode_panoptic` inverts it.

`connected_components` labels a boolean mask with `scipy.ndimage.label`, which visits every pixel once in compiled
code: the demo runs it once per class on every request, so it must be fast on an eleven-class street scene.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
from scipy import ndimage

from unet.labels import IGNORE_INDEX


def connected_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the connected regions of a boolean mask, numbered in raster order of their first pixel.

    Args:
        mask: A boolean (H, W) array (integers count as foreground where they are not 0).
        connectivity: 8 joins pixels that touch by an edge or a corner, 4 only those that share an edge.

    Returns:
        An int32 (H, W) array, 0 on the background and 1..N on the regions, and N. Region 1 holds the first
        foreground pixel in reading order (top row first, left to right), region 2 the first pixel not in region 1,
        and so on, so the labels do not depend on how they were computed.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 (edges) or 8 (edges and corners), got {connectivity}")
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be one (H, W) image, got shape {array.shape}: label each image of a batch apart")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise ValueError(
            f"mask has dtype {array.dtype}, but it must be boolean: threshold probabilities first (probs > 0.5) "
            "or pick a class from a class mask (class_mask == c)"
        )
    structure = np.ones((3, 3), dtype=bool) if connectivity == 8 else None  # None: scipy's cross, 4-connectivity
    labels, count = ndimage.label(array != 0, structure=structure, output=np.int32)  # numbered in raster order
    return labels, int(count)


def _renumber(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Drop regions smaller than min_area and number the rest 1..N in raster order of their first pixel."""
    ids, first, area = np.unique(labels, return_index=True, return_counts=True)
    keep = (ids != 0) & (area >= min_area)
    ids, first = ids[keep], first[keep]
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.int32)
    lookup[ids[np.argsort(first)]] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lookup[labels]


def _class_indices(class_mask: np.ndarray) -> np.ndarray:
    """Return the mask as a non-negative integer (H, W) array, or say how to make it one."""
    array = np.asarray(class_mask)
    if array.ndim != 2:
        raise ValueError(f"class_mask must be one (H, W) image, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"class_mask has dtype {array.dtype}, but it must hold integer class indices: take logits.argmax(1) "
            "for a multi-class model or (logits > 0) for a binary one"
        )
    if array.size and array.min() < 0:
        raise ValueError(f"class_mask holds negative values ({array.min()}); class indices start at 0")
    return array


def instances_from_semantic(
    class_mask: np.ndarray, min_area: int = 0, ignore_index: int = IGNORE_INDEX, connectivity: int = 8
) -> np.ndarray:
    """Give each connected region of each object class its own instance id.

    Touching objects of the same class merge into one instance (see the module docstring); regions of different
    classes stay apart even where they touch.

    Args:
        class_mask: An (H, W) array of class indices; 0 is background.
        min_area: Regions with fewer pixels than this are dropped (set to 0), e.g. specks of noise.
        ignore_index: Class value of unlabelled pixels, which belong to no instance.
        connectivity: 8 or 4, as in `connected_components`.

    Returns:
        An int32 (H, W) instance map: 0 where there is no object, 1..N on the objects, numbered in raster order of
        their first pixel whatever their class.
    """
    classes = _class_indices(class_mask)
    instances = np.zeros(classes.shape, dtype=np.int32)
    offset = 0
    for value in np.unique(classes):
        if value == 0 or value == ignore_index:
            continue
        labels, count = connected_components(classes == value, connectivity)
        instances[labels > 0] = labels[labels > 0] + offset
        offset += count
    return _renumber(instances, min_area)


def panoptic_from_semantic(
    class_mask: np.ndarray,
    thing_classes: Collection[int],
    label_divisor: int = 1000,
    min_area: int = 0,
    connectivity: int = 8,
) -> np.ndarray:
    """Encode a semantic mask as a panoptic map, `id = class * label_divisor + instance`.

    Stuff classes (every class not in `thing_classes`: background, sky, road, and the ignore value 255, which
    becomes 255 * label_divisor, the usual "void") keep instance 0, one segment per class. Each connected region
    of a thing class gets instance 1, 2, ... within its class, in raster order of its first pixel. A thing region
    smaller than `min_area` keeps its class with instance 0, "class known, no instance" as Cityscapes marks crowds,
    so `decode_panoptic` always gives back the class mask unchanged.

    Args:
        class_mask: An (H, W) array of class indices.
        thing_classes: The classes of countable objects (person, car, cat), which get one instance per region.
        label_divisor: Must exceed the number of instances of any one class.
        min_area: Thing regions with fewer pixels than this get no instance number.
        connectivity: 8 or 4, as in `connected_components`.

    Returns:
        An int64 (H, W) panoptic map.
    """
    classes = _class_indices(class_mask)
    panoptic = classes.astype(np.int64) * label_divisor
    for value in set(thing_classes) & set(np.unique(classes).tolist()):
        labels, _ = connected_components(classes == value, connectivity)
        instances = _renumber(labels, min_area)
        if instances.max() >= label_divisor:
            raise ValueError(
                f"class {value} has {instances.max()} instances, which does not fit under label_divisor "
                f"{label_divisor}: pass a larger label_divisor (e.g. {10 ** len(str(instances.max()))})"
            )
        panoptic += instances
    return panoptic


def decode_panoptic(panoptic: np.ndarray, label_divisor: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Split a panoptic map into its class mask and its instance numbers (which restart at 1 in every class)."""
    array = np.asarray(panoptic)
    return array // label_divisor, array % label_divisor


def describe_instances(instance_map: np.ndarray, class_mask: np.ndarray | None = None) -> list[dict[str, Any]]:
    """List every instance with its id, area in pixels and bounding box, in id order.

    Args:
        instance_map: An (H, W) integer array, 0 for no instance (as `instances_from_semantic` returns).
        class_mask: The class mask the instances came from; when given, each entry also gets its "class" (the
            class of the instance's first pixel).

    Returns:
        One dict per instance: {"id", "area", "bbox"} and "class" when `class_mask` is given. The box is
        (x0, y0, x1, y1) with inclusive corners, the first and last column and row the instance covers (as
        torchvision.ops.masks_to_boxes), so its width is x1 - x0 + 1.
    """
    instances = np.asarray(instance_map)
    ys, xs = np.nonzero(instances)
    if len(ys) == 0:
        return []
    ids = instances[ys, xs]
    order = np.argsort(ids, kind="stable")  # stable: each instance's first entry is its first pixel
    ids, ys, xs = ids[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    areas = np.diff(np.r_[starts, len(ids)])
    boxes = zip(
        np.minimum.reduceat(xs, starts),
        np.minimum.reduceat(ys, starts),
        np.maximum.reduceat(xs, starts),
        np.maximum.reduceat(ys, starts),
        strict=True,
    )
    described = []
    for start, area, box in zip(starts, areas, boxes, strict=True):
        entry: dict[str, Any] = {"id": int(ids[start]), "area": int(area), "bbox": tuple(int(v) for v in box)}
        if class_mask is not None:
            entry["class"] = int(np.asarray(class_mask)[ys[start], xs[start]])
        described.append(entry)
    return described
