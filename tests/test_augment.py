"""Joint augmentation: image and mask move together, masks keep their values, evaluation matches the predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from unet.augment import eval_transform, train_transform
from unet.labels import IGNORE_INDEX
from unet.preprocessing import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor

SIZE = 48
SEEDS = range(1, 9)  # torch.manual_seed(0) happens to draw a rotation too small to bring in any fill pixel

# cell kind -> (colour, mask value): only the foreground is red; white cells are labelled "ignore".
CELLS = {
    0: ((0, 0, 0), 0),
    1: ((255, 0, 0), 1),
    2: ((0, 0, 255), 0),
    3: ((0, 255, 0), 0),
    4: ((255, 255, 255), IGNORE_INDEX),
}


def blocky_pattern(seed: int = 0, rows: int = 4, cols: int = 5, block: int = 24) -> tuple[Image.Image, np.ndarray]:
    """A (rows * block, cols * block) picture of coloured blocks and the mask it implies: 1 exactly where it is red."""
    kinds = np.random.default_rng(seed).integers(0, len(CELLS), (rows, cols))
    kinds[0, 0], kinds[-1, -1] = 1, 4  # at least one foreground and one ignored block
    kinds = np.kron(kinds, np.ones((block, block), dtype=np.int64))  # (H, W)
    colours = np.array([colour for colour, _ in CELLS.values()], dtype=np.uint8)
    labels = np.array([label for _, label in CELLS.values()], dtype=np.uint8)
    return Image.fromarray(colours[kinds]), labels[kinds]


def unnormalize(image: torch.Tensor) -> torch.Tensor:
    """Back from the model's normalization to RGB in [0, 1]."""
    return image * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)


def looks_red(image: torch.Tensor) -> torch.Tensor:
    """(H, W) True where the red channel stands well above green and blue, even after colour jitter."""
    rgb = unnormalize(image)
    return rgb[0] - rgb[1:].amax(dim=0) > 0.25


def one_label_around(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) True where the 3x3 neighbourhood holds a single label: away from edges that resampling blurs."""
    values = mask.float()[None, None]  # (1, 1, H, W)
    highest = F.max_pool2d(values, 3, stride=1, padding=1)
    lowest = -F.max_pool2d(-values, 3, stride=1, padding=1)
    return (highest == lowest)[0, 0]


@pytest.mark.parametrize("seed", SEEDS)
def test_train_transform_keeps_image_and_mask_aligned(seed: int) -> None:
    image, mask = blocky_pattern()
    torch.manual_seed(seed)
    tensor, labels = train_transform(SIZE, rotation_p=1.0, jpeg_p=0.0)(image, mask)

    assert tensor.shape == (3, SIZE, SIZE) and tensor.dtype == torch.float32
    assert labels.shape == (SIZE, SIZE) and labels.dtype == torch.int64
    assert type(tensor) is torch.Tensor and type(labels) is torch.Tensor  # not tv_tensors, which collate oddly
    # Masks are resampled with nearest neighbour only: an interpolated 0/1/255 mask would hold values between.
    assert set(labels.unique().tolist()) <= {0, 1, IGNORE_INDEX}

    labelled = labels != IGNORE_INDEX
    agrees = looks_red(tensor) == (labels == 1)
    assert agrees[labelled].float().mean() > 0.98  # edges blur in the image, not in the mask
    assert agrees[labelled & one_label_around(labels)].all()


def test_a_misaligned_mask_would_be_caught() -> None:
    """The check above has teeth: the same output with its mask mirrored disagrees on many pixels."""
    image, mask = blocky_pattern()
    torch.manual_seed(1)
    tensor, labels = train_transform(SIZE, rotation_p=1.0, jpeg_p=0.0)(image, mask)
    mirrored = labels.flip(-1)
    agrees = looks_red(tensor) == (mirrored == 1)
    assert agrees[mirrored != IGNORE_INDEX].float().mean() < 0.9


@pytest.mark.parametrize("seed", SEEDS)
def test_rotation_fill_is_ignored_in_the_mask(seed: int) -> None:
    """An all-foreground red picture: whatever is not red after rotation came from outside and must be 255."""
    image, mask = Image.new("RGB", (64, 64), (255, 0, 0)), np.ones((64, 64), dtype=np.uint8)
    torch.manual_seed(seed)
    tensor, labels = train_transform(SIZE, rotation_p=1.0, max_rotation=30, jpeg_p=0.0)(image, mask)
    fill = labels == IGNORE_INDEX
    assert set(labels.unique().tolist()) == {1, IGNORE_INDEX}
    assert fill[0, 0] and fill[0, -1] and fill[-1, 0] and fill[-1, -1]  # a rotated square leaves the corners empty
    assert torch.equal(fill, ~looks_red(tensor))


def test_without_rotation_nothing_is_ignored() -> None:
    image, mask = Image.new("RGB", (64, 64), (255, 0, 0)), np.ones((64, 64), dtype=np.uint8)
    for seed in SEEDS:
        torch.manual_seed(seed)
        _, labels = train_transform(SIZE, rotation_p=0.0)(image, mask)
        assert torch.equal(labels, torch.ones(SIZE, SIZE, dtype=torch.int64))


def test_train_transform_is_random_but_reproducible() -> None:
    image, mask = blocky_pattern()
    transform = train_transform(SIZE)
    outputs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outputs.append(transform(image, mask))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    assert not torch.equal(outputs[0][0], outputs[2][0])


def test_the_input_mask_is_not_modified() -> None:
    image, mask = blocky_pattern()
    before = mask.copy()
    torch.manual_seed(0)
    train_transform(SIZE, rotation_p=1.0, jpeg_p=0.0)(image, mask)
    assert np.array_equal(mask, before)


def test_eval_transform_gives_the_predictors_tensor_exactly() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    mask = rng.integers(0, 3, (37, 53)).astype(np.uint8)
    tensor, labels = eval_transform()(image, mask)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 37, 53)
    assert torch.equal(tensor, image_to_tensor(image))
    assert labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(mask).long())


def test_jpeg_round_trip_changes_the_pixels_only() -> None:
    """With and without the JPEG step, the same random draws give the same mask; the image differs a little."""
    image, mask = blocky_pattern()
    results = {}
    for jpeg_p in (0.0, 1.0):
        torch.manual_seed(3)
        results[jpeg_p] = train_transform(SIZE, jitter=0.0, jpeg_p=jpeg_p, jpeg_quality=(50, 50))(image, mask)
    (plain, plain_labels), (compressed, compressed_labels) = results[0.0], results[1.0]
    assert torch.equal(plain_labels, compressed_labels)
    change = (unnormalize(compressed) - unnormalize(plain)).abs()
    assert change.max() > 0.05  # JPEG artefacts at quality 50: ringing and blurred colour along the block edges
    assert change.mean() < 0.1  # ... but the picture stays the same picture (saturated colours blur the most)
    assert train_transform(SIZE).compression is None  # off by default, drawing no random numbers
