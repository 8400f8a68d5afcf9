"""The dataset layouts on tiny fixtures built in exactly those layouts: paired folders and Oxford-IIIT Pet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet.datasets import OxfordPets, PairedFolder
from unet.labels import IGNORE_INDEX
from unet.preprocessing import MaskError, image_to_tensor, load_image


def _save_image(path: Path, seed: int, size: tuple[int, int] = (6, 4)) -> None:
    """A random RGB picture of `size` (width, height), in the format the suffix names."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _save_mask(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def _binary_mask(column: int) -> np.ndarray:
    """A 4x6 0/255 mask whose foreground is one column, so each file's mask is recognisable."""
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[:, column] = 255
    return mask


@pytest.fixture
def paired(tmp_path: Path) -> Path:
    """root/images/{a.png, b.jpg, c.jpeg} and root/masks/{a,b,c}.png, plus a file that is not an image."""
    for seed, name in enumerate(["b.jpg", "a.png", "c.jpeg"]):
        _save_image(tmp_path / "images" / name, seed)
    for column, stem in enumerate("abc"):
        _save_mask(tmp_path / "masks" / f"{stem}.png", _binary_mask(column))
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    return tmp_path


def test_paired_folder_pairs_by_stem_in_sorted_order(paired: Path) -> None:
    dataset = PairedFolder(paired)
    assert [(image.name, mask.name) for image, mask in dataset.pairs] == [
        ("a.png", "a.png"),
        ("b.jpg", "b.png"),
        ("c.jpeg", "c.png"),
    ]
    assert len(dataset) == 3
    assert PairedFolder(paired).pairs == dataset.pairs


def test_paired_folder_items(paired: Path) -> None:
    dataset = PairedFolder(paired)
    image, mask = dataset[1]
    assert image.dtype == torch.float32 and image.shape == (3, 4, 6)
    assert torch.equal(image, image_to_tensor(load_image(paired / "images" / "b.jpg")))
    assert mask.dtype == torch.int64 and mask.shape == (4, 6)
    # b is the second file: its 0/255 mask has column 1 set, read as class 1.
    assert torch.equal(mask, torch.from_numpy(_binary_mask(1) // 255).long())

    picture, raw_mask = dataset.load_pair(2)
    assert picture.mode == "RGB" and picture.size == (6, 4)
    assert raw_mask.dtype == np.uint8 and raw_mask[0, 2] == 1 and raw_mask[0, 1] == 0


def test_paired_folder_explicit_folders_and_transform(paired: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "labels"
    moved.parent.mkdir()
    (paired / "masks").rename(moved)
    calls = []

    def transform(image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append((image.size, mask.shape))
        return torch.zeros(3, 2, 2), torch.ones(2, 2, dtype=torch.long)

    dataset = PairedFolder(images_dir=paired / "images", masks_dir=moved, transform=transform)
    assert [mask.parent for _, mask in dataset.pairs] == [moved] * 3
    image, mask = dataset[0]
    assert calls == [((6, 4), (4, 6))]
    assert image.shape == (3, 2, 2) and mask.sum() == 4


def test_paired_folder_lists_unpaired_files(paired: Path) -> None:
    _save_image(paired / "images" / "lonely.jpg", seed=9)
    _save_mask(paired / "masks" / "orphan.png", _binary_mask(0))
    with pytest.raises(ValueError, match="paired by file stem") as error:
        PairedFolder(paired)
    message = str(error.value)
    assert "1 images" in message and "have no mask: lonely.jpg" in message
    assert "1 masks" in message and "have no image: orphan.png" in message
    assert "a.png" not in message


def test_paired_folder_cuts_long_lists_short(paired: Path) -> None:
    for index in range(13):
        _save_image(paired / "images" / f"extra{index:02d}.png", seed=index)
    with pytest.raises(ValueError, match=r"13 images .* extra09.png and 3 more") as error:
        PairedFolder(paired)
    assert "extra10" not in str(error.value)


def test_paired_folder_missing_layout(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"masks is not a folder"):
        PairedFolder(tmp_path)
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        PairedFolder(tmp_path)
    with pytest.raises(ValueError, match="both images_dir and masks_dir"):
        PairedFolder(images_dir=tmp_path / "images")


def test_paired_folder_refuses_two_images_with_one_stem(paired: Path) -> None:
    _save_image(paired / "images" / "a.jpg", seed=5)
    with pytest.raises(ValueError, match=r"a\.jpg and a\.png .* same stem"):
        PairedFolder(paired)


def test_paired_folder_bad_masks_name_the_file(paired: Path) -> None:
    _save_mask(paired / "masks" / "a.png", np.full((4, 6), 3))
    with pytest.raises(MaskError, match=r"a\.png: mask has values \[3\]"):
        PairedFolder(paired, num_labels=2)[0]
    _save_mask(paired / "masks" / "b.png", np.zeros((5, 6)))
    with pytest.raises(ValueError, match=r"b\.png is 6x5 but .*b\.jpg is 6x4"):
        PairedFolder(paired).load_pair(1)


# Oxford-IIIT Pet ------------------------------------------------------------------------------------------------------

# Every trimap: row 0 pet (1), row 1 background (2), row 2 border (3), row 3 the three mixed.
TRIMAP = np.array([[1] * 6, [2] * 6, [3] * 6, [1, 2, 3, 1, 2, 3]], dtype=np.uint8)


@pytest.fixture
def pets(tmp_path: Path) -> Path:
    """The official layout with three images: two in trainval (listed out of alphabetical order), one in test."""
    names = ["beagle_2", "Abyssinian_1", "Bengal_3"]
    for seed, name in enumerate(names):
        _save_image(tmp_path / "images" / f"{name}.jpg", seed)
        _save_mask(tmp_path / "annotations" / "trimaps" / f"{name}.png", TRIMAP)
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
    (tmp_path / "annotations" / "trainval.txt").write_text(header + "beagle_2 13 2 1\nAbyssinian_1 1 1 1\n\n")
    (tmp_path / "annotations" / "test.txt").write_text(header + "Bengal_3 6 1 3\n")
    return tmp_path


@pytest.mark.parametrize(("border", "border_value"), [("pet", 1), ("background", 0), ("ignore", IGNORE_INDEX)])
def test_oxford_pets_binary(pets: Path, border: str, border_value: int) -> None:
    dataset = OxfordPets(pets, split="trainval", mode="binary", border=border)
    assert dataset.num_labels == 2 and dataset.class_names == ["background", "pet"]
    _, mask = dataset[0]
    expected = [[1] * 6, [0] * 6, [border_value] * 6, [1, 0, border_value, 1, 0, border_value]]
    assert mask.dtype == torch.int64
    assert mask.tolist() == expected


def test_oxford_pets_trimap(pets: Path) -> None:
    dataset = OxfordPets(pets, split="test", mode="trimap")
    assert dataset.num_labels == 3 and dataset.class_names == ["background", "pet", "border"]
    image, mask = dataset[0]
    assert image.shape == (3, 4, 6)
    assert mask.tolist() == [[1] * 6, [0] * 6, [2] * 6, [1, 0, 2, 1, 0, 2]]


def test_oxford_pets_follows_the_split_lists(pets: Path) -> None:
    trainval = OxfordPets(pets, split="trainval")
    assert [image.name for image, _ in trainval.pairs] == ["beagle_2.jpg", "Abyssinian_1.jpg"]
    assert [mask.name for _, mask in trainval.pairs] == ["beagle_2.png", "Abyssinian_1.png"]
    test = OxfordPets(pets, split="test")
    assert [image.name for image, _ in test.pairs] == ["Bengal_3.jpg"]
    assert torch.equal(test[0][0], image_to_tensor(load_image(pets / "images" / "Bengal_3.jpg")))


def test_oxford_pets_missing_layout(pets: Path) -> None:
    (pets / "annotations" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.txt is missing: the Oxford-IIIT Pet layout .* images/\*\.jpg"):
        OxfordPets(pets, split="test")
    (pets / "annotations" / "trimaps" / "beagle_2.png").unlink()
    (pets / "images" / "Abyssinian_1.jpg").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"2 files .* annotations/trimaps/beagle_2\.png, images/Abyssinian_1\.jpg"
    ):
        OxfordPets(pets, split="trainval")
    with pytest.raises(FileNotFoundError, match=r"images is missing"):
        OxfordPets(pets / "nowhere")


def test_oxford_pets_refuses_bad_arguments_and_trimaps(pets: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of binary, trimap, got 'multiclass'"):
        OxfordPets(pets, mode="multiclass")
    with pytest.raises(ValueError, match="split must be one of"):
        OxfordPets(pets, split="val")
    _save_mask(pets / "annotations" / "trimaps" / "Bengal_3.png", np.where(TRIMAP == 3, 7, TRIMAP))
    with pytest.raises(MaskError, match=r"Bengal_3\.png: the trimap holds values \[7\]"):
        OxfordPets(pets, split="test")[0]
