"""Datasets for the layouts users bring: a folder of images and masks paired by name, and the Oxford-IIIT Pet dataset.

Each item is `(image, mask)`: a float tensor `(3, H, W)` and an int64 tensor `(H, W)` of class indices, made by the
shared preprocessing functions, or by `transform(image, mask)` when one is given (e.g. the joint augmentation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from unet.labels import IGNORE_INDEX
from unet.preprocessing import ImageError, MaskError, image_to_tensor, load_image, load_mask

T = TypeVar("T")
Transform = Callable[[Image.Image, np.ndarray], tuple[torch.Tensor, torch.Tensor]]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def _list_names(names: Iterable[str], limit: int = 10) -> str:
    """Join names for an error message, cutting a long list short."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _with_path(read: Callable[[Path], T], path: Path) -> T:
    """Call `read(path)`, naming the file in the error: the preprocessing errors say what is wrong, not where."""
    try:
        return read(path)
    except (ImageError, MaskError) as exc:
        raise type(exc)(f"{path}: {exc}") from exc


class _PairDataset(Dataset, ABC):
    """Shared by the datasets: `pairs` of (image path, mask path), how a mask file becomes class indices."""

    pairs: list[tuple[Path, Path]]
    transform: Transform | None

    @abstractmethod
    def _read_mask(self, path: Path) -> np.ndarray:
        """Read a mask file as an `(H, W)` uint8 array of class indices."""

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """The raw pair at `index`: the RGB image and its `(H, W)` uint8 mask of class indices."""
        image_path, mask_path = self.pairs[index]
        image, mask = _with_path(load_image, image_path), _with_path(self._read_mask, mask_path)
        if mask.shape != (image.height, image.width):
            raise ValueError(
                f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but {image_path} is {image.width}x{image.height}: "
                "a mask must have the size of its image"
            )
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load_pair(index)
        if self.transform is not None:
            return self.transform(image, mask)
        return image_to_tensor(image), torch.from_numpy(mask).long()


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Map each image file's stem to its path, refusing two images with the same stem."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in found:
            raise ValueError(
                f"{found[path.stem].name} and {path.name} in {folder} have the same stem: files are paired by stem, "
                "so keep one of them"
            )
        found[path.stem] = path
    return found


class PairedFolder(_PairDataset):
    """Images and masks in two folders, paired by file stem: `images/cat.jpg` goes with `masks/cat.png`.

    Masks are read by `unet.preprocessing.load_mask`: 0/255 binary masks become 0/1, palette PNGs their indices.

    Args:
        root: a folder holding `images/` and `masks/`; may be left out when both folders are given.
        transform: `transform(image, mask) -> (image tensor, mask tensor)`; by default the plain conversion.
        num_labels: the number of classes, passed to `load_mask` to check the masks; None to skip the check.
        images_dir: the images folder, instead of `root/images`.
        masks_dir: the masks folder, instead of `root/masks`.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: a folder has no images, or some images have no mask or some masks no image.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        transform: Transform | None = None,
        num_labels: int | None = None,
        *,
        images_dir: str | Path | None = None,
        masks_dir: str | Path | None = None,
    ) -> None:
        if root is None and (images_dir is None or masks_dir is None):
            raise ValueError("give a root folder holding images/ and masks/, or both images_dir and masks_dir")
        self.images_dir = Path(images_dir) if images_dir is not None else Path(root) / "images"
        self.masks_dir = Path(masks_dir) if masks_dir is not None else Path(root) / "masks"
        self.transform = transform
        self.num_labels = num_labels
        for folder in (self.images_dir, self.masks_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{folder} is not a folder: expected images in {self.images_dir} and masks in {self.masks_dir}, "
                    "paired by file stem (images/cat.jpg with masks/cat.png)"
                )
        images, masks = _images_by_stem(self.images_dir), _images_by_stem(self.masks_dir)
        if not images:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise ValueError(f"no images in {self.images_dir}: expected files ending in {extensions}")
        lonely_images = [images[stem].name for stem in images.keys() - masks.keys()]
        lonely_masks = [masks[stem].name for stem in masks.keys() - images.keys()]
        if lonely_images or lonely_masks:
            problems = []
            if lonely_images:
                problems.append(
                    f"{len(lonely_images)} images in {self.images_dir} have no mask: {_list_names(lonely_images)}"
                )
            if lonely_masks:
                problems.append(
                    f"{len(lonely_masks)} masks in {self.masks_dir} have no image: {_list_names(lonely_masks)}"
                )
            raise ValueError(
                "; ".join(problems) + ". Images and masks are paired by file stem (images/cat.jpg with "
                "masks/cat.png): rename or remove the unpaired files"
            )
        self.pairs = [(images[stem], masks[stem]) for stem in sorted(images)]

    def _read_mask(self, path: Path) -> np.ndarray:
        return load_mask(path, num_labels=self.num_labels)


PET, BACKGROUND, BORDER = 1, 2, 3  # the values in the Oxford-IIIT Pet trimaps
_LAYOUT = "images/*.jpg, annotations/trimaps/*.png, annotations/trainval.txt and annotations/test.txt"


class OxfordPets(_PairDataset):
    """The Oxford-IIIT Pet dataset in its official layout, as pet/background masks or as the 3-class trimap.

    The layout under `root`: `images/<name>.jpg`, `annotations/trimaps/<name>.png` (1 pet, 2 background,
    3 border), and the split lists `annotations/trainval.txt` and `annotations/test.txt`, whose lines start with
    the name (`Abyssinian_100 1 1 1`). Items follow the order of the split list.

    Args:
        root: the dataset folder.
        split: "trainval" or "test".
        mode: "binary" gives background 0 and pet 1; "trimap" gives background 0, pet 1 and border 2.
        border: in binary mode, what the border between pet and background becomes: "pet" (1), "background" (0)
            or "ignore" (`IGNORE_INDEX`, left out of the loss and the scores).
        transform: `transform(image, mask) -> (image tensor, mask tensor)`; by default the plain conversion.

    Raises:
        FileNotFoundError: a part of the layout, or a file named in the split list, is missing.
        ValueError: an argument is not one of its choices.
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["trainval", "test"] = "trainval",
        mode: Literal["binary", "trimap"] = "binary",
        border: Literal["pet", "background", "ignore"] = "ignore",
        transform: Transform | None = None,
    ) -> None:
        for name, value, choices in (
            ("split", split, ("trainval", "test")),
            ("mode", mode, ("binary", "trimap")),
            ("border", border, ("pet", "background", "ignore")),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        self.root, self.split, self.mode, self.border, self.transform = Path(root), split, mode, border, transform
        images_dir, trimaps_dir = self.root / "images", self.root / "annotations" / "trimaps"
        split_file = self.root / "annotations" / f"{split}.txt"
        for path in (images_dir, trimaps_dir, split_file):
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: the Oxford-IIIT Pet layout under {self.root} is {_LAYOUT}")

        lines = (line.strip() for line in split_file.read_text().splitlines())
        names = [line.split()[0] for line in lines if line and not line.startswith("#")]
        self.pairs = [(images_dir / f"{name}.jpg", trimaps_dir / f"{name}.png") for name in names]
        missing = [path.relative_to(self.root).as_posix() for pair in self.pairs for path in pair if not path.exists()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} files named in {split_file} are missing: {_list_names(missing)}. "
                f"The layout under {self.root} is {_LAYOUT}"
            )

        # Trimap value -> class index (`_read_mask` refuses values other than 1, 2 and 3).
        self._lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        if mode == "binary":
            self.class_names = ["background", "pet"]
            self._lookup[[PET, BACKGROUND]] = [1, 0]
            self._lookup[BORDER] = {"pet": 1, "background": 0, "ignore": IGNORE_INDEX}[border]
        else:
            self.class_names = ["background", "pet", "border"]
            self._lookup[[PET, BACKGROUND, BORDER]] = [1, 0, 2]
        self.num_labels = len(self.class_names)

    def _read_mask(self, path: Path) -> np.ndarray:
        trimap = load_mask(path)  # values 1, 2 and 3 are read unchanged
        unknown = np.setdiff1d(np.unique(trimap), [PET, BACKGROUND, BORDER])
        if unknown.size:
            raise MaskError(
                f"the trimap holds values {unknown.tolist()}; an Oxford-IIIT Pet trimap holds only 1, 2 and 3"
            )
        return self._lookup[trimap]


CAMVID_SPLITS = ("train", "val", "test")
CAMVID_VOID = 11  # the annotations' "unlabelled" value, which the literature leaves out of every score
# The 11 classes of the SegNet split, in the order of their values, and the colours the CamVid papers draw them in.
CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign/symbol", "fence", "car", "pedestrian",
                  "bicyclist")  # fmt: skip
CAMVID_COLORS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                 (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))  # fmt: skip


def is_camvid(root: Path) -> bool:
    """True when `root` holds CamVid as the SegNet tutorial distributes it: train/ and trainannot/ side by side."""
    return (root / "train").is_dir() and (root / "trainannot").is_dir()


class CamVid(_PairDataset):
    """CamVid's street scenes in the SegNet tutorial's layout: `<split>/<name>.png` with `<split>annot/<name>.png`.

    The annotations hold one value a pixel, 0..10 for the classes of `CAMVID_CLASSES` (0 is the sky: there is no
    background class) and 11 for unlabelled pixels, which become `IGNORE_INDEX`. The SegNet split has 367 train,
    101 val and 233 test images of 480x360; `python -m unet.camvid` fetches it.

    Args:
        root: The folder holding `train/`, `trainannot/`, `val/`, `valannot/`, `test/` and `testannot/`.
        split: "train", "val" or "test".
        transform: `transform(image, mask) -> (image tensor, mask tensor)`; by default the plain conversion.
        passes: Each image appears this many times (a training epoch of several passes, each augmented anew).

    Raises:
        FileNotFoundError: The split's folders are missing.
        ValueError: The split is not one of its choices, or images and annotations do not pair up.
    """

    class_names: ClassVar[list[str]] = list(CAMVID_CLASSES)
    class_colors: ClassVar[list[list[int]]] = [list(color) for color in CAMVID_COLORS]
    num_labels = len(CAMVID_CLASSES)

    def __init__(
        self, root: str | Path, split: str = "train", transform: Transform | None = None, passes: int = 1
    ) -> None:
        if split not in CAMVID_SPLITS:
            raise ValueError(f"split must be one of {', '.join(CAMVID_SPLITS)}, got {split!r}")
        if passes < 1:
            raise ValueError(f"passes must be 1 or more, got {passes}")
        self.root, self.split, self.transform, self.passes = Path(root), split, transform, passes
        folder = PairedFolder(images_dir=self.root / split, masks_dir=self.root / f"{split}annot")
        self.images_dir, self.masks_dir, self.pairs = folder.images_dir, folder.masks_dir, folder.pairs
        self._lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        self._lookup[: self.num_labels] = np.arange(self.num_labels)

    def __len__(self) -> int:
        return len(self.pairs) * self.passes

    def load_pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        return super().load_pair(index % len(self.pairs))

    def _read_mask(self, path: Path) -> np.ndarray:
        values = np.array(Image.open(path))
        if values.ndim != 2:
            raise MaskError(f"a CamVid annotation has one value a pixel, but this one has shape {values.shape}")
        unknown = np.setdiff1d(np.unique(values), np.arange(CAMVID_VOID + 1))
        if unknown.size:
            raise MaskError(f"the annotation holds values {unknown.tolist()}; CamVid's are 0..10 and 11 (void)")
        return self._lookup[values]
