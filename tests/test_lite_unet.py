"""The U-Net with an EfficientNet-Lite0 encoder: shapes, TensorFlow's "same" padding, the ImageNet weights read from
their pickle into safetensors, and saving and loading through the package's weights folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from unet import load_model
from unet.architectures import save_model
from unet.lite_unet import LiteEncoder, LiteUNet, SameConv, convert_imagenet_checkpoint, imagenet_encoder_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (33, 97)])
def test_logits_have_the_input_size_for_any_size(size: tuple[int, int]) -> None:
    model = LiteUNet(num_classes=5, decoder_widths=(16, 8, 8, 8)).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, 5, *size)


def test_encoder_features_halve_at_each_skip() -> None:
    features = LiteEncoder().eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [
        (16, 32, 48), (24, 16, 24), (40, 8, 12), (112, 4, 6), (320, 2, 3)
    ]  # fmt: skip


@pytest.mark.parametrize(("kernel", "stride", "size"), [(3, 2, 8), (5, 2, 8), (3, 2, 7), (5, 1, 6), (3, 1, 5)])
def test_same_conv_pads_as_tensorflow(kernel: int, stride: int, size: int) -> None:
    """Output ceil(size / stride); a stride-2 conv on an even size pads one pixel more at the bottom and right."""
    conv = SameConv(1, 1, kernel, stride)
    x = torch.randn(1, 1, size, size)
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    by_hand = F.conv2d(F.pad(x, [total // 2, total - total // 2] * 2), conv.weight, stride=stride)
    assert conv(x).shape[-1] == math.ceil(size / stride)
    torch.testing.assert_close(conv(x), by_hand)


def test_imagenet_weights_come_from_the_pickle_once_and_fit_the_encoder(tmp_path: Path) -> None:
    cache = tmp_path / "lite0.safetensors"
    weights = imagenet_encoder_weights(cache)
    assert cache.is_file()
    encoder = LiteEncoder()
    encoder.load_state_dict(weights, strict=True)  # every tensor of the encoder, nothing else
    # Trained statistics, not a fresh initialisation's (running variance 1 everywhere).
    assert not torch.allclose(weights["stem_bn.running_var"], torch.ones(32))
    cache.write_bytes(b"")  # a second call reads the cache alone: a broken one shows it was read
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error type for an empty file
        imagenet_encoder_weights(cache)


def test_conversion_renames_every_key_and_drops_the_classifier() -> None:
    state = {"_conv_stem.weight": torch.zeros(1), "_blocks.3._bn1.running_var": torch.zeros(1),
             "_fc.weight": torch.zeros(1), "_conv_head.weight": torch.zeros(1)}  # fmt: skip
    assert sorted(convert_imagenet_checkpoint(state)) == ["blocks.3.depthwise_bn.running_var", "stem_conv.weight"]
    with pytest.raises(ValueError, match="unexpected key"):
        convert_imagenet_checkpoint({"_something_else.weight": torch.zeros(1)})


def test_saved_folder_names_its_architecture_and_loads_back(tmp_path: Path) -> None:
    colours = [(i * 20, 0, 0) for i in range(3)]
    model = LiteUNet(num_classes=3, decoder_widths=(16, 8, 8, 8), class_names=["sky", "road", "car"],
                     class_colors=colours, background_class=None).eval()  # fmt: skip
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "lite-unet" and config["background_class"] is None
    loaded, _ = load_model(tmp_path)
    assert type(loaded) is LiteUNet and loaded.class_names == ["sky", "road", "car"]
    assert loaded.class_colors == colours and loaded.num_labels == 3 and not loaded.is_binary
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_old_configs_without_an_architecture_are_the_papers_unet(tmp_path: Path) -> None:
    from unet.model import UNet

    UNet(base_width=4, depth=2).save_pretrained(tmp_path)  # no "architecture" key, as folders saved before had
    assert "architecture" not in json.loads((tmp_path / "config.json").read_text())
    assert type(load_model(tmp_path)[0]) is UNet


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "2 or more"),
        ({"encoder": "resnet18"}, "efficientnet-lite0"),
        ({"decoder_widths": (8, 8)}, "4 levels"),
        ({"num_classes": 2, "class_names": ["a"]}, "class_names has 1"),
        ({"num_classes": 2, "class_colors": [(0, 0, 0)]}, "class_colors has 1"),
        ({"num_classes": 2, "background_class": 2}, "background_class"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LiteUNet(**kwargs)
