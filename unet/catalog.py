"""The models the demo serves, in the order its picker lists them.

The bundled street-scene model (`checkpoints/camvid/`) comes first and is the default, the bundled clip-art model
(`checkpoints/composites/`) second, then every source given with `--weights` (or `$UNET_WEIGHTS`, several separated
by commas), each a folder or a Hub repo id (pin a commit). A source whose files are missing or do not arrive is left
out, with a warning the page shows; in strict mode it stops the app instead.

Serving starts in two steps, so that the page answers before PyTorch is even imported (about 3 s of a 2-core
machine's start-up): `describe_catalog` reads each source's files (downloading a Hub repo's) and what its masks mean,
which is all the page shows of a model; `load_models` then builds the networks, beside serving, and gives each the
fastest way to run whose masks agree with eager PyTorch's (`choose_backends`). A request for a model still loading
waits for it. `load_catalog` does both before it returns.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unet.describe import card_summary, example_pairs, examples_folder, model_summary, visitor_text
from unet.hub import (
    BUNDLED_WEIGHTS,
    CONFIG_FILE,
    DEFAULT_TIMEOUT_S,
    WEIGHTS_ENV,
    WeightsError,
    WeightsInfo,
    build_model,
    fetch_weights,
)
from unet.labels import ModelLabels
from unet.settings import InferenceSettings

if TYPE_CHECKING:
    from unet.predict import Predictor

log = logging.getLogger("unet.catalog")

BUNDLED_FOLDERS = (BUNDLED_WEIGHTS, BUNDLED_WEIGHTS.parent / "composites")
MODELS_BUILT = "every model is built: requests are served"  # what `load_models` logs before the backend choice


@dataclass(eq=False)  # one model is itself, whatever its state
class ServedModel:
    """One model of the picker: its name (what the picker shows and `/segment`'s `model` input takes), where its
    weights came from, what its masks mean, its example (image, mask) pairs, and, once `load` has run, the predictor
    that runs it."""

    name: str
    info: WeightsInfo
    labels: ModelLabels
    examples: list[tuple[Path, Path]]
    _predictor: Predictor | None = field(default=None, init=False, repr=False)
    _failure: str | None = field(default=None, init=False, repr=False)
    _loaded: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    @property
    def settings(self) -> InferenceSettings:
        return self.info.settings

    @property
    def label(self) -> str:
        """The picker's entry: the name and how many classes the model tells apart."""
        kind = "binary" if self.labels.is_binary else f"{self.labels.num_labels} classes"
        return f"{self.name} ({kind})"

    @property
    def summary(self) -> str:
        """One line for the top of the page: the card's summary, else what the model labels."""
        return card_summary(self.info.card) or model_summary(self.labels)

    def load(self) -> None:
        """Build the network and its predictor (this imports PyTorch), once: a failure is kept, for whoever asks
        for the predictor, and raised.

        Raises:
            WeightsError: When the network cannot be built from its files (`unet.hub.build_model`).
        """
        from unet.predict import Predictor  # here, not at the top: the page is laid out without PyTorch

        if self._loaded.is_set():
            if self._predictor is None:
                raise WeightsError(self._failure)
            return
        try:
            self._predictor = Predictor(build_model(self.info), self.settings.max_side)
        except WeightsError as error:
            self._failure = str(error)
            raise
        except Exception as error:  # whoever waits must still hear of it
            self._failure = f"{type(error).__name__}: {error}"
            raise
        finally:
            self._loaded.set()

    def give_up(self, reason: str) -> None:
        """Tell whoever waits for the predictor, and asks later, that the model will not be loaded, and why (a
        model already loaded stays served)."""
        if not self._loaded.is_set():
            self._failure = reason
            self._loaded.set()

    @property
    def predictor(self) -> Predictor:
        """The predictor that runs the model; waits while `load` runs.

        Raises:
            WeightsError: When the model could not be loaded.
        """
        self._loaded.wait()
        if self._predictor is None:
            raise WeightsError(f"The model {self.name} could not be loaded: {self._failure}")
        return self._predictor


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


def describe_catalog(
    extra: Sequence[str] = (),
    *,
    strict: bool = False,
    examples_root: Path | None = None,
    bundled: Sequence[Path] = BUNDLED_FOLDERS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[list[ServedModel], str | None]:
    """Find the bundled models, then `extra`, each once, and read what the page shows of them, without building a
    network (`load_models` does that).

    Args:
        extra: Further weights sources, folders or Hub repo ids, in the order the picker lists them.
        strict: Raise when any source fails, instead of leaving it out with a warning.
        examples_root: The folder of example sets (`examples/`): each model gets its own (`examples_folder`).
        bundled: The bundled folders, listed first.
        timeout_s: The seconds the Hub may stay silent (`unet.hub.fetch_weights`).

    Returns:
        The models, not yet loaded, and a warning for the page naming what was left out (None when nothing was);
        the warning names no server path (the log has the full messages).

    Raises:
        WeightsError: In strict mode, the first source that fails; else when no source is left.
    """
    served, failures = _describe(extra, strict, examples_root, bundled, timeout_s)
    return _served(served, failures)


def _describe(
    extra: Sequence[str], strict: bool, examples_root: Path | None, bundled: Sequence[Path], timeout_s: float
) -> tuple[list[ServedModel], list[str]]:
    """The models of the sources that have their files, and what went wrong with the others, for visitors."""
    sources = [str(folder) for folder in bundled]
    sources += [source for source in extra if not any(_same_folder(source, folder) for folder in bundled)]
    served: list[ServedModel] = []
    failures: list[str] = []
    for source in dict.fromkeys(sources):  # each once, in order
        try:
            info = fetch_weights(source, timeout_s=timeout_s)
            labels = _read_labels(info)
        except WeightsError as error:
            if strict:
                raise
            failures.append(_left_out(source, error))
            continue
        if info.repo_id is not None and info.revision != info.commit:
            log.warning("%s is not pinned: pin commit %s (%s@%s) to serve the same weights tomorrow",
                        source, info.commit, info.repo_id, info.commit)  # fmt: skip
        folder = examples_folder(examples_root, labels, info) if examples_root is not None else None
        served.append(
            ServedModel(
                name=_name(info, {entry.name for entry in served}),
                info=info,
                labels=labels,
                examples=example_pairs(folder) if folder is not None else [],
            )
        )
    return served, failures


def _left_out(source: str, error: WeightsError) -> str:
    """Log why `source` is left out of the demo; what went wrong, for visitors (no server path or address)."""
    log.warning("Leaving %s out of the demo: %s", source, error)
    return visitor_text(str(error)).rstrip(".")


def _served(served: list[ServedModel], failures: list[str]) -> tuple[list[ServedModel], str | None]:
    """The models and the page's banner for the sources left out (None when none was).

    Raises:
        WeightsError: When no model is left.
    """
    if not served:
        raise WeightsError("no model could be loaded: " + "; ".join(failures))
    if not failures:
        return served, None
    return served, "Not every model loaded, so the picker lists only the others. " + ". ".join(failures) + "."


def _read_labels(info: WeightsInfo) -> ModelLabels:
    """What the masks of the weights in `info` mean, from their config."""
    where = f"folder {info.folder}" if info.repo_id is None else info.describe()
    try:
        config = json.loads((info.folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("it does not hold a JSON object")
        return ModelLabels.from_config(config)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise WeightsError(f"Could not load {where}: {CONFIG_FILE} describes no model ({error})") from error


def load_models(models: Sequence[ServedModel], stop: threading.Event | None = None) -> None:
    """Build every model's network, then choose how each runs (`choose_backends`): what a server runs beside
    serving once its page answers. A model that does not build is logged; a request for it gets the reason. Once
    `stop` is set, it returns after the model it is building (or within a forward pass of the choice); requests for
    the models it did not build are then answered that the server is stopping, never left waiting."""
    built = []
    try:
        for served in models:
            if stop is not None and stop.is_set():
                return
            try:
                served.load()
            except WeightsError as error:
                log.warning("%s cannot be served: %s", served.name, error)
                continue
            built.append(served)
    finally:
        for served in models:
            served.give_up("the server is stopping")
    log.info("%s", MODELS_BUILT)
    choose_backends(built, stop)


def load_catalog(
    extra: Sequence[str] = (),
    *,
    strict: bool = False,
    examples_root: Path | None = None,
    bundled: Sequence[Path] = BUNDLED_FOLDERS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[list[ServedModel], str | None]:
    """`describe_catalog`, then every model loaded before it returns (those that do not build are left out like
    the sources that fail, or raise in strict mode): for a strict server, and for scripts and tests.

    Raises:
        WeightsError: In strict mode, the first source that fails; else when no model loads.
    """
    described, failures = _describe(extra, strict, examples_root, bundled, timeout_s)
    served = []
    for model in described:
        try:
            model.load()
        except WeightsError as error:
            if strict:
                raise
            failures.append(_left_out(model.info.source, error))
            continue
        served.append(model)
    return _served(served, failures)


def choose_backends(models: Sequence[ServedModel], stop: threading.Event | None = None) -> None:
    """Give each model's predictor the fastest way to run it whose masks of its examples agree with eager fp32's
    (`unet.backends.choose_forward`), and log the choice. A server runs this once, beside serving (each model is
    served eager until its choice is made); a model without examples stays eager: nothing to check another way on.
    Once `stop` is set, it returns within a forward pass or an export.
    """
    # Here, not at the top: the page is laid out without PyTorch.
    from unet.backends import Stopped, choose_forward, return_freed_memory
    from unet.preprocessing import image_to_tensor, load_image, resize_for_model

    for served in models:
        if not served.examples:
            log.info("%s runs eager fp32: it has no examples to check another way against", served.name)
            continue
        side = served.predictor.max_side
        images = [image_to_tensor(resize_for_model(load_image(path), side)) for path, _ in served.examples]
        try:
            choice = choose_forward(served.predictor.model, images, stop=stop)
        except Stopped:
            return
        served.predictor.forward = choice.forward
        log.info("%s runs in %s", served.name, choice.describe())
        del images, choice  # and with them the ways not chosen
    return_freed_memory()  # what the choice's forward passes allocated and freed: 100-300 MB of a demo's peak
    log.info("every model's way to run is chosen")
