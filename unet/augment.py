"""Joint augmentation of an image and its mask with torchvision's transforms v2.

Wrapping the mask as `tv_tensors.Mask` is what keeps the two aligned: every geometric transform moves both with the
same random parameters, and v2 always resamples a Mask with nearest neighbour, so no new class values appear.
Pixels that a rotation brings in from outside the picture get the ignore label, so the loss does not learn from them.
A last, optional step saves crops as JPEGs and reads them back: images people bring (and the written validation and
test composites) are JPEGs, whose 8x8 blocks and halved colour resolution blur exactly the crisp outlines of pasted
clip art, and a model that never saw them learns to rely on those outlines.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from unet.labels import IGNORE_INDEX
from unet.preprocessing import image_to_tensor


class RandomJpeg:
    """With probability `p`, save the image as a JPEG at a random quality and read it back, as Pillow writes them."""

    def __init__(self, p: float, quality: tuple[int, int]) -> None:
        self.p, self.quality = p, quality

    def __call__(self, image: Image.Image) -> Image.Image:
        if torch.rand(()) >= self.p:  # torch's generator: seeded per data-loading worker, like the transforms'
            return image
        quality = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")


class JointTransform:
    """Turn (PIL image, numpy mask) into (normalized float image (3, H, W), int64 mask (H, W)), augmenting both."""

    def __init__(
        self,
        geometric: v2.Transform | None = None,
        photometric: v2.Transform | None = None,
        compression: RandomJpeg | None = None,
    ) -> None:
        self.geometric = geometric or v2.Identity()
        self.photometric = photometric or v2.Identity()
        self.compression = compression

    def __call__(self, image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = tv_tensors.Image(v2.functional.pil_to_tensor(image))  # (3, H, W) uint8
        labels = tv_tensors.Mask(torch.from_numpy(np.array(mask, dtype=np.uint8)))  # (H, W), a writable copy
        pixels, labels = self.geometric(pixels, labels)
        picture = v2.functional.to_pil_image(self.photometric(pixels))
        if self.compression is not None:
            picture = self.compression(picture)
        # Normalized by `image_to_tensor` itself, so an image gives bit for bit the tensor the predictor sees
        # (v2.ToDtype scales by multiplying with 1/255, which differs from dividing by 255 in the last bit).
        return image_to_tensor(picture), labels.as_subclass(torch.Tensor).long()


def train_transform(
    size: int,
    scale: tuple[float, float] = (0.5, 1.0),
    max_rotation: float = 15.0,
    rotation_p: float = 0.3,
    jitter: float = 0.3,
    jpeg_p: float = 0.0,
    jpeg_quality: tuple[int, int] = (70, 100),
) -> JointTransform:
    """Random scale and crop to `size` x `size`, horizontal flip, a small rotation now and then, colour jitter, and
    with probability `jpeg_p` a JPEG round trip at a random quality in `jpeg_quality`."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
    geometric = v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomRotation(max_rotation, fill=fill)], p=rotation_p),
        ]
    )
    photometric = v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 6, 0.5))
    # Off, it draws nothing, so a seed gives the same augmentation as before the step existed.
    compression = RandomJpeg(jpeg_p, jpeg_quality) if jpeg_p > 0 else None
    return JointTransform(geometric, photometric, compression)


def street_transform(
    size: int,
    rescale: tuple[float, float] = (0.75, 1.5),
    jitter: float = 0.3,
    jpeg_p: float = 0.0,
    jpeg_quality: tuple[int, int] = (70, 100),
) -> JointTransform:
    """For street scenes, where up is always up and the horizon stays level: resize the whole image by a random
    factor in `rescale` (its aspect ratio kept), crop `size` x `size` at random (padding with the ignore label where
    the image is smaller), flip left-right only, jitter the colours, and with probability `jpeg_p` a JPEG round trip.
    """
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
    geometric = v2.Compose(
        [
            RandomRescale(rescale),
            v2.RandomCrop(size, pad_if_needed=True, fill=fill),
            v2.RandomHorizontalFlip(),
        ]
    )
    photometric = v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 6, 0.5))
    compression = RandomJpeg(jpeg_p, jpeg_quality) if jpeg_p > 0 else None
    return JointTransform(geometric, photometric, compression)


class RandomRescale(v2.Transform):
    """Resize image and mask by one random factor from `scale` (bilinear for the image, nearest for the mask)."""

    def __init__(self, scale: tuple[float, float]) -> None:
        super().__init__()
        self.scale = scale

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        factor = float(torch.empty(()).uniform_(*self.scale))
        return {"size": [max(1, round(height * factor)), max(1, round(width * factor))]}

    def transform(self, inpt, params: dict):
        return self._call_kernel(v2.functional.resize, inpt, params["size"], antialias=True)


def eval_transform() -> JointTransform:
    """No augmentation: the image as the predictor sees it, the mask as it is."""
    return JointTransform()
