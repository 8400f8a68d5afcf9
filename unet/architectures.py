"""The networks a weights folder can hold, by the name its `config.json` gives under "architecture".

The paper's U-Net (`unet.model.UNet`) is "unet", and a config without the key (every folder saved before there was
a second network) is one too; "lite-unet" is the U-Net with an EfficientNet-Lite0 encoder (`unet.lite_unet`).
`save_model` writes the name beside the constructor arguments, so `build_model` rebuilds the same class.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from unet.lite_unet import LiteUNet
from unet.model import UNet

Model = UNet | LiteUNet
ARCHITECTURES: dict[str, type[Model]] = {"unet": UNet, "lite-unet": LiteUNet}
ARCHITECTURE_KEY = "architecture"


def architecture_name(model: Model) -> str:
    """The name under which `model`'s class is saved."""
    for name, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise TypeError(f"{type(model).__name__} is not one of the saved architectures ({', '.join(ARCHITECTURES)})")


def save_model(model: Model, folder: str | Path) -> None:
    """`save_pretrained` into `folder`: model.safetensors and config.json (its architecture and arguments)."""
    config = {ARCHITECTURE_KEY: architecture_name(model), **model._hub_mixin_config}
    model.save_pretrained(folder, config=config)


def model_class(config: dict[str, Any]) -> type[Model]:
    """The class a config describes; a KeyError names the unknown architecture."""
    name = config.get(ARCHITECTURE_KEY, "unet")
    if name not in ARCHITECTURES:
        raise KeyError(f"architecture {name!r} is none of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def constructor_arguments(cls: type[Model]) -> list[str]:
    """The names `cls` takes, as a config may give them."""
    return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
