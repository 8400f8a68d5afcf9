"""Joint augmentation of an image and its mask with torchvision's transforms v2.

Wrapping the mask as `tv_tensors.Mask` is what keeps the two aligned: every geometric transform moves both with the
same random parameters, and v2 always resamples a Mask with nearest neighbour, so no new class values appear.
Pixels that a rotation brings in from outside the picture get the ignore label, so the loss does not learn from them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from unet.preprocessing import IGNORE_INDEX, image_to_tensor


class JointTransform:
    """Turn (PIL image, numpy mask) into (normalized float image (3, H, W), int64 mask (H, W)), augmenting both."""

    def __init__(self, geometric: v2.Transform | None = None, photometric: v2.Transform | None = None) -> None:
        self.geometric = geometric or v2.Identity()
        self.photometric = photometric or v2.Identity()

    def __call__(self, image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = tv_tensors.Image(v2.functional.pil_to_tensor(image))  # (3, H, W) uint8
        labels = tv_tensors.Mask(torch.from_numpy(np.array(mask, dtype=np.uint8)))  # (H, W), a writable copy
        pixels, labels = self.geometric(pixels, labels)
        pixels = self.photometric(pixels)
        # Normalized by `image_to_tensor` itself, so an image gives bit for bit the tensor the predictor sees
        # (v2.ToDtype scales by multiplying with 1/255, which differs from dividing by 255 in the last bit).
        return image_to_tensor(v2.functional.to_pil_image(pixels)), labels.as_subclass(torch.Tensor).long()


def train_transform(
    size: int,
    scale: tuple[float, float] = (0.5, 1.0),
    max_rotation: float = 15.0,
    rotation_p: float = 0.3,
    jitter: float = 0.3,
) -> JointTransform:
    """Random scale and crop to `size` x `size`, horizontal flip, a small rotation now and then, colour jitter."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
    geometric = v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomRotation(max_rotation, fill=fill)], p=rotation_p),
        ]
    )
    photometric = v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 6, 0.5))
    return JointTransform(geometric, photometric)


def eval_transform() -> JointTransform:
    """No augmentation: the image as the predictor sees it, the mask as it is."""
    return JointTransform()
