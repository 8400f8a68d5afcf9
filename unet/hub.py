"""Weights from a local folder or the Hugging Face Hub: pinned, safetensors only, strict, and honest when they fail.

A weights folder is what `UNet.save_pretrained` writes: `config.json` (the constructor arguments) beside
`model.safetensors`. `load_model` takes such a folder or a Hub repo id `user/name[@revision]`; every failure becomes
a `WeightsError` that says what happened and what to do. It is two steps, which the app takes apart:
`fetch_weights` finds (or downloads) the files without importing PyTorch, `build_model` builds the network from
them. Every CLI chooses weights the same way
(`--weights`, else `$UNET_WEIGHTS`, else the bundled street-scene model `checkpoints/camvid/`); the app serves
several (`unet.catalog`). Publishing weights with their model card is `unet.publish`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2
from huggingface_hub import (
    HfApi,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import _CACHED_NO_EXIST
from huggingface_hub.utils import tqdm as hf_tqdm
from huggingface_hub.utils import validate_repo_id

from unet.settings import SETTINGS_FILE, InferenceSettings

if TYPE_CHECKING:
    from unet.architectures import Model

log = logging.getLogger("unet.hub")

BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "checkpoints" / "camvid"
WEIGHTS_ENV = "UNET_WEIGHTS"
TIMEOUT_ENV = "UNET_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 10.0
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TRUE = {"1", "ON", "YES", "TRUE"}
_threads = itertools.count()
_PROGRESS_CHUNK_BYTES = 64 * 1024
T = TypeVar("T")


class WeightsError(RuntimeError):
    """Weights could not be loaded; the message names the cause and what to do."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where loaded weights came from: what the app's model panel shows.

    Args:
        source: The source as given: a folder or `user/name[@revision]`.
        folder: The local folder the files were read from (for the Hub, the snapshot in the cache).
        repo_id: The Hub repo id, or None for a local folder.
        revision: The revision asked for (`main` when none was), or None for a local folder.
        commit: The commit sha the revision resolved to, or None for a local folder.
        card: The model card (README.md) text, or None when there is none.
        settings: How its masks are made by default (`inference.json`; the library's defaults without one).
    """

    source: str
    folder: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    card: str | None = None
    settings: InferenceSettings = field(default_factory=InferenceSettings)

    def describe(self) -> str:
        """One line: `user/name@main (commit 0123abcd...)` or `local folder PATH`."""
        if self.repo_id is None:
            return f"local folder {self.folder}"
        pinned = "" if self.revision == self.commit else f" (commit {self.commit})"
        return f"{self.repo_id}@{self.revision}{pinned}"


# ----------------------------------------------------------------------------------------------------------------
# Choosing weights: one rule for every CLI and the app


def resolve_weights(cli_value: str | None) -> str:
    """The weights to load: the CLI value, else `$UNET_WEIGHTS`, else the bundled `checkpoints/camvid/` folder."""
    for value in (cli_value, os.environ.get(WEIGHTS_ENV)):
        if value and value.strip():
            return value.strip()
    return str(BUNDLED_WEIGHTS)


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """Add the `--weights` option, with the same help text in every CLI."""
    parser.add_argument(
        "--weights",
        metavar="FOLDER|USER/NAME[@REV]",
        help=f"weights to load: a folder with {CONFIG_FILE} + {WEIGHTS_FILE}, or a Hugging Face Hub repo id "
        f"USER/NAME[@REVISION] (pin a commit sha for reproducible results); default: ${WEIGHTS_ENV}, "
        f"else the bundled checkpoints/{BUNDLED_WEIGHTS.name}/ model",
    )


def add_timeout_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--hub-timeout`, the seconds the Hub may stay silent (`load_model`'s `timeout_s`)."""
    default = os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S
    parser.add_argument(
        "--hub-timeout",
        type=_positive_seconds,
        default=_positive_seconds(str(default)),
        metavar="SECONDS",
        help=f"give up on the Hub after this many seconds without an answer or without new data (a download that "
        f"keeps arriving is never cut off; default: ${TIMEOUT_ENV}, else {DEFAULT_TIMEOUT_S:g})",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the Hub timeout is a number of seconds above 0, not {text!r}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_model(
    source: str | Path,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[Model, WeightsInfo]:
    """Load a network in eval mode from a weights folder or a Hub repo, strictly and from safetensors only: the
    files (`fetch_weights`, whose arguments these are), then the network (`build_model`).

    Returns:
        The model and where it came from (`WeightsInfo`, with the resolved commit for a Hub load).

    Raises:
        WeightsError: When anything fails; the message names the cause and what to do.
    """
    info = fetch_weights(source, revision, endpoint=endpoint, cache_dir=cache_dir, timeout_s=timeout_s)
    return build_model(info), info


def fetch_weights(
    source: str | Path,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> WeightsInfo:
    """Find a weights folder, or download a Hub repo's into the cache, and read its settings and card: everything
    but the network, so without PyTorch.

    `HF_ENDPOINT`, `HF_HUB_CACHE` and `HF_HUB_OFFLINE` are read when this is called (huggingface_hub itself reads
    them once, at import), so they can be set late by a test or an app.

    Args:
        source: A local folder holding config.json and model.safetensors, or a Hub repo id `user/name`,
            optionally with `@revision` (a branch, a tag, or a commit sha: pin the sha to get the same weights
            tomorrow). An existing folder wins over a repo id of the same spelling; a `Path` is always a folder.
        revision: The Hub revision, instead of `@revision` in `source`.
        endpoint: The Hub URL; default `$HF_ENDPOINT`, else https://huggingface.co.
        cache_dir: The Hub cache; default `$HF_HUB_CACHE`, else huggingface_hub's default.
        timeout_s: The most seconds the Hub may stay silent: to answer a request, and between two pieces of a
            download. A download that keeps arriving is never cut off; one that stalls, or a server that does not
            answer, fails after this long (the client alone retries some errors for ~23 s).

    Returns:
        Where the files are (`WeightsInfo.folder`), with the resolved commit for a Hub repo.

    Raises:
        WeightsError: When a file is missing, unreadable or does not arrive; the message names the cause and what
            to do.
    """
    folder = Path(source).expanduser()
    if isinstance(source, Path) or folder.is_dir():
        if revision is not None:
            raise WeightsError(f"revision={revision!r} applies to Hub repos, but {source} is a local folder")
        try:
            return _fetch_local(folder, str(source))
        except WeightsError as error:
            raise WeightsError(f"Could not load folder {folder}: {error}") from error
    repo_id, _, pinned = source.partition("@")
    if not is_repo_id(repo_id) or (pinned == "" and "@" in source):
        raise WeightsError(
            f"{source!r} is neither an existing folder nor a Hub repo id: give a folder holding {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}, or USER/NAME[@REVISION]"
        )
    if pinned and revision is not None and pinned != revision:
        raise WeightsError(f"{source!r} pins revision {pinned!r} but revision={revision!r} was also given")
    job = _HubJob(
        repo_id=repo_id,
        revision=pinned or revision or constants.DEFAULT_REVISION,
        endpoint=(endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/"),
        cache_dir=cache_dir or os.environ.get("HF_HUB_CACHE"),
        offline=constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE,
        timeout_s=timeout_s,
    )
    try:
        return _fetch_from_hub(job, source)
    except WeightsError as error:
        raise WeightsError(f"Could not load {job.where} from {job.endpoint}: {error}") from error


def build_model(info: WeightsInfo) -> Model:
    """The network of fetched weights (`fetch_weights`), built from its config and loaded strictly, in eval mode.

    Raises:
        WeightsError: When the config describes no network or the weights do not fit it.
    """
    try:
        model = _build_model(info.folder / CONFIG_FILE, info.folder / WEIGHTS_FILE)
    except WeightsError as error:
        where = f"folder {info.folder}" if info.repo_id is None else info.describe()
        raise WeightsError(f"Could not load {where}: {error}") from error
    log.info("Loaded weights %s", info.describe())
    return model


def is_repo_id(text: str) -> bool:
    """True for a valid `user/name` (huggingface_hub's rules)."""
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return "/" in text


def _fetch_local(folder: Path, source: str) -> WeightsInfo:
    """A weights folder on disk, once its files are there."""
    if not folder.is_dir():
        raise WeightsError("it does not exist")
    files = sorted(path.name for path in folder.iterdir() if path.is_file())
    if CONFIG_FILE not in files or WEIGHTS_FILE not in files:
        raise WeightsError(_missing_files_message("the folder", files, WEIGHTS_FILE))
    settings = _read_settings(folder / SETTINGS_FILE)
    return WeightsInfo(source=source, folder=folder, card=_read_card(folder / CARD_FILE), settings=settings)


def _read_settings(path: Path) -> InferenceSettings:
    """The folder's inference settings; a broken file fails the load as broken weights would."""
    try:
        return InferenceSettings.from_file(path)
    except ValueError as error:
        raise WeightsError(f"{error}; fix or delete it (a folder without one uses the library's defaults)") from error


def _build_model(config_path: Path, weights_path: Path) -> Model:
    """The network `config.json` names, with the safetensors weights loaded strictly, in eval mode."""
    # Imported here, where a network is built: finding and downloading weights needs no PyTorch (about 3 s to import).
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from unet.architectures import ARCHITECTURE_KEY, constructor_arguments, model_class
    from unet.model import UNet

    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(
            f"{config_path.name} is not readable JSON ({error}); save the model with save_pretrained"
        ) from error
    if not isinstance(config, dict):
        accepted = constructor_arguments(UNet)
        raise WeightsError(f"{config_path.name} must hold a JSON object of UNet arguments ({', '.join(accepted)})")
    try:
        cls = model_class(config)
    except KeyError as error:
        message = f"{config_path.name}: {error.args[0]}; the weights need a newer version of this package"
        raise WeightsError(message) from None
    accepted = constructor_arguments(cls)
    arguments = {key: value for key, value in config.items() if key != ARCHITECTURE_KEY}
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise WeightsError(
            f"{config_path.name} has keys {cls.__name__} does not take: {', '.join(unknown)} (it takes "
            f"{', '.join(accepted)}); the weights were saved by another model or another version of this package"
        )
    try:
        model = cls(**arguments)
    except (TypeError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{config_path.name} describes no valid {cls.__name__}: {error}") from error

    try:
        state = load_file(weights_path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise WeightsError(
            f"{weights_path.name} is not a readable safetensors file, it is corrupted or truncated ({error}); "
            "download it again (a Hub copy: delete it from the cache) or save the model again with save_pretrained"
        ) from error
    expected = model.state_dict()
    # In the model's order (top of the U first), which is how people read a mismatch.
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        f"{label} {_some(keys)}"
        for label, keys in [
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("size mismatch (checkpoint vs model)", mismatched),
        ]
        if keys
    ]
    if problems:
        raise WeightsError(
            f"{weights_path.name} does not fit {config_path.name} ({json.dumps(config, sort_keys=True)}): "
            f"{'; '.join(problems)}. Config and weights must come from the same save_pretrained call."
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _some(items: list[str], limit: int = 6) -> str:
    """A list for a message: the first few items and how many there are."""
    if len(items) <= limit:
        return f"[{', '.join(items)}]"
    return f"[{', '.join(items[:limit])}, ... {len(items)} in all]"


def _missing_files_message(where: str, files: Sequence[str] | None, not_found: str) -> str:
    """Why a folder or repo cannot be loaded: `not_found` is missing, and `files` (when known) is what it holds."""
    if files is not None and WEIGHTS_FILE not in files:
        pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
        if pickles:
            return (
                f"{where} has no {WEIGHTS_FILE}, only pickled weights ({', '.join(pickles)}). They are refused: "
                "unpickling a file can run arbitrary code. Convert them once, from a source you trust: build the "
                "UNet, load_state_dict(torch.load(FILE, weights_only=True)), then save_pretrained(FOLDER) writes "
                f"{CONFIG_FILE} and {WEIGHTS_FILE}."
            )
    missing = [not_found] if files is None else [name for name in (CONFIG_FILE, WEIGHTS_FILE) if name not in files]
    listing = "" if files is None else f" (it holds: {', '.join(files) or 'nothing'})"
    return (
        f"{where} has no {' or '.join(missing)}{listing}. Weights are {CONFIG_FILE} and {WEIGHTS_FILE} as written "
        "by UNet.save_pretrained (pickled .bin/.pt/.pth files are never loaded); train a model or point --weights "
        "at other weights."
    )


# Batch norm's running statistics are stored beside the weights but are not learned parameters.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def parameter_count(weights: Path) -> int | None:
    """The learned parameters in a safetensors file, counted from its JSON header alone (no tensor is read, and
    no PyTorch imported); None when the file has no readable header."""
    try:
        with weights.open("rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            if length > _MAX_HEADER_BYTES:
                return None
            header = json.loads(stream.read(length))
        return sum(
            math.prod(entry["shape"])
            for name, entry in header.items()
            if name != "__metadata__" and not name.endswith(_BUFFER_SUFFIXES)
        )
    except (OSError, struct.error, ValueError, TypeError, KeyError, AttributeError):
        return None


def _read_card(path: Path) -> str | None:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


# ----------------------------------------------------------------------------------------------------------------
# The Hub


@dataclass(frozen=True)
class _HubJob:
    """One Hub load: what to fetch, from where, and how long to try."""

    repo_id: str
    revision: str
    endpoint: str
    cache_dir: str | Path | None
    offline: bool
    timeout_s: float
    watch: _Progress = field(default_factory=lambda: _Progress())

    @property
    def where(self) -> str:
        return f"{self.repo_id}@{self.revision}"


class _Progress:
    """When a Hub download last brought bytes it had not brought before (a retry that starts the file over again
    brings none), and how many: what tells a slow download from a stalled one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.furthest: dict[str, int] = {}  # per file: the most bytes of it a download has reached

    def restart(self) -> None:
        with self.lock:
            self.last = time.monotonic()

    def reached(self, name: str, position: int) -> None:
        with self.lock:
            furthest = self.furthest.get(name, 0)
            if position > furthest:
                self.furthest[name] = position
                self.last = time.monotonic()

    def bar_class(self) -> type[hf_tqdm]:
        """A huggingface_hub progress bar that reports every piece of a download to this watch (it counts for
        itself: a bar that is not shown counts nothing)."""
        watch = self

        class Bar(hf_tqdm):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.file_name = str(kwargs.get("desc"))
                self.position_reached = int(kwargs.get("initial") or 0)

            def update(self, n: float | None = 1) -> bool | None:
                self.position_reached += int(n or 0)
                watch.reached(self.file_name, self.position_reached)
                return super().update(n)

        return Bar


def _fetch_from_hub(job: _HubJob, source: str) -> WeightsInfo:
    """Download config and weights into the cache (given up after `job.timeout_s` of silence), with the repo's
    settings and card."""
    if job.offline:
        log.info("HF_HUB_OFFLINE is set: loading %s from the local cache only", job.where)
    else:
        log.info(
            "Downloading weights from the Hub: %s (%s, giving up after %g s without an answer or new data) ...",
            job.where,
            job.endpoint,
            job.timeout_s,
        )
    try:
        config_path, _ = _while_progressing(partial(_download_weights, job), job)
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as error:
        raise WeightsError(_explain(error, job)) from error
    commit = config_path.parent.name  # the cache keeps files under snapshots/<commit sha>/
    settings = _read_settings(config_path.parent / SETTINGS_FILE)  # downloaded with the weights, if the repo has it
    card = _download_card(job, commit)
    info = WeightsInfo(
        source=source,
        folder=config_path.parent,
        repo_id=job.repo_id,
        revision=job.revision,
        commit=commit,
        card=card,
        settings=settings,
    )
    return info


def _download_weights(job: _HubJob) -> tuple[Path, Path]:
    """Config at the asked revision, then the weights at the commit it resolved to (so both match)."""
    try:
        config_path = Path(_fetch(job, CONFIG_FILE, job.revision))
    except RemoteEntryNotFoundError as error:
        files = _list_files(job, job.revision)
        raise WeightsError(_missing_files_message("the repository", files, CONFIG_FILE)) from error
    commit = config_path.parent.name  # the cache keeps files under snapshots/<commit sha>/
    try:
        weights_path = Path(_fetch(job, WEIGHTS_FILE, commit))
    except RemoteEntryNotFoundError as error:
        files = _list_files(job, commit)
        raise WeightsError(_missing_files_message(f"commit {commit}", files, WEIGHTS_FILE)) from error
    for path in (config_path, weights_path):
        _check_blob(path)
    _fetch_settings(job, commit)
    return config_path, weights_path


def _fetch_settings(job: _HubJob, commit: str) -> None:
    """Bring the repo's inference settings at `commit` into the cache beside the weights, if it has them.

    A repo without them gets the library's defaults. Their absence is recorded in the cache (as huggingface_hub
    records a missing file), so a cached commit loads again without the network.
    """
    if try_to_load_from_cache(job.repo_id, SETTINGS_FILE, job.cache_dir, commit) is _CACHED_NO_EXIST:
        return
    try:
        _check_blob(Path(_fetch(job, SETTINGS_FILE, commit)))
    except LocalEntryNotFoundError:  # offline, and not in the cache
        log.info("%s: no %s in the cache; the library's default settings apply", job.where, SETTINGS_FILE)
    except RemoteEntryNotFoundError:
        log.info("%s has no %s: the library's default settings apply", job.where, SETTINGS_FILE)
        with contextlib.suppress(RemoteEntryNotFoundError):  # this download's 404 records the absence
            hf_hub_download(job.repo_id, SETTINGS_FILE, revision=commit, cache_dir=job.cache_dir,
                            endpoint=job.endpoint, library_name="unet")  # fmt: skip


def _fetch(job: _HubJob, filename: str, revision: str) -> str:
    """The cached path of `filename` at `revision`, downloaded when needed, failing fast where the client retries."""
    download = partial(
        hf_hub_download,
        job.repo_id,
        filename,
        revision=revision,
        cache_dir=job.cache_dir,
        endpoint=job.endpoint,
        etag_timeout=job.timeout_s,
        library_name="unet",
        tqdm_class=job.watch.bar_class(),
    )
    # A commit never changes, so a cached file at a commit sha needs no network at all.
    if job.offline or _COMMIT_SHA.fullmatch(revision):
        try:
            return download(local_files_only=True)
        except LocalEntryNotFoundError:
            if job.offline:
                raise
    url = hf_hub_url(job.repo_id, filename, revision=revision, endpoint=job.endpoint)
    try:
        # One HEAD without retries: the client would retry a 5xx or a refused connection for ~23 s.
        metadata = get_hf_file_metadata(url, timeout=job.timeout_s)
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError):
        raise
    except (HfHubHTTPError, httpx2.TransportError) as error:
        try:
            path = download(local_files_only=True)
        except LocalEntryNotFoundError:
            raise error from None
        log.warning("The Hub failed (%s); using the cached %s of %s", _first_line(error), filename, job.where)
        return path
    if metadata.commit_hash is None:
        raise WeightsError(
            f"{job.endpoint} answered {url} without an X-Repo-Commit header: it is not a Hugging Face Hub "
            "endpoint; check HF_ENDPOINT"
        )
    return download()


def _list_files(job: _HubJob, revision: str) -> list[str] | None:
    """The repo's file names at `revision`, or None when they cannot be listed (offline or the Hub fails)."""
    if job.offline:
        return None
    try:
        return HfApi(endpoint=job.endpoint).list_repo_files(job.repo_id, revision=revision)
    except (HfHubHTTPError, httpx2.HTTPError) as error:
        log.warning("Could not list the files of %s@%s: %s", job.repo_id, revision, _first_line(error))
        return None


def _check_blob(path: Path) -> None:
    """Compare a cached file with the SHA-256 the Hub announced for it (the blob's name), when it announced one."""
    blob = path.resolve()
    if not _SHA256.fullmatch(blob.name):
        return  # a git sha1 ETag (small non-LFS files), or a cache without symlinks: nothing to compare with
    digest = hashlib.sha256()
    with blob.open("rb") as stream:
        for chunk in iter(partial(stream.read, 1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != blob.name:
        # A damaged blob would be served from the cache forever: remove it so the next try downloads it again.
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise WeightsError(
            f"the download of {path.name} is corrupted: its SHA-256 is {digest.hexdigest()}, the Hub announced "
            f"{blob.name}. The damaged copy was removed from the cache; try again."
        )


def _download_card(job: _HubJob, commit: str) -> str | None:
    """The repo's README.md at `commit`, or None: a missing or unreachable card never fails a load."""
    try:
        path = _while_progressing(partial(_fetch, job, CARD_FILE, commit), job)
    except (HfHubHTTPError, httpx2.HTTPError, OSError, WeightsError) as error:
        log.info("No model card for %s: %s", job.where, _first_line(error))
        return None
    return _read_card(Path(path))


def _while_progressing(task: Callable[[], T], job: _HubJob) -> T:
    """Run `task` in a daemon thread for as long as the Hub answers or brings new data: give up after
    `job.timeout_s` of neither, naming the client's last complaint."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = task()
        except Exception as error:  # handed over to the caller's thread and raised there
            outcome["error"] = error

    thread = threading.Thread(target=run, name=f"unet-hub-{next(_threads)}", daemon=True)
    watcher = _LastWarning(thread.name)
    hub_logger = logging.getLogger("huggingface_hub")
    hub_logger.addHandler(watcher)
    job.watch.restart()
    # huggingface_hub reads its body in 10 MB pieces and waits 10 s for a socket: smaller pieces show progress on a
    # slow link. The watch below judges a silence; the socket waits twice as long, so that in a stall the watch
    # speaks first (an equal wait made a stall read as a broken-off download when the socket's timeout won the race).
    tuned = {"DOWNLOAD_CHUNK_SIZE": _PROGRESS_CHUNK_BYTES, "HF_HUB_DOWNLOAD_TIMEOUT": 2 * job.timeout_s}
    saved = {name: getattr(constants, name) for name in tuned}
    try:
        for name, value in tuned.items():
            setattr(constants, name, value)
        thread.start()
        while thread.is_alive() and time.monotonic() - job.watch.last < job.timeout_s:
            thread.join(min(0.1, job.timeout_s))
    finally:
        for name, value in saved.items():
            setattr(constants, name, value)
        hub_logger.removeHandler(watcher)
    if thread.is_alive():
        # The thread cannot be killed; as a daemon it ends with its retries or with the process.
        complaint = watcher.message
        if not job.watch.furthest and complaint is None:  # not one byte arrived
            reason = f"no answer from the Hub within {job.timeout_s:g} s"
        elif complaint is not None and "Error while downloading" in complaint:
            complaint = complaint.partition(" Trying to resume")[0]
            reason = (
                f"the download broke off before the end of the file (truncated) and brought nothing new for "
                f"{job.timeout_s:g} s: {complaint}"
            )
        elif complaint is not None:
            reason = f"nothing new for {job.timeout_s:g} s; the Hub client kept retrying after: {complaint}"
        else:
            reason = f"the download stalled: nothing new arrived for {job.timeout_s:g} s"
        raise WeightsError(
            f"{reason}. Check the network and the Hub's status; on a slow link allow longer silences with "
            f"--hub-timeout or ${TIMEOUT_ENV}."
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _LastWarning(logging.Handler):
    """Keep the last warning huggingface_hub logs from one thread (it logs each retry and its cause)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(logging.WARNING)
        self.thread_name = thread_name
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        # "Retrying in 2s [Retry 2/5]." follows each cause and says nothing about it.
        if record.threadName == self.thread_name and not message.startswith("Retrying in"):
            self.message = message


def _explain(error: Exception, job: _HubJob) -> str:
    """The cause of a Hub failure, in words, with what to do."""
    if isinstance(error, LocalEntryNotFoundError):
        if job.offline:
            return (
                f"HF_HUB_OFFLINE is set and {job.where} is not in the local cache "
                f"({job.cache_dir or constants.HF_HUB_CACHE}); download it once while online, or unset HF_HUB_OFFLINE"
            )
        if isinstance(error.__cause__, (HfHubHTTPError, httpx2.HTTPError)):
            return _explain(error.__cause__, job)  # the client gave up on the Hub and found no cached copy
        return f"it is not in the local cache and the Hub did not give it: {_first_line(error)}"
    if isinstance(error, RevisionNotFoundError):
        return f"revision {job.revision!r} not found in {job.repo_id}: give an existing branch, tag or commit sha"
    if isinstance(error, RepositoryNotFoundError):
        return (
            f"repository {job.repo_id} not found (a private or gated repository answers the same: log in with "
            "`hf auth login`); check the repo id"
        )
    if isinstance(error, RemoteEntryNotFoundError):
        return f"file not found: {_first_line(error)}"
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        kind = {404: "not found", 401: "unauthorized", 403: "forbidden"}.get(
            status, "a server error" if status >= 500 else "an error"
        )
        return (
            f"the Hub answered HTTP {status} ({kind}) for {error.response.url} and no copy is in the local cache; "
            "try again later, or use a local folder"
        )
    if isinstance(error, httpx2.ConnectError):
        return (
            f"could not connect to {job.endpoint} ({error}); check the network and HF_ENDPOINT, or set "
            "HF_HUB_OFFLINE=1 to use the local cache"
        )
    if isinstance(error, httpx2.TimeoutException):
        return f"{job.endpoint} did not answer in time ({error}); check the network or try again later"
    if isinstance(error, httpx2.RemoteProtocolError):
        return f"the download broke off before the end of the file (truncated: {error}); try again"
    return f"the download failed: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
