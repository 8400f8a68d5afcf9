"""Inference settings that travel with the weights: `inference.json` beside `config.json`.

How a model's masks are best made (the foreground threshold of a binary model, the test-time augmentation, the
least region confidence, the largest side the network sees) is chosen on its validation set, like its weights, and
differs from model to model: turning a street scene upside down is no help, turning clip art often is. So each
checkpoint folder (and Hub repo) may carry the values chosen for it; `Predictor`'s callers (`unet.predict`,
`unet.evaluate`, the demo) take them as their defaults, and a folder without the file gets `InferenceSettings()`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SETTINGS_FILE = "inference.json"
TTA_NAMES = ("none", "flip", "dihedral", "hflip")  # the views of `unet.predict.TTA_VIEWS`
# What each test-time augmentation does, in the words every command, the demo and the model card use.
TTA_HELP = {
    "none": "the image as it is",
    "flip": "average over the image's four mirror images (four times the time)",
    "dihedral": "average over the image's eight quarter turns and mirror images (eight times the time)",
    "hflip": "average over the image and its left-right mirror image (twice the time)",
}


def recorded_tta(scores: dict) -> str:
    """The test-time augmentation an eval.json records (`TTA_VIEWS`); those written before --tta have "flip": bool."""
    return scores.get("tta", "flip" if scores.get("flip") else "none")


@dataclass(frozen=True)
class InferenceSettings:
    """How masks are made from a model's probabilities, by default and unless a command says otherwise.

    Args:
        threshold: The foreground probability from which a pixel is foreground (binary models).
        tta: The test-time augmentation, a name of `unet.predict.TTA_VIEWS`.
        min_confidence: Drop predicted regions whose mean probability is below it (`drop_unsure_regions`); 0 keeps
            every region.
        max_side: Larger images are shrunk so that their longer side is this many pixels for the forward pass.
    """

    threshold: float = 0.5
    tta: str = "none"
    min_confidence: float = 0.0
    max_side: int = 512

    def __post_init__(self) -> None:
        for name in ("threshold", "min_confidence"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or math.isnan(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if self.tta not in TTA_NAMES:
            raise ValueError(f"tta must be one of {', '.join(TTA_NAMES)}, got {self.tta!r}")
        if not isinstance(self.max_side, int) or self.max_side < 1:
            raise ValueError(f"max_side is a number of pixels, 1 or more, got {self.max_side!r}")

    @classmethod
    def from_file(cls, path: Path) -> InferenceSettings:
        """Read `inference.json`; a missing file gives the defaults, a bad one a ValueError that names it."""
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path.name} is not readable JSON: {error}") from error
        known = {field.name for field in fields(cls)}
        if not isinstance(values, dict) or set(values) - known:
            unknown = sorted(set(values) - known) if isinstance(values, dict) else values
            raise ValueError(f"{path.name} may hold only {', '.join(sorted(known))}; found {unknown}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{path.name}: {error}") from error

    def write(self, folder: Path) -> Path:
        """Write the settings into `folder` as `inference.json`; returns its path."""
        path = Path(folder) / SETTINGS_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path
