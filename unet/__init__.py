"""A U-Net for image segmentation: the model, preprocessing, metrics, data, training, evaluation and weights."""

from importlib import import_module
from typing import Any

# Imported on first use, so `python -m unet.publish` or `python -m unet.predict` do not find their own module already
# imported by the package (runpy warns about that), and `import unet` stays light: without PyTorch, until a name
# that needs it is used.
_LAZY = {
    "Prediction": "unet.predict",
    "Predictor": "unet.predict",
    "WeightsError": "unet.hub",
    "WeightsInfo": "unet.hub",
    "UNet": "unet.model",
    "load_model": "unet.hub",
}

__all__ = ["Prediction", "Predictor", "UNet", "WeightsError", "WeightsInfo", "load_model"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unet' has no attribute {name!r}")
