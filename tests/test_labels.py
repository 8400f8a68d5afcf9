"""What a config says of a model's masks, read without building it, is what the built network says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unet.architectures import Model, save_model
from unet.hub import WEIGHTS_FILE, load_model, parameter_count
from unet.labels import ModelLabels, default_class_names
from unet.lite_unet import LiteUNet
from unet.model import UNet

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = {
    "binary U-Net": lambda: UNet(base_width=4, depth=1),
    "4-class U-Net": lambda: UNet(num_classes=4, base_width=4, depth=1),
    "U-Net without background": lambda: UNet(
        num_classes=3,
        base_width=4,
        depth=1,
        class_names=["sky", "road", "car"],
        background_class=None,
        class_colors=[(1, 2, 3), (4, 5, 6), (7, 8, 9)],
    ),
    "street network": lambda: LiteUNet(num_classes=11, decoder_widths=(8, 8, 8, 8)),
    "street network with background": lambda: LiteUNet(num_classes=3, decoder_widths=(8, 8, 8, 8), background_class=0),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_a_saved_config_describes_its_network_and_the_header_counts_its_parameters(name: str, tmp_path: Path) -> None:
    model: Model = NETWORKS[name]()
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert ModelLabels.from_config(config) == ModelLabels.of(model)
    assert parameter_count(tmp_path / WEIGHTS_FILE) == sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("folder", sorted((ROOT / "checkpoints").iterdir()), ids=lambda folder: folder.name)
def test_each_bundled_config_describes_its_network(folder: Path) -> None:
    model, _ = load_model(folder)
    assert ModelLabels.from_config(json.loads((folder / "config.json").read_text())) == ModelLabels.of(model)


def test_configs_that_describe_no_labels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="architecture 'segformer' is none of unet, lite-unet"):
        ModelLabels.from_config({"architecture": "segformer"})
    with pytest.raises(ValueError, match="one entry for each of the 3 classes"):
        ModelLabels.from_config({"num_classes": 3, "class_names": ["a", "b"]})
    with pytest.raises(ValueError, match="background_class must be a class index"):
        ModelLabels.from_config({"num_classes": 3, "background_class": 3})
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    assert parameter_count(tmp_path / "broken.safetensors") is None  # a header longer than the file allows
    torch.save({}, tmp_path / "pickle.safetensors")
    assert parameter_count(tmp_path / "pickle.safetensors") is None


def test_default_names_call_the_background_so() -> None:
    assert default_class_names(2, 0) == ["background", "foreground"]
    assert default_class_names(3, 0) == ["background", "class_1", "class_2"]
    assert default_class_names(3, None) == ["class_0", "class_1", "class_2"]
