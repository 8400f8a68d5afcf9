"""Instances and panoptic maps from semantic masks: connectivity, the touching-objects limitation, the panoptic
encoding and its inverse, and connected components checked against a plain breadth-first flood fill."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from unet.instances import (
    connected_components,
    decode_panoptic,
    describe_instances,
    instances_from_semantic,
    panoptic_from_semantic,
)

NEIGHBOURS = {
    4: [(-1, 0), (1, 0), (0, -1), (0, 1)],
    8: [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)],
}


def flood_fill(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """The reference labelling: scan in raster order and flood each new region breadth-first."""
    height, width = mask.shape
    labels = np.zeros((height, width), dtype=np.int32)
    count = 0
    for y in range(height):
        for x in range(width):
            if not mask[y, x] or labels[y, x]:
                continue
            count += 1
            labels[y, x] = count
            queue = deque([(y, x)])
            while queue:
                cy, cx = queue.popleft()
                for dy, dx in NEIGHBOURS[connectivity]:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = count
                        queue.append((ny, nx))
    return labels, count


def spiral(size: int) -> np.ndarray:
    """A 1-pixel-wide square spiral from the top-left corner inwards, its turns one empty pixel apart."""
    grid = np.zeros((size, size), dtype=bool)
    directions = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    y, x, heading, turns = 0, 0, 0, 0
    grid[y, x] = True

    def free(cy: int, cx: int) -> bool:
        return 0 <= cy < size and 0 <= cx < size and not grid[cy, cx]

    while turns < 2:  # two turns without a step: the centre is reached
        dy, dx = directions[heading]
        beyond = (y + 2 * dy, x + 2 * dx)
        inside = 0 <= beyond[0] < size and 0 <= beyond[1] < size
        if free(y + dy, x + dx) and not (inside and grid[beyond]):
            y, x, turns = y + dy, x + dx, 0
            grid[y, x] = True
        else:
            heading, turns = (heading + 1) % 4, turns + 1
    return grid


# Connected components ------------------------------------------------------------------------------------------------


def test_diagonal_pair_is_one_region_with_8_connectivity_and_two_with_4() -> None:
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    labels, count = connected_components(mask, connectivity=8)
    assert count == 1 and labels.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    labels, count = connected_components(mask, connectivity=4)
    assert count == 2 and labels.tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_labels_follow_raster_order_of_first_pixel() -> None:
    # The region whose first pixel comes first in reading order is 1, even if it reaches lower down.
    mask = np.array(
        [
            [0, 0, 0, 1],
            [1, 1, 0, 1],
            [0, 0, 0, 1],
        ],
        dtype=np.uint8,
    )
    labels, count = connected_components(mask)
    assert count == 2
    assert labels.tolist() == [[0, 0, 0, 1], [2, 2, 0, 1], [0, 0, 0, 1]]
    assert labels.dtype == np.int32


def test_empty_and_full_masks() -> None:
    labels, count = connected_components(np.zeros((5, 7), dtype=bool))
    assert count == 0 and labels.shape == (5, 7) and not labels.any()
    labels, count = connected_components(np.ones((256, 256), dtype=bool), connectivity=4)
    assert count == 1 and (labels == 1).all()


@pytest.mark.parametrize("connectivity", [4, 8])
def test_one_pixel_wide_spiral_is_one_region(connectivity: int) -> None:
    mask = spiral(96)
    assert mask.sum() > 4000  # a long path: a label crawling one pixel a pass would need thousands of passes
    assert flood_fill(mask, 4)[1] == 1 and flood_fill(~mask, 4)[1] == 1  # a true spiral: one path, one corridor
    labels, count = connected_components(mask, connectivity)
    assert count == 1 and np.array_equal(labels, mask.astype(np.int32))


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("density", [0.3, 0.5, 0.6])
def test_random_masks_match_flood_fill(connectivity: int, density: float) -> None:
    rng = np.random.default_rng(round(density * 100) + connectivity)
    mask = rng.random((64, 64)) < density
    expected, expected_count = flood_fill(mask, connectivity)
    labels, count = connected_components(mask, connectivity)
    assert count == expected_count > 1
    assert np.array_equal(labels, expected)


def test_rejects_bad_connectivity_shape_and_dtype() -> None:
    with pytest.raises(ValueError, match="connectivity must be 4"):
        connected_components(np.ones((2, 2), dtype=bool), connectivity=6)
    with pytest.raises(ValueError, match="one \\(H, W\\) image"):
        connected_components(np.ones((1, 2, 2), dtype=bool))
    with pytest.raises(ValueError, match="threshold probabilities first"):
        connected_components(np.full((2, 2), 0.9))


# Instances ------------------------------------------------------------------------------------------------------------


def test_two_separate_blobs_are_two_instances() -> None:
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[1:4, 1:4] = 1
    mask[6:9, 5:9] = 1
    instances = instances_from_semantic(mask)
    assert instances.max() == 2
    assert (instances[1:4, 1:4] == 1).all() and (instances[6:9, 5:9] == 2).all()
    assert (instances[mask == 0] == 0).all()


def test_touching_objects_of_one_class_merge_into_one_instance() -> None:
    # Two squares of the same class that share an edge: nothing in the class mask separates them.
    mask = np.zeros((6, 10), dtype=np.uint8)
    mask[1:5, 1:5] = 1
    mask[1:5, 5:9] = 1
    instances = instances_from_semantic(mask)
    assert instances.max() == 1 and (instances[mask == 1] == 1).all()


def test_touching_objects_of_different_classes_stay_apart() -> None:
    mask = np.zeros((6, 10), dtype=np.uint8)
    mask[1:5, 1:5] = 2
    mask[1:5, 5:9] = 1
    instances = instances_from_semantic(mask)
    assert instances.max() == 2
    # Numbered by first pixel in reading order whatever the class: the class-2 square comes first.
    assert (instances[1:5, 1:5] == 1).all() and (instances[1:5, 5:9] == 2).all()


def test_connectivity_applies_to_instances() -> None:
    mask = np.eye(4, dtype=np.uint8)
    assert instances_from_semantic(mask, connectivity=8).max() == 1
    assert instances_from_semantic(mask, connectivity=4).tolist() == np.diag([1, 2, 3, 4]).tolist()


def test_min_area_drops_specks_and_renumbers() -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[0, 0] = 1  # a 1-pixel speck, first in reading order
    mask[2:5, 2:5] = 1  # 9 pixels
    mask[6, 6:8] = 1  # a 2-pixel speck
    assert instances_from_semantic(mask).max() == 3
    instances = instances_from_semantic(mask, min_area=3)
    assert instances.max() == 1
    assert (instances[2:5, 2:5] == 1).all() and instances.sum() == 9


def test_ignored_pixels_belong_to_no_instance() -> None:
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[1:3, 0:2] = 255
    mask[1:3, 2:4] = 1  # touches the ignored block
    instances = instances_from_semantic(mask)
    assert instances.max() == 1
    assert (instances[1:3, 0:2] == 0).all() and (instances[1:3, 2:4] == 1).all()


def test_instances_reject_float_and_negative_masks() -> None:
    with pytest.raises(ValueError, match="argmax"):
        instances_from_semantic(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="negative"):
        instances_from_semantic(np.array([[0, -1]]))


# Panoptic ------------------------------------------------------------------------------------------------------------


def _scene() -> np.ndarray:
    """Background 0, stuff class 2 (sky) along the top, two objects of thing class 1, an ignored corner."""
    mask = np.zeros((8, 10), dtype=np.uint8)
    mask[0:2, :] = 2
    mask[3:6, 1:4] = 1
    mask[3:7, 6:9] = 1
    mask[7, 0] = 255
    return mask


def test_panoptic_encodes_class_times_divisor_plus_instance() -> None:
    mask = _scene()
    panoptic = panoptic_from_semantic(mask, thing_classes=[1])
    assert panoptic.dtype == np.int64
    assert (panoptic[0:2, :] == 2000).all()  # stuff: one segment, instance 0
    assert (panoptic[3:6, 1:4] == 1001).all() and (panoptic[3:7, 6:9] == 1002).all()
    assert panoptic[7, 0] == 255_000  # the ignore value becomes the usual "void"
    assert set(np.unique(panoptic).tolist()) == {0, 1001, 1002, 2000, 255_000}


def test_decode_panoptic_inverts_the_encoding() -> None:
    mask = _scene()
    for divisor in (256, 1000):
        classes, instances = decode_panoptic(panoptic_from_semantic(mask, [1], label_divisor=divisor), divisor)
        assert np.array_equal(classes, mask)
        assert set(np.unique(instances[mask == 1]).tolist()) == {1, 2}
        assert (instances[mask != 1] == 0).all()


def test_panoptic_instances_restart_in_every_thing_class() -> None:
    mask = np.zeros((4, 9), dtype=np.uint8)
    mask[1:3, 0:2] = 1
    mask[1:3, 3:5] = 3
    mask[1:3, 7:9] = 1
    panoptic = panoptic_from_semantic(mask, thing_classes=[1, 3])
    assert panoptic[1, 0] == 1001 and panoptic[1, 3] == 3001 and panoptic[1, 7] == 1002


def test_panoptic_small_thing_keeps_its_class_without_instance() -> None:
    mask = _scene()
    mask[7, 4] = 1  # a 1-pixel speck of the thing class, apart from both objects
    panoptic = panoptic_from_semantic(mask, [1], min_area=2)
    assert panoptic[7, 4] == 1000
    assert (panoptic[3:6, 1:4] == 1001).all() and (panoptic[3:7, 6:9] == 1002).all()
    assert np.array_equal(decode_panoptic(panoptic)[0], mask)


def test_panoptic_too_many_instances_for_divisor() -> None:
    mask = np.zeros((1, 20), dtype=np.uint8)
    mask[0, ::2] = 1  # 10 separate pixels
    with pytest.raises(ValueError, match="pass a larger label_divisor"):
        panoptic_from_semantic(mask, [1], label_divisor=10)


# Describing instances ------------------------------------------------------------------------------------------------


def test_describe_instances_areas_boxes_and_classes() -> None:
    mask = _scene()
    instances = instances_from_semantic(mask)
    described = describe_instances(instances, mask)
    # The sky (class 2) is a region too: instances_from_semantic treats every class other than 0 as objects.
    assert described == [
        {"id": 1, "area": 20, "bbox": (0, 0, 9, 1), "class": 2},
        {"id": 2, "area": 9, "bbox": (1, 3, 3, 5), "class": 1},
        {"id": 3, "area": 12, "bbox": (6, 3, 8, 6), "class": 1},
    ]
    for entry in described:
        x0, y0, x1, y1 = entry["bbox"]
        region = instances == entry["id"]
        assert region.sum() == entry["area"]
        assert region[y0 : y1 + 1, x0 : x1 + 1].sum() == entry["area"]  # the box holds the whole instance
    assert [set(e) for e in describe_instances(instances)] == [{"id", "area", "bbox"}] * 3
    assert describe_instances(np.zeros((3, 3), dtype=np.int32)) == []
