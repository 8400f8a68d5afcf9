"""A U-Net for image segmentation: the model, preprocessing, metrics, data, training, evaluation and weights."""

from unet.model import UNet

__all__ = ["UNet"]
