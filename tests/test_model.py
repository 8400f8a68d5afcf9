"""The U-Net: output shapes for any input size, gradients, the save -> load round trip, its config and its checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unet.model import UNet

SHAPES = [
    ((1, 3, 97, 131), 4),
    ((2, 3, 33, 64), 4),
    ((1, 3, 5, 7), 2),  # padded by reflection to 8 x 8
    ((1, 3, 5, 7), 4),  # padded to 16 x 16, more than the image itself, so by replication
    ((1, 3, 1, 1), 3),
]


def _logits(shape: tuple[int, ...], depth: int, num_classes: int, upsampling: str, norm: str) -> torch.Tensor:
    torch.manual_seed(0)
    model = UNet(3, num_classes, base_width=4, depth=depth, upsampling=upsampling, norm=norm).eval()
    with torch.no_grad():
        return model(torch.randn(shape))


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize(("shape", "depth"), SHAPES)
def test_output_has_the_input_size(shape: tuple[int, ...], depth: int, num_classes: int) -> None:
    logits = _logits(shape, depth, num_classes, "bilinear", "batch")
    assert logits.shape == (shape[0], num_classes, *shape[2:])
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("upsampling", ["bilinear", "transpose"])
@pytest.mark.parametrize(("shape", "depth"), [((2, 3, 33, 50), 3), ((1, 3, 5, 7), 2)])
def test_every_block_kind_keeps_the_input_size(shape: tuple[int, ...], depth: int, upsampling: str, norm: str) -> None:
    for num_classes in (1, 3):
        logits = _logits(shape, depth, num_classes, upsampling, norm)
        assert logits.shape == (shape[0], num_classes, *shape[2:])
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("upsampling", ["bilinear", "transpose"])
@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_backward_gives_finite_gradients_on_every_parameter(num_classes: int, norm: str, upsampling: str) -> None:
    torch.manual_seed(0)
    model = UNet(3, num_classes, base_width=4, depth=2, upsampling=upsampling, norm=norm).train()
    logits = model(torch.randn(2, 3, 19, 23))
    if num_classes == 1:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.randint(0, 2, logits.shape).float())
    else:
        loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, num_classes, (2, 19, 23)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.shape == parameter.shape, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"{name} takes no part in the output"


@pytest.mark.parametrize(
    "config",
    [
        {"in_channels": 3, "num_classes": 1, "base_width": 4, "depth": 2, "upsampling": "bilinear", "norm": "batch"},
        {
            "in_channels": 1,
            "num_classes": 3,
            "base_width": 8,
            "depth": 3,
            "upsampling": "transpose",
            "norm": "group",
            "class_names": ["background", "cat", "dog"],
        },
    ],
)
def test_save_and_load_round_trip(tmp_path: Path, config: dict) -> None:
    torch.manual_seed(0)
    model = UNet(**config)
    # Non-trivial batch-norm statistics, so the buffers must travel with the weights too.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    model.eval()
    model.save_pretrained(tmp_path)

    expected = {"class_names": None, "class_colors": None, "background_class": 0, **config}
    assert json.loads((tmp_path / "config.json").read_text()) == expected
    assert (tmp_path / "model.safetensors").is_file()

    loaded = UNet.from_pretrained(tmp_path, strict=True).eval()
    assert isinstance(loaded, UNet)
    assert {key: getattr(loaded, key) for key in ("in_channels", "num_classes", "depth")} == {
        key: config[key] for key in ("in_channels", "num_classes", "depth")
    }
    assert loaded.class_names == model.class_names
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    image = torch.randn(1, config["in_channels"], 21, 30)
    with torch.no_grad():
        assert torch.equal(loaded(image), model(image))


def test_config_json_holds_the_default_arguments(tmp_path: Path) -> None:
    UNet().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "in_channels": 3,
        "num_classes": 1,
        "base_width": 16,
        "depth": 4,
        "upsampling": "bilinear",
        "norm": "batch",
        "class_names": None,
        "class_colors": None,
        "background_class": 0,
    }


@pytest.mark.parametrize(
    ("num_classes", "class_names"),
    [
        (1, ["background", "foreground"]),
        (2, ["background", "foreground"]),
        (4, ["background", "class_1", "class_2", "class_3"]),
    ],
)
def test_default_class_names(num_classes: int, class_names: list[str]) -> None:
    assert UNet(num_classes=num_classes, base_width=4, depth=1).class_names == class_names


def test_loading_weights_of_another_architecture_fails(tmp_path: Path) -> None:
    UNet(base_width=4, depth=2).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "upsampling": "transpose"}))
    with pytest.raises(RuntimeError, match="size mismatch for ups"):
        UNet.from_pretrained(tmp_path, strict=True)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"depth": 0}, "depth"),
        ({"upsampling": "nearest"}, "upsampling"),
        ({"norm": "layer"}, "norm"),
        ({"num_classes": 1, "class_names": ["background", "cat", "dog"]}, "class_names has 3 names"),
        ({"num_classes": 3, "class_names": ["background", "cat"]}, "class_names has 2 names"),
    ],
)
def test_bad_arguments_raise_value_error(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNet(**arguments)


def _classic_parameter_count() -> int:
    """The paper's U-Net counted by hand: base 64, depth 4, transposed convs, batch norm (convs without bias)."""

    def double_conv(cin: int, cout: int) -> int:
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout  # two 3x3 convs, each with a norm's (w, b)

    widths = [64, 128, 256, 512, 1024]
    count = double_conv(3, 64)
    count += sum(double_conv(widths[i], widths[i + 1]) for i in range(4))
    for i in range(4):
        cin = widths[i + 1]
        count += 4 * cin * (cin // 2) + cin // 2  # 2x2 transposed conv, with bias, halving the channels
        count += double_conv(cin // 2 + widths[i], widths[i])
    return count + 64 * 1 + 1  # the 1x1 head, one class


def test_classic_configuration_has_31_million_parameters() -> None:
    model = UNet(3, 1, base_width=64, depth=4, upsampling="transpose", norm="batch")
    count = sum(parameter.numel() for parameter in model.parameters())
    assert count == _classic_parameter_count() == 31_037_633  # the figure milesial/Pytorch-UNet reports
    assert 31_000_000 <= count <= 31_100_000


@pytest.mark.parametrize(("num_classes", "num_labels", "is_binary"), [(1, 2, True), (2, 2, False), (3, 3, False)])
def test_num_labels(num_classes: int, num_labels: int, is_binary: bool) -> None:
    model = UNet(num_classes=num_classes, base_width=4, depth=1)
    assert model.num_labels == num_labels
    assert model.is_binary is is_binary
