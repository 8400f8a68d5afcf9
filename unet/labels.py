"""What a model's masks mean: its classes' names and colours, which class (if any) is background, and the value of
pixels that belong to no class.

These are read from a weights folder's `config.json` as they are, without building the network (and so without
importing PyTorch): the demo lays out its page, legends and examples from them while the models load beside it.
`ModelLabels.of(model)` gives the same description from a built model; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

IGNORE_INDEX = 255  # mask value for pixels that count for no class (the Pascal VOC border convention)
# The class each architecture calls background when its config names none (`unet.architectures`): the paper's
# U-Net's class 0 is background; the street-scene network's classes are all something.
DEFAULT_BACKGROUND: dict[str, int | None] = {"unet": 0, "lite-unet": None}


def default_class_names(num_labels: int, background_class: int | None) -> list[str]:
    """'background', 'foreground' for two classes with a background; else 'class_0', 'class_1', ... with the
    background class called 'background'."""
    names = [f"class_{index}" for index in range(num_labels)]
    if background_class is not None:
        names[background_class] = "background"
        if num_labels == 2:
            names[1 - background_class] = "foreground"
    return names


class Labelled(Protocol):
    """What every network of `unet.architectures` says of its masks."""

    num_classes: int
    class_names: list[str]
    class_colors: list[tuple[int, int, int]] | None
    background_class: int | None


@dataclass(frozen=True)
class ModelLabels:
    """The classes of a model's masks.

    Args:
        num_classes: The network's output channels: 1 for a binary model (a sigmoid), else one a class.
        class_names: One name a class, in index order.
        class_colors: One RGB colour a class, or None for the package's palette (`unet.visualize.color_table`).
        background_class: The class pictures leave undrawn, or None when every class is something.
    """

    num_classes: int
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...] | None
    background_class: int | None

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 1

    @property
    def num_labels(self) -> int:
        """Number of classes in the masks: 2 for a binary model (background, foreground)."""
        return 2 if self.is_binary else self.num_classes

    @classmethod
    def of(cls, model: Labelled) -> ModelLabels:
        """The labels of a built network."""
        colors = None if model.class_colors is None else tuple(tuple(color) for color in model.class_colors)
        return cls(model.num_classes, tuple(model.class_names), colors, model.background_class)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelLabels:
        """The labels a `config.json` describes, with its architecture's defaults for what it leaves out.

        Raises:
            ValueError: When the config names an unknown architecture or its labels do not fit its classes.
        """
        architecture = config.get("architecture", "unet")
        if architecture not in DEFAULT_BACKGROUND:
            raise ValueError(f"architecture {architecture!r} is none of {', '.join(DEFAULT_BACKGROUND)}")
        num_classes = config.get("num_classes", 1 if architecture == "unet" else 2)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive whole number, got {num_classes!r}")
        num_labels = 2 if num_classes == 1 else num_classes
        background = config.get("background_class", DEFAULT_BACKGROUND[architecture])
        if background is not None and not (isinstance(background, int) and 0 <= background < num_labels):
            raise ValueError(f"background_class must be a class index or null, got {background!r}")
        names = config.get("class_names") or default_class_names(num_labels, background)
        colors = config.get("class_colors")
        if len(names) != num_labels or (colors is not None and len(colors) != num_labels):
            raise ValueError(f"class_names and class_colors must give one entry for each of the {num_labels} classes")
        return cls(
            num_classes,
            tuple(str(name) for name in names),
            None if colors is None else tuple(tuple(int(value) for value in color) for color in colors),
            background,
        )
