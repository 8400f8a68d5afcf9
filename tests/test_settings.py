"""Inference settings that travel with the weights: the file, a local folder and a Hub repo carrying it, the
commands taking it as their defaults (flags still win), training and a push writing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_server import StandInHub

import unet.evaluate
import unet.predict
from unet.hub import WeightsError, load_model
from unet.model import UNet
from unet.publish import prepare_upload
from unet.settings import SETTINGS_FILE, InferenceSettings


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    UNet(base_width=4, depth=2).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_file_round_trip_and_defaults(tmp_path: Path) -> None:
    assert InferenceSettings.from_file(tmp_path / SETTINGS_FILE) == InferenceSettings()  # no file: the defaults
    chosen = InferenceSettings(threshold=0.4, tta="hflip", min_confidence=0.6, max_side=640)
    assert InferenceSettings.from_file(chosen.write(tmp_path)) == chosen


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"tta": "upside-down"}', "tta must be one of"),
        ('{"min_confidence": 1.5}', r"min_confidence must lie in \[0, 1\]"),
        ('{"max_side": 0}', "max_side is a number of pixels"),
        ('{"threshold": 0.5, "colour": "red"}', "may hold only"),
        ("[0.5]", "may hold only"),
        ("{", "not readable JSON"),
    ],
)
def test_bad_files_are_refused_by_name(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / SETTINGS_FILE).write_text(content)
    with pytest.raises(ValueError, match=match):
        InferenceSettings.from_file(tmp_path / SETTINGS_FILE)


def test_a_folder_loads_with_its_settings_and_a_broken_file_fails_the_load(folder: Path) -> None:
    assert load_model(folder)[1].settings == InferenceSettings()
    InferenceSettings(tta="flip", min_confidence=0.7).write(folder)
    assert load_model(folder)[1].settings == InferenceSettings(tta="flip", min_confidence=0.7)
    (folder / SETTINGS_FILE).write_text('{"tta": 3}')
    with pytest.raises(WeightsError, match=r"inference\.json: tta must be one of"):
        load_model(folder)


def test_a_hub_repo_brings_its_settings_and_one_without_gets_the_defaults(folder: Path, tmp_path: Path) -> None:
    with StandInHub(tmp_path / "hub") as server:
        server.add_commit("user/plain", folder)
        InferenceSettings(tta="hflip").write(folder)
        server.add_commit("user/tuned", folder)
        for repo, expected in (("user/plain", InferenceSettings()), ("user/tuned", InferenceSettings(tta="hflip"))):
            _, info = load_model(repo, endpoint=server.url, cache_dir=tmp_path / "cache")
            assert info.settings == expected


def test_commands_take_the_settings_as_defaults_and_flags_win(folder: Path, tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    from PIL import Image

    Image.new("RGB", (20, 16), (90, 10, 200)).save(images / "a.png")
    Image.new("L", (20, 16), 1).save(masks / "a.png")
    InferenceSettings(threshold=0.3, tta="hflip", min_confidence=0.2, max_side=300).write(folder)
    argv = ["--weights", str(folder), "--images", str(images), "--masks", str(masks)]
    unet.evaluate.main([*argv, "--out", str(tmp_path / "a")])
    report = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert (report["threshold"], report["tta"], report["min_confidence"], report["max_side"]) == (
        0.3,
        "hflip",
        0.2,
        300,
    )
    unet.evaluate.main([*argv, "--out", str(tmp_path / "b"), "--tta", "none", "--threshold", "0.6"])
    report = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert (report["threshold"], report["tta"], report["min_confidence"]) == (0.6, "none", 0.2)
    with pytest.raises(SystemExit) as exit_info:
        unet.predict.main(["--weights", str(folder), str(images / "a.png"), "--out", str(tmp_path / "p")])
    assert exit_info.value.code == 0 and (tmp_path / "p" / "a.png").is_file()


def test_hflip_averages_the_image_and_its_mirror(folder: Path) -> None:
    """The average of a picture and its mirror image is the same for the mirrored picture, mirrored back."""
    import torch
    from PIL import Image, ImageOps

    from unet.predict import Predictor

    predictor = Predictor(load_model(folder)[0])
    image = Image.effect_noise((24, 16), 60).convert("RGB")
    averaged = predictor.probabilities(image, "hflip")
    torch.testing.assert_close(predictor.probabilities(ImageOps.mirror(image), "hflip"), averaged.flip(-1))
    assert not torch.allclose(averaged, predictor.probabilities(image, "none"))


def test_a_push_uploads_the_settings(folder: Path, tmp_path: Path) -> None:
    InferenceSettings(min_confidence=0.5).write(folder)
    written = prepare_upload(folder, "user/name", tmp_path / "out")
    assert SETTINGS_FILE in [path.name for path in written]
    assert load_model(tmp_path / "out")[1].settings.min_confidence == 0.5
