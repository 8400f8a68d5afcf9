"""The U-Net of Ronneberger et al. (2015): a contracting path, an expanding path, and skip connections between them.

The network reads top-down: the small blocks first, then `UNet`. Every architecture setting is a typed, JSON-able
constructor argument, so `save_pretrained` writes it to `config.json` beside `model.safetensors` and
`from_pretrained` rebuilds exactly the network that was trained.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from unet.labels import default_class_names

Upsampling = Literal["bilinear", "transpose"]
Normalization = Literal["batch", "group", "none"]


def _norm(kind: Normalization, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        # 8 channels a group keeps the statistics meaningful for the narrow first levels.
        return nn.GroupNorm(max(1, channels // 8), channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) twice: the unit every level of the U is built from."""

    def __init__(self, in_channels: int, out_channels: int, norm: Normalization) -> None:
        bias = norm == "none"  # a norm layer right after the conv makes its bias redundant
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """Halve the resolution with 2x2 max pooling, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, norm: Normalization) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, norm))


class Up(nn.Module):
    """Double the resolution, concatenate the skip connection from the contracting path, then a DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, mode: Upsampling, norm: Normalization):
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            up_channels = in_channels // 2
        else:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            up_channels = in_channels
        self.conv = DoubleConv(up_channels + skip_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, C, 2h, 2w)
        return self.conv(torch.cat([skip, x], dim=1))  # (B, C_skip + C, 2h, 2w) -> (B, C_out, 2h, 2w)


class UNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="unet",
    pipeline_tag="image-segmentation",
    tags=["unet", "semantic-segmentation", "pytorch"],
    license="mit",
):
    """A U-Net for semantic segmentation that takes images of any height and width.

    Args:
        in_channels: Channels of the input image (3 for RGB).
        num_classes: 1 for a binary model (one logit per pixel, sigmoid); 2 or more for softmax over classes.
        base_width: Channels of the first level; each level below doubles them (64 in the paper).
        depth: Number of down-sampling steps (4 in the paper). Inputs are padded to a multiple of 2**depth.
        upsampling: "bilinear" (interpolate, then convolve) or "transpose" (a learned 2x2 transposed conv).
        norm: Normalization after each conv: "batch", "group" or "none".
        class_names: One name a class of the predicted masks, background first (default: "background",
            "foreground" for a binary model; "background", "class_1", ... otherwise).
        class_colors: One RGB colour a class, for every picture of a mask (default: the package's palette).
        background_class: The class that means "nothing here", which pictures leave undrawn (0); None when every
            class is something.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_width: int = 16,
        depth: int = 4,
        upsampling: Upsampling = "bilinear",
        norm: Normalization = "batch",
        class_names: list[str] | None = None,
        class_colors: list[tuple[int, int, int]] | None = None,
        background_class: int | None = 0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be 1 (binary) or more, got {num_classes}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if upsampling not in ("bilinear", "transpose"):
            raise ValueError(f"upsampling must be 'bilinear' or 'transpose', got {upsampling!r}")
        if norm not in ("batch", "group", "none"):
            raise ValueError(f"norm must be 'batch', 'group' or 'none', got {norm!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        if background_class is not None and not 0 <= background_class < self.num_labels:
            raise ValueError(f"background_class must be a class index or None, got {background_class}")
        self.class_names = list(class_names) if class_names else default_class_names(self.num_labels, background_class)
        if len(self.class_names) != self.num_labels:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but the model predicts {self.num_labels} classes"
            )
        self.class_colors = [tuple(color) for color in class_colors] if class_colors else None
        if self.class_colors is not None and len(self.class_colors) != self.num_labels:
            raise ValueError(f"class_colors has {len(self.class_colors)} colours for {self.num_labels} classes")
        self.background_class = background_class

        widths = [base_width * 2**level for level in range(depth + 1)]  # e.g. 16, 32, 64, 128, 256
        self.inc = DoubleConv(in_channels, widths[0], norm)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], norm) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], upsampling, norm) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, in_channels, H, W) to logits (B, num_classes, H, W), for any H and W."""
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -height % multiple, -width % multiple
        # Reflect-pad to a multiple of 2**depth so every pooling halves exactly and the skips line up.
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)

        skips = [self.inc(x)]  # (B, w0, H, W)
        for down in self.downs:
            skips.append(down(skips[-1]))  # level i: (B, w0 * 2**i, H / 2**i, W / 2**i)
        x = skips.pop()  # the bottleneck, (B, w0 * 2**depth, H / 2**depth, W / 2**depth)
        for up in self.ups:
            x = up(x, skips.pop())  # back up one level, joined with the skip of the same size
        logits = self.head(x)  # (B, num_classes, H + pad_h, W + pad_w)
        return logits[..., :height, :width]

    @property
    def is_binary(self) -> bool:
        """True when the model has one output channel read through a sigmoid."""
        return self.num_classes == 1

    @property
    def num_labels(self) -> int:
        """Number of classes in the masks it predicts: 2 for a binary model (background, foreground)."""
        return 2 if self.is_binary else self.num_classes
