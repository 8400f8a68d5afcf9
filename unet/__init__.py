"""A U-Net for image segmentation: the model, preprocessing, metrics, data, training, evaluation and weights."""

from unet.hub import WeightsError, WeightsInfo, load_model
from unet.model import UNet
from unet.predict import Prediction, Predictor

__all__ = ["Prediction", "Predictor", "UNet", "WeightsError", "WeightsInfo", "load_model"]
