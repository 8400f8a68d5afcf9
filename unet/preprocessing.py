"""The one path from files to tensors and from logits to masks, shared by training, evaluation, the CLI and the app.

Images become RGB (EXIF orientation applied, transparency composited onto white, 16-bit scaled by bit depth), then a
float32 (3, H, W) tensor normalized with the ImageNet statistics. Masks become (H, W) uint8 arrays of class indices,
never interpolated. Predictions are resized as logits, then turned into per-class probabilities and a mask.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from unet.labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
MAX_IMAGE_PIXELS = 40_000_000  # about 8000 x 5000: larger images are refused before they are decoded
_JPEG_START = b"\xff\xd8\xff"

ImageSource = str | Path | bytes | BinaryIO | Image.Image


class ImageError(ValueError):
    """The file is not an image this package can read, or is too large to read safely."""


class MaskError(ValueError):
    """The mask's values are not class indices the model can use."""


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageError(f"the image is empty ({width}x{height} pixels); choose an image with at least one pixel")
    if width * height > max_pixels:
        raise ImageError(
            f"the image is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} allowed; "
            "downscale it first"
        )


def _oriented(image: Image.Image, max_pixels: int) -> Image.Image:
    _check_size(image, max_pixels)  # from the header, before any pixel is decoded
    image.load()  # decode now, so a truncated or corrupt file fails here and not later
    return ImageOps.exif_transpose(image)  # a copy, detached from the file and from the caller's image


def _decode(source: ImageSource, max_pixels: int) -> Image.Image:
    """Open, size-check and fully decode an image, with its EXIF orientation applied; the result owns its pixels."""
    if isinstance(source, str | Path):
        # Opened here, outside the try below, so a missing file stays a FileNotFoundError.
        with open(source, "rb") as file:
            return _decode(file, max_pixels)
    try:
        if isinstance(source, Image.Image):
            return _oriented(source, max_pixels)  # the caller's image: used, never closed
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return _oriented(image, max_pixels)
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours: say ours
        found = re.search(r"Image size \((\d+) pixels\)", str(exc))
        size = f"{int(found[1]):,} pixels" if found else "more pixels than Pillow opens"
        raise ImageError(f"the image has {size}, more than the {max_pixels:,} allowed; downscale it first") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("the file is not an image in a known format; use a JPEG, PNG, WebP, BMP or TIFF") from exc
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"the image file is truncated or corrupt ({exc}); export or download it again") from exc


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info


def load_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Read an image of any common format and mode as RGB, the way every part of the package sees it.

    Transparent pixels are composited onto `ALPHA_BACKGROUND`; 16-bit images (modes I;16, I;16B and I, which holds
    16-bit data when Pillow opens PNG or TIFF) keep their top 8 bits (value >> 8) rather than being clipped at 255;
    mode F follows Pillow's `convert("L")` (0..255, clipped, fractions dropped). Multi-frame files give frame 0.

    Args:
        source: A path, the file's bytes, a binary file object, or a PIL image (not modified).
        max_pixels: Larger images are refused from the header, before they are decoded.

    Returns:
        An RGB image with its EXIF orientation applied.

    Raises:
        ImageError: The source is not an image, is truncated or corrupt, is empty, or has more than `max_pixels`.
        FileNotFoundError: `source` is a path that does not exist.
    """
    image = _decode(source, max_pixels)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        values = np.asarray(image).astype(np.int64).clip(0, 65535)
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"images in mode {image.mode} are not supported; save the image as RGB first") from exc


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """Turn an RGB image into the model's input: float32 (3, H, W), scaled to [0, 1], then ImageNet-normalized.

    Args:
        image: An RGB image, as `load_image` returns.
    """
    if image.mode != "RGB":
        raise ValueError(f"image_to_tensor expects an RGB image, got mode {image.mode}; read it with load_image()")
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # (H, W, 3)
    tensor = pixels.permute(2, 0, 1).float().div(255)  # (3, H, W)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((tensor - mean) / std).contiguous()


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """Undo `image_to_tensor` for display: un-normalize, clamp to [0, 1] and return a uint8 RGB image.

    Args:
        tensor: A normalized image tensor (3, H, W), on any device.
    """
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(tensor.shape)}")
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    unit = (tensor.detach().cpu().float() * std + mean).clamp(0, 1)
    pixels = unit.mul(255).round().to(torch.uint8).permute(1, 2, 0)  # (H, W, 3)
    return Image.fromarray(pixels.numpy())


def _format_values(values: np.ndarray) -> str:
    shown = ", ".join(str(int(value)) for value in values[:12])
    return f"[{shown}, ... ({len(values)} values)]" if len(values) > 12 else f"[{shown}]"


def _mask_values(image: Image.Image) -> tuple[np.ndarray, bool]:
    """The mask's pixel values (H, W), and whether a 0/255 binary mask may be read as 0/1."""
    mode = image.mode
    pixels = np.asarray(image)  # (H, W), or (H, W, bands) for PA, LA, RGB and RGBA
    if mode == "1":
        return pixels.astype(np.uint8), False
    if mode in ("P", "PA"):
        return pixels if pixels.ndim == 2 else pixels[..., 0], False  # palette indices are class indices (VOC)
    if mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        return pixels if pixels.ndim == 2 else pixels[..., 0], True  # the alpha of LA is ignored
    if mode in ("RGB", "RGBA"):
        return _grey_from_rgb(pixels), True
    raise MaskError(
        f"masks in mode {mode} are not supported; save the mask as an 8-bit greyscale (L) or palette (P) PNG "
        "with one class index per pixel"
    )


def _grey_from_rgb(pixels: np.ndarray) -> np.ndarray:
    """Read an (H, W, 3 or 4) mask as greyscale when its colour channels are equal, else refuse it."""
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    if not (np.array_equal(red, green) and np.array_equal(green, blue)):
        raise MaskError(
            "the mask is in colour; colour masks must be converted to class indices (one value a class) first, "
            "and saved as an 8-bit greyscale or palette PNG"
        )
    return red


def _array_values(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """The values (H, W) of a mask given as an array, under the same rules as a greyscale or RGB image."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8), False
    if not np.issubdtype(array.dtype, np.integer):
        raise MaskError(f"the mask array has dtype {array.dtype}; class indices must be integers (e.g. uint8)")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return _grey_from_rgb(array), True
    if array.ndim != 2:
        raise MaskError(f"the mask array has shape {array.shape}; expected (H, W) class indices")
    return array, True


def load_mask(
    source: ImageSource | np.ndarray,
    num_labels: int | None = None,
) -> np.ndarray:
    """Read a segmentation mask as a (H, W) uint8 array of class indices, never interpolated.

    The pixel values are read by the image's mode:

    * P (palette): the palette indices are the class indices (the Pascal VOC convention), 255 included.
    * L, LA (alpha ignored), I, I;16 and 2-D integer arrays: the values are class indices, except a binary mask
      stored as 0/255, whose values are exactly {0, 255} or {255}: it reads as {0, 1}.
    * 1 (bilevel) and boolean arrays: 0 and 1.
    * RGB, RGBA and (H, W, 3 or 4) arrays: only a grey mask saved in colour (all channels equal), then read as L.
      A true colour mask raises MaskError: convert its colours to class indices first.

    `IGNORE_INDEX` (255) marks pixels that belong to no class, e.g. the border of the Oxford Pet trimap once
    mapped to it: a mask with values {0, 1, 255} keeps 255 as "ignore", while one with exactly {0, 255} or {255}
    is a binary mask. The EXIF orientation is applied, as for images.

    Args:
        source: A path, the file's bytes, a binary file object, a PIL image, or an integer or boolean array.
        num_labels: The model's number of classes (`UNet.num_labels`); values outside 0..num_labels-1 other than
            `IGNORE_INDEX` then raise MaskError. None skips the check.

    Raises:
        MaskError: The values are not class indices (colour, out of range, floating point, unsupported mode).
        ImageError: The file is not an image, is truncated or corrupt, empty, or larger than MAX_IMAGE_PIXELS.
    """
    if num_labels is not None and not 1 <= num_labels <= IGNORE_INDEX:
        raise ValueError(f"num_labels must be between 1 and {IGNORE_INDEX}, got {num_labels}")
    if isinstance(source, np.ndarray):
        if source.size == 0:
            raise MaskError(f"the mask array is empty (shape {source.shape})")
        values, may_be_binary = _array_values(source)
    else:
        values, may_be_binary = _mask_values(_decode(source, MAX_IMAGE_PIXELS))

    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 255:
        raise MaskError(
            f"the mask has values from {low} to {high}; class indices must lie in 0..255 "
            "(one class index per pixel, 255 for pixels to ignore)"
        )
    mask = np.array(values, dtype=np.uint8, order="C")  # a copy: writable, and detached from the decoded image
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))  # sorted unique values, in linear time
    if may_be_binary and present[-1] == 255 and set(present.tolist()) <= {0, 255}:
        mask = (mask == 255).astype(np.uint8)
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=2))

    if num_labels is not None:
        invalid = present[(present >= num_labels) & (present != IGNORE_INDEX)]
        if invalid.size:
            last = num_labels - 1
            if _is_jpeg(source):
                hint = (
                    " This mask is a JPEG: its compression changes the values near every edge, so class indices do "
                    "not survive it. Save masks as PNG."
                )
            elif invalid.tolist() == [num_labels]:
                hint = (
                    f" If {num_labels} marks unlabelled pixels (as in CamVid's own annotations), set those pixels "
                    f"to {IGNORE_INDEX}."
                )
            else:
                hint = ""
            raise MaskError(
                f"mask has values {_format_values(present)}; this model predicts classes 0..{last}. Store one class "
                f"index per pixel (0..{last}), or 0/255 for a binary mask; {IGNORE_INDEX} marks pixels to ignore."
                + hint
            )
    return mask


def _is_jpeg(source: ImageSource | np.ndarray) -> bool:
    """Whether a mask source is a JPEG file (by its first bytes: an upload may have any name)."""
    if isinstance(source, str | Path):
        with open(source, "rb") as file:
            return file.read(3) == _JPEG_START
    if isinstance(source, bytes):
        return source[:3] == _JPEG_START
    return isinstance(source, Image.Image) and source.format == "JPEG"


def resize_for_model(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale an image, keeping its aspect ratio, so its longer side is at most `max_side`.

    Pillow's bilinear filter widens with the scale factor, so it antialiases when downscaling, as torchvision's
    `resize(..., antialias=True)` (built to match it) does for tensors: training and inference see the same
    pixels. LANCZOS would be sharper but overshoots at edges; `reducing_gap` would change the result for speed.
    For images only: masks are never interpolated (resize predictions with `logits_to_probabilities`).

    Args:
        image: The image to resize; returned unchanged when it already fits or `max_side` is None.
        max_side: The largest allowed height or width, in pixels.
    """
    if max_side is None:
        return image
    if max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels or None, got {max_side}")
    width, height = image.size
    longer = max(width, height)
    if longer <= max_side:
        return image
    scale = max_side / longer
    size = (max_side, max(1, round(height * scale))) if width >= height else (max(1, round(width * scale)), max_side)
    return image.resize(size, Image.Resampling.BILINEAR)


def logits_to_probabilities(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize logits to `size` and turn them into per-class probabilities.

    The logits are interpolated (bilinear, align_corners=False) before the sigmoid or softmax, so class boundaries
    stay sharp. A single channel is a binary model: its sigmoid p becomes two channels, (1 - p, p).

    Args:
        logits: Model output (C, h, w) or (B, C, h, w).
        size: The output (H, W), usually the original image's (height, width).

    Returns:
        float32 probabilities (num_labels, H, W), or (B, num_labels, H, W) for batched logits; they sum to 1
        over the class dimension.
    """
    if logits.ndim not in (3, 4):
        raise ValueError(f"expected logits (C, h, w) or (B, C, h, w), got shape {tuple(logits.shape)}")
    batched = logits if logits.ndim == 4 else logits.unsqueeze(0)  # (B, C, h, w)
    batched = batched.float()
    if tuple(batched.shape[-2:]) != tuple(size):
        batched = F.interpolate(batched, size=size, mode="bilinear", align_corners=False)  # (B, C, H, W)
    if batched.shape[1] == 1:
        foreground = torch.sigmoid(batched)
        probabilities = torch.cat([1 - foreground, foreground], dim=1)  # (B, 2, H, W)
    else:
        probabilities = torch.softmax(batched, dim=1)  # (B, C, H, W)
    return probabilities if logits.ndim == 4 else probabilities.squeeze(0)


def logits_to_mask(logits: torch.Tensor) -> torch.Tensor:
    """Class indices (B, H, W) from logits (B, C, H, W) at their own size, as the validation and the choice of a
    serving backend compare masks: one channel (a binary model) is foreground where its logit is above 0 (probability
    0.5), more channels the arg-max."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)


def probabilities_to_mask(probabilities: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Turn probabilities (num_labels, H, W) into a uint8 mask (H, W) of class indices.

    With two labels (a binary model) a pixel is foreground (1) where its foreground probability is at least
    `threshold`. With more labels the most probable class wins and `threshold` is not used.

    Args:
        probabilities: From `logits_to_probabilities`, (num_labels, H, W) or batched (B, num_labels, H, W).
        threshold: The foreground probability from which a pixel of a binary model is foreground.

    Returns:
        Class indices (H, W), or (B, H, W) for batched probabilities.
    """
    if probabilities.ndim not in (3, 4):
        raise ValueError(f"expected probabilities (L, H, W) or (B, L, H, W), got shape {tuple(probabilities.shape)}")
    num_labels = probabilities.shape[-3]
    if not 2 <= num_labels <= 256:
        raise ValueError(f"expected 2 to 256 labels along dimension -3, got {num_labels}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    probabilities = probabilities.detach().cpu()
    if num_labels == 2:
        return (probabilities.select(-3, 1) >= threshold).numpy().astype(np.uint8)
    # max(...).indices is argmax (the first of equal maxima) and, over the class dimension, several times faster.
    return probabilities.max(dim=-3).indices.numpy().astype(np.uint8)


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """Wrap a mask of class indices (H, W) as a mode L image, values unchanged, ready to save as PNG.

    Args:
        mask: Class indices in 0..255, of an integer or boolean dtype.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer)):
        raise ValueError(f"mask values must be integers, got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values must lie in 0..255, got {mask.min()}..{mask.max()}")
    return Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
