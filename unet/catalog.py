"""The models the demo serves, in the order its picker lists them.

The bundled street-scene model (`checkpoints/camvid/`) comes first and is the default, the bundled clip-art model
(`checkpoints/composites/`) second, then every source given with `--weights` (or `$UNET_WEIGHTS`, several separated
by commas), each a folder or a Hub repo id (pin a commit). Each loads once, at start-up. A source that does not load
is left out, with a warning the page shows; in strict mode it stops the app instead. Once serving, each model
is run the fastest way whose masks agree with eager PyTorch's (`choose_backends`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unet.backends import Stopped, choose_forward
from unet.demo import card_summary, example_pairs, examples_folder, model_summary, visitor_text
from unet.hub import BUNDLED_WEIGHTS, DEFAULT_TIMEOUT_S, WEIGHTS_ENV, WeightsError, WeightsInfo, load_model
from unet.model import UNet
from unet.predict import Predictor
from unet.preprocessing import image_to_tensor, load_image, resize_for_model
from unet.settings import InferenceSettings

log = logging.getLogger("unet.catalog")

BUNDLED_FOLDERS = (BUNDLED_WEIGHTS, BUNDLED_WEIGHTS.parent / "composites")


@dataclass(frozen=True)
class ServedModel:
    """One model of the picker: its name (what the picker shows and `/segment`'s `model` input takes), the predictor
    that runs it, where its weights came from, and its example (image, mask) pairs."""

    name: str
    predictor: Predictor
    info: WeightsInfo
    examples: list[tuple[Path, Path]]

    @property
    def model(self) -> UNet:
        return self.predictor.model

    @property
    def settings(self) -> InferenceSettings:
        return self.info.settings

    @property
    def label(self) -> str:
        """The picker's entry: the name and how many classes the model tells apart."""
        kind = "binary" if self.model.is_binary else f"{self.model.num_labels} classes"
        return f"{self.name} ({kind})"

    @property
    def summary(self) -> str:
        """One line for the top of the page: the card's summary, else what the model labels."""
        return card_summary(self.info.card) or model_summary(self.model)


def requested_sources(given: Sequence[str] | None) -> list[str]:
    """The weights asked for beside the bundled ones: the `--weights` values, else `$UNET_WEIGHTS` split at commas."""
    values = list(given or []) or os.environ.get(WEIGHTS_ENV, "").split(",")
    return [value.strip() for value in values if value.strip()]


def _same_folder(source: str, folder: Path) -> bool:
    return Path(source).expanduser().resolve() == folder.resolve()


def _name(info: WeightsInfo, taken: set[str]) -> str:
    """A short name no other served model has: a Hub source as given, else the folder's name (with its parent's
    name in front when that is taken), never a whole server path."""
    if info.repo_id is not None:
        candidates = [info.source]
    else:
        folder = info.folder.expanduser().resolve()
        candidates = [folder.name, f"{folder.parent.name}/{folder.name}"]
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    number = 2
    while f"{candidates[-1]} ({number})" in taken:
        number += 1
    return f"{candidates[-1]} ({number})"


def load_catalog(
    extra: Sequence[str] = (),
    *,
    strict: bool = False,
    examples_root: Path | None = None,
    bundled: Sequence[Path] = BUNDLED_FOLDERS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[list[ServedModel], str | None]:
    """Load the bundled models, then `extra`, each once.

    Args:
        extra: Further weights sources, folders or Hub repo ids, in the order the picker lists them.
        strict: Raise when any source fails, instead of leaving it out with a warning.
        examples_root: The folder of example sets (`examples/`): each model gets its own (`examples_folder`).
        bundled: The bundled folders, listed first.
        timeout_s: The seconds the Hub may stay silent (`load_model`).

    Returns:
        The served models, and a warning for the page naming what did not load (None when everything did); the
        warning names no server path (the log has the full messages).

    Raises:
        WeightsError: In strict mode, the first source that fails; else when no model loads at all.
    """
    sources = [str(folder) for folder in bundled]
    sources += [source for source in extra if not any(_same_folder(source, folder) for folder in bundled)]
    served: list[ServedModel] = []
    failures: list[str] = []
    for source in dict.fromkeys(sources):  # each once, in order
        try:
            model, info = load_model(source, timeout_s=timeout_s)
        except WeightsError as error:
            if strict:
                raise
            log.warning("Leaving %s out of the demo: %s", source, error)
            failures.append(visitor_text(str(error)).rstrip("."))
            continue
        if info.repo_id is not None and info.revision != info.commit:
            log.warning("%s is not pinned: pin commit %s (%s@%s) to serve the same weights tomorrow",
                        source, info.commit, info.repo_id, info.commit)  # fmt: skip
        folder = examples_folder(examples_root, model, info) if examples_root is not None else None
        served.append(
            ServedModel(
                name=_name(info, {entry.name for entry in served}),
                predictor=Predictor(model, info.settings.max_side),
                info=info,
                examples=example_pairs(folder) if folder is not None else [],
            )
        )
    if not served:
        raise WeightsError("no model could be loaded: " + "; ".join(failures))
    warning = None
    if failures:
        warning = "Not every model loaded, so the picker lists only the others. " + ". ".join(failures) + "."
    return served, warning


def choose_backends(models: Sequence[ServedModel], stop: threading.Event | None = None) -> None:
    """Give each model's predictor the fastest way to run it whose masks of its examples agree with eager fp32's
    (`unet.backends.choose_forward`), and log the choice. A server runs this once, beside serving (each model is
    served eager until its choice is made); a model without examples stays eager: nothing to check another way on.
    Once `stop` is set, it returns within a forward pass or an export.
    """
    for served in models:
        if not served.examples:
            log.info("%s runs eager fp32: it has no examples to check another way against", served.name)
            continue
        side = served.predictor.max_side
        images = [image_to_tensor(resize_for_model(load_image(path), side)) for path, _ in served.examples]
        try:
            choice = choose_forward(served.model, images, stop=stop)
        except Stopped:
            return
        served.predictor.forward = choice.forward
        log.info("%s runs in %s", served.name, choice.describe())
    log.info("every model's way to run is chosen")
