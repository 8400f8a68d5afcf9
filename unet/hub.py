"""Weights from a local folder or the Hugging Face Hub: pinned, safetensors only, strict, and honest when they fail.

A weights folder is what `UNet.save_pretrained` writes: `config.json` (the constructor arguments) beside
`model.safetensors`. `load_model` takes such a folder or a Hub repo id `user/name[@revision]`; every failure becomes
a `WeightsError` that says what happened and what to do. Every CLI chooses weights the same way
(`--weights`, else `$UNET_WEIGHTS`, else the bundled street-scene model `checkpoints/camvid/`); the app serves
several (`unet.catalog`).

    python -m unet.hub push --repo-id USER/NAME [--weights FOLDER] [--eval-json PATH] [--private] [--dry-run]

uploads a checkpoint folder with a generated model card (`build_model_card`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import (
    EvalResult,
    HfApi,
    ModelCardData,
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
from safetensors import SafetensorError
from safetensors.torch import load_file

from unet.architectures import ARCHITECTURE_KEY, constructor_arguments, model_class
from unet.metrics import score_table
from unet.model import UNet
from unet.settings import SETTINGS_FILE, TTA_HELP, InferenceSettings

log = logging.getLogger("unet.hub")

BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "checkpoints" / "camvid"
WEIGHTS_ENV = "UNET_WEIGHTS"
TIMEOUT_ENV = "UNET_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 10.0
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# What a push uploads from a checkpoint folder, beside the generated README.md; never pickles such as resume state.
UPLOAD_FILES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    SETTINGS_FILE,
    "training_args.json",
    "val_scores.json",
    "history.json",
    "eval.json",
    "curves.png",
)

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
) -> tuple[UNet, WeightsInfo]:
    """Load a U-Net in eval mode from a weights folder or a Hub repo, strictly and from safetensors only.

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
        The model and where it came from (`WeightsInfo`, with the resolved commit for a Hub load).

    Raises:
        WeightsError: When anything fails; the message names the cause and what to do.
    """
    folder = Path(source).expanduser()
    if isinstance(source, Path) or folder.is_dir():
        if revision is not None:
            raise WeightsError(f"revision={revision!r} applies to Hub repos, but {source} is a local folder")
        try:
            return _load_local(folder, str(source))
        except WeightsError as error:
            raise WeightsError(f"Could not load folder {folder}: {error}") from error
    repo_id, _, pinned = source.partition("@")
    if not _is_repo_id(repo_id) or (pinned == "" and "@" in source):
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
        return _load_from_hub(job, source)
    except WeightsError as error:
        raise WeightsError(f"Could not load {job.where} from {job.endpoint}: {error}") from error


def _is_repo_id(text: str) -> bool:
    """True for a valid `user/name` (huggingface_hub's rules)."""
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return "/" in text


def _load_local(folder: Path, source: str) -> tuple[UNet, WeightsInfo]:
    """Load a weights folder on disk."""
    if not folder.is_dir():
        raise WeightsError("it does not exist")
    files = sorted(path.name for path in folder.iterdir() if path.is_file())
    if CONFIG_FILE not in files or WEIGHTS_FILE not in files:
        raise WeightsError(_missing_files_message("the folder", files, WEIGHTS_FILE))
    model = _build_model(folder / CONFIG_FILE, folder / WEIGHTS_FILE)
    settings = _read_settings(folder / SETTINGS_FILE)
    log.info("Loaded weights from local folder %s", folder)
    return model, WeightsInfo(source=source, folder=folder, card=_read_card(folder / CARD_FILE), settings=settings)


def _read_settings(path: Path) -> InferenceSettings:
    """The folder's inference settings; a broken file fails the load as broken weights would."""
    try:
        return InferenceSettings.from_file(path)
    except ValueError as error:
        raise WeightsError(f"{error}; fix or delete it (a folder without one uses the library's defaults)") from error


def _build_model(config_path: Path, weights_path: Path) -> UNet:
    """`UNet(**config)` with the safetensors weights loaded strictly, in eval mode."""
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
        self.received = 0
        self.furthest: dict[str, int] = {}  # per file: the most bytes of it a download has reached

    def restart(self) -> None:
        with self.lock:
            self.last = time.monotonic()

    def reached(self, name: str, position: int) -> None:
        with self.lock:
            furthest = self.furthest.get(name, 0)
            if position > furthest:
                self.received += position - furthest
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


def _load_from_hub(job: _HubJob, source: str) -> tuple[UNet, WeightsInfo]:
    """Download config and weights (given up after `job.timeout_s` of silence), then build the model from the cache."""
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
        config_path, weights_path = _while_progressing(partial(_download_weights, job), job)
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as error:
        raise WeightsError(_explain(error, job)) from error
    commit = config_path.parent.name  # the cache keeps files under snapshots/<commit sha>/
    model = _build_model(config_path, weights_path)
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
    log.info("Loaded weights %s", info.describe())
    return model, info


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
    # slow link, and a socket silent for the timeout is a stall.
    tuned = {"DOWNLOAD_CHUNK_SIZE": _PROGRESS_CHUNK_BYTES, "HF_HUB_DOWNLOAD_TIMEOUT": job.timeout_s}
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
        if job.watch.received == 0 and complaint is None:
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


# ----------------------------------------------------------------------------------------------------------------
# Model card and push


def build_model_card(
    folder: str | Path,
    eval_json: dict | None = None,
    repo_id: str | None = None,
    notes: str | None = None,
    license: str = "mit",
) -> str:
    """The README.md model card of a checkpoint folder: YAML metadata, then how it was trained, scored and loaded.

    Args:
        folder: A checkpoint folder (config.json, model.safetensors; training_args.json, val_scores.json,
            history.json, eval.json and curves.png are used when present).
        eval_json: The evaluate CLI's JSON; default the folder's eval.json. The scores come only from here.
        repo_id: The Hub repo the card is for, `USER/NAME`; a placeholder when None.
        notes: Markdown placed after the intended use: what the training data is, what the model can and cannot be
            expected to segment, the commands that rebuild it. A quoted paragraph (`> ...`) that opens it is the
            card's one-line summary and goes right under the title, where the demo reads it
            (`unet.demo.card_summary`).
        license: The weights' licence, a Hub licence id: "mit" like the code, or the training data's where it
            binds the weights (CamVid's "cc-by-nc-4.0").

    Returns:
        The card's text.
    """
    folder = Path(folder)
    repo_id = repo_id or "USER/NAME"
    config = _read_json(folder / CONFIG_FILE) or {}
    training = _read_json(folder / "training_args.json")
    scores = eval_json if eval_json is not None else _read_json(folder / "eval.json")
    datasets = sorted({str(Path(training["data"]).name)} if training and training.get("data") else set())
    if scores:
        datasets = sorted({*datasets, scores["dataset"]})
    metadata = ModelCardData(
        library_name="unet",
        license=license,
        pipeline_tag="image-segmentation",
        tags=["unet", "semantic-segmentation", "pytorch", "safetensors"],
        datasets=datasets or None,
        model_name=repo_id if scores else None,
        eval_results=_eval_results(scores) if scores else None,
    )
    name = repo_id.split("/")[-1]
    binary = config.get("num_classes", 1) == 1
    task = "binary (foreground / background)" if binary else f"{config.get('num_classes')}-class"
    network = "A U-Net (Ronneberger et al., 2015)"
    if config.get(ARCHITECTURE_KEY) == "lite-unet":
        network += " whose contracting path is EfficientNet-Lite0 (Tan and Le, 2019), pretrained on ImageNet,"
    summary, notes = _split_summary(notes or "")
    sections = [
        f"# {name}",
        *([summary] if summary else []),
        f"{network} for {task} semantic segmentation of RGB images of any size, "
        f"{_parameter_count(config)} parameters, trained with this project's `unet` package. "
        f"The weights are `{WEIGHTS_FILE}`; `{CONFIG_FILE}` holds the architecture.",
        "## Intended use\n\n"
        "- For: segmenting images like those it was trained and evaluated on (below); demos, teaching, and a "
        "baseline to compare other models with.\n"
        "- Not for: medical, safety-critical or surveillance decisions, identifying people, or images unlike its "
        "training data: the scores below say nothing about other kinds of pictures.",
        *([notes] if notes else []),
        _training_section(folder, training),
        _evaluation_section(scores),
        "## Architecture\n\n" + _table({key: config[key] for key in sorted(config)}, "argument"),
        "## How to load\n\n"
        "Pin the commit you tested (the repository's *Files and versions* tab lists the shas):\n\n"
        f'```python\nimport unet\n\nmodel, info = unet.load_model("{repo_id}@<commit sha>")  # eval mode\n```\n\n'
        f"or `--weights {repo_id}@<commit sha>` on any of the package's commands, or `{WEIGHTS_ENV}` for the demo. "
        f"Only `{WEIGHTS_FILE}` is read (never pickles), and it must match `{CONFIG_FILE}` exactly.",
    ]
    return f"---\n{metadata.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def _split_summary(notes: str) -> tuple[str | None, str]:
    """The quoted paragraph that opens `notes` (the card's summary, or None), and the rest of the notes."""
    first, _, rest = notes.strip().partition("\n\n")
    if first and all(line.startswith(">") for line in first.splitlines()):
        return first, rest.strip()
    return None, notes.strip()


def _eval_results(scores: dict) -> list[EvalResult]:
    """model-index entries from the evaluate CLI's JSON: headline, mean and per-class IoU and Dice."""
    try:
        metrics = [
            ("iou", "IoU", scores["headline"]["iou"]),
            ("dice", "Dice", scores["headline"]["dice"]),
            ("mean_iou", "mean IoU", scores["iou"]["mean"]),
            ("mean_dice", "mean Dice", scores["dice"]["mean"]),
        ]
        for name, iou in scores["iou"]["per_class"].items():
            metrics += [(f"iou_{name}", f"IoU ({name})", iou)]
            metrics += [(f"dice_{name}", f"Dice ({name})", scores["dice"]["per_class"][name])]
        dataset = scores["dataset"]
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"the evaluation JSON lacks {error} (expected the evaluate CLI's output: dataset, headline, iou, dice)"
        ) from error
    return [
        EvalResult(
            task_type="image-segmentation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="test",
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=value,
        )
        for metric_type, metric_name, value in metrics
        if value is not None  # a class absent from the test set has no score
    ]


def _training_section(folder: Path, training: dict | None) -> str:
    lines = ["## Training"]
    recipe = _read_json(Path(training["recipe"])) if training and training.get("recipe") else None
    if recipe is not None:
        # The recipe's values are the ones that make this model; the other flags kept their defaults.
        chosen = {key: training.get(key, value) for key, value in recipe.items() if not key.startswith("_")}
        chosen["class_weights"] = training.get("class_weights")
        lines.append(
            f"Trained by `python -m unet.train --recipe {training['recipe']}` with these values (every other "
            "argument at its default; all of them are in `training_args.json`):"
        )
        lines.append(_table({key: chosen[key] for key in sorted(chosen)}, "argument"))
    elif training:
        lines.append("Trained by `python -m unet.train` with these arguments (`training_args.json`):")
        lines.append(_table({key: training[key] for key in sorted(training)}, "argument"))
    else:
        lines.append("This folder has no `training_args.json`: how it was trained is not recorded.")
    history = _read_json(folder / "history.json")
    if history:
        best = (_read_json(folder / "val_scores.json") or {}).get("epoch")
        chosen = f"; these weights are epoch {best}'s, the best by validation IoU" if best else ""
        lines.append(
            f"{len(history)} epochs took {sum(record['seconds'] for record in history) / 60:.1f} minutes of "
            f"training and validation (the sum of the epoch times in `history.json`){chosen}."
        )
    if (folder / "curves.png").is_file():
        lines.append("![Training curves: loss and validation scores per epoch](curves.png)")
    return "\n\n".join(lines)


def recorded_tta(scores: dict) -> str:
    """The test-time augmentation an eval.json records (`TTA_VIEWS`); those written before --tta have "flip": bool."""
    return scores.get("tta", "flip" if scores.get("flip") else "none")


def _evaluation_section(scores: dict | None) -> str:
    if not scores:
        return "## Evaluation\n\nNot evaluated yet: run the evaluate CLI and push again with `--eval-json`."
    tta = recorded_tta(scores)
    augmentation = (
        "without test-time augmentation" if tta == "none" else f"test-time augmentation `--tta {tta}`: {TTA_HELP[tta]}"
    )
    min_confidence = scores.get("min_confidence") or 0
    regions = (
        f"predicted regions of mean probability below {min_confidence} dropped (`--min-confidence {min_confidence}`)"
        if min_confidence > 0
        else "every predicted region kept"
    )
    binary = len(scores["iou"]["per_class"]) == 2
    threshold = f"threshold {scores.get('threshold', '?')}, " if binary else ""
    header = (
        f"## Evaluation\n\nOn `{scores['dataset']}` ({scores.get('num_images', '?')} images, "
        f"`{scores.get('images', '?')}`), {threshold}{augmentation}, {regions}, "
        f"evaluated {scores.get('date', '?')} by the evaluate CLI (`eval.json`):"
    )
    headline = f"Headline: IoU {scores['headline']['iou']:.4f}, Dice {scores['headline']['dice']:.4f}."
    accuracy = scores.get("accuracy")
    if accuracy and len(scores["iou"]["per_class"]) > 2:
        headline = (
            f"Headline, as the multi-class literature reports it: mIoU {scores['headline']['iou']:.4f} (over the "
            f"classes, unlabelled pixels left out), global pixel accuracy {accuracy['global']:.4f}, class-average "
            f"accuracy {accuracy['class_average']:.4f}; mean Dice {scores['headline']['dice']:.4f}."
        )
    return "\n\n".join([header, score_table(scores), headline])


def _table(values: dict, key_name: str) -> str:
    rows = [f"| {key_name} | value |", "|---|---|"]
    rows += [f"| {key} | `{json.dumps(value, default=str)}` |" for key, value in values.items()]
    return "\n".join(rows)


def _parameter_count(config: dict) -> str:
    """The number of trainable weights of the UNet `config` describes ("an unknown number of" without config)."""
    if not config:
        return "an unknown number of"
    arguments = {key: value for key, value in config.items() if key != ARCHITECTURE_KEY}
    return f"{sum(parameter.numel() for parameter in model_class(config)(**arguments).parameters()):,}"


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def prepare_upload(
    folder: str | Path,
    repo_id: str,
    out: str | Path,
    eval_json: dict | None = None,
    notes: str | None = None,
    license: str = "mit",
) -> list[Path]:
    """Write into `out` exactly what a push uploads: the checkpoint's files and a generated README.md.

    Args:
        folder: The checkpoint folder; it must load (strictly) with `load_model`.
        repo_id: The Hub repo, `USER/NAME`.
        out: The folder to write; it may hold only files a push writes (earlier dry runs).
        eval_json: The evaluate CLI's JSON; default the folder's eval.json. Written as eval.json when given.
        notes: Markdown for the card (`build_model_card`).
        license: The weights' Hub licence id (`build_model_card`).

    Returns:
        The files written, sorted.
    """
    folder, out = Path(folder), Path(out)
    load_model(folder)  # never upload weights that do not load
    names = [name for name in UPLOAD_FILES if (folder / name).is_file()]
    if eval_json is not None and "eval.json" not in names:
        names.append("eval.json")
    stale = sorted(path.name for path in out.iterdir() if path.name not in {*names, CARD_FILE}) if out.is_dir() else []
    if stale:
        raise ValueError(f"{out} holds files a push would not upload ({', '.join(stale)}): give an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "eval.json" and eval_json is not None:
            (out / name).write_text(json.dumps(eval_json, indent=1) + "\n")
        else:
            shutil.copyfile(folder / name, out / name)
    (out / CARD_FILE).write_text(build_model_card(folder, eval_json, repo_id, notes, license), encoding="utf-8")
    return sorted(out / name for name in [*names, CARD_FILE])


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    eval_json: dict | None = None,
    notes: str | None = None,
    license: str = "mit",
) -> str:
    """Upload a checkpoint folder and its model card to the Hub; return the new commit's sha.

    Args:
        folder: The checkpoint folder.
        repo_id: The Hub repo, `USER/NAME`; created when missing (private when `private`).
        private: Create the repo private (an existing repo keeps its visibility).
        eval_json: The evaluate CLI's JSON; default the folder's eval.json.
        notes: Markdown for the card (`build_model_card`).
        license: The weights' Hub licence id (`build_model_card`).

    Returns:
        The sha of the commit that holds the upload.
    """
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="unet-hub-") as staging:
        prepare_upload(folder, repo_id, staging, eval_json, notes, license)
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=staging, commit_message=f"Upload U-Net weights from {Path(folder).name}"
        )
    return commit.oid


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unet.hub", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    push_parser = commands.add_parser("push", help="upload a checkpoint folder with a generated model card")
    push_parser.add_argument("--repo-id", required=True, metavar="USER/NAME", help="the Hub repo to upload to")
    push_parser.add_argument(
        "--weights",
        type=Path,
        default=BUNDLED_WEIGHTS,
        metavar="FOLDER",
        help=f"checkpoint folder to upload (default: the bundled checkpoints/{BUNDLED_WEIGHTS.name}/)",
    )
    push_parser.add_argument(
        "--eval-json",
        type=Path,
        metavar="PATH",
        help="the evaluate CLI's JSON for the card's scores (default: the folder's eval.json)",
    )
    push_parser.add_argument(
        "--notes",
        type=Path,
        metavar="PATH",
        help="a Markdown file for the card: the training data, what the model is and is not for, how to rebuild it",
    )
    push_parser.add_argument(
        "--license",
        default="mit",
        help="the weights' licence as a Hub licence id (default mit; cc-by-nc-4.0 for weights trained on CamVid)",
    )
    push_parser.add_argument("--private", action="store_true", help="create the repo private")
    push_parser.add_argument("--dry-run", action="store_true", help="write what would be uploaded; upload nothing")
    push_parser.add_argument(
        "--out", type=Path, metavar="DIR", help="with --dry-run: the folder to write (default: a new temporary folder)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.out is not None and not args.dry_run:
        parser.error("--out goes with --dry-run")
    if not _is_repo_id(args.repo_id):
        parser.error(f"--repo-id must look like USER/NAME, got {args.repo_id!r}")
    try:
        eval_json = json.loads(args.eval_json.read_text()) if args.eval_json else None
        notes = args.notes.read_text(encoding="utf-8") if args.notes else None
        if args.dry_run:
            out = args.out or Path(tempfile.mkdtemp(prefix="unet-hub-dry-run-"))
            files = prepare_upload(args.weights, args.repo_id, out, eval_json, notes, args.license)
            print(f"Dry run: would upload to {args.repo_id} the {len(files)} files in {out}:")
            print("\n".join(f"  {path.name}" for path in files))
        else:
            commit = push(
                args.weights, args.repo_id, private=args.private, eval_json=eval_json, notes=notes, license=args.license
            )
            print(f"Uploaded to {constants.ENDPOINT}/{args.repo_id} at commit {commit}.")
            print(f'Load it with unet.load_model("{args.repo_id}@{commit}") or --weights {args.repo_id}@{commit}')
    except (WeightsError, ValueError, OSError, httpx2.HTTPError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
