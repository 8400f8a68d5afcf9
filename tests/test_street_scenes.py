"""A street-scene model end to end on a tiny CamVid stand-in: trained by a recipe file through `unet.train`,
scored by `unet.evaluate --camvid` with the literature's figures, and drawn and described without a background
class (CamVid's class 0 is the sky)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from camvid_standin import write_camvid
from PIL import Image

import unet.evaluate
import unet.train
from unet import load_model
from unet.architectures import save_model
from unet.datasets import CAMVID_CLASSES, CAMVID_COLORS
from unet.demo import segment
from unet.labels import IGNORE_INDEX, ModelLabels
from unet.lite_unet import LiteUNet
from unet.postprocess import drop_unsure_regions
from unet.predict import Predictor
from unet.visualize import color_table, error_map, overlay

pytestmark = pytest.mark.usefixtures("one_thread")

# The shipped recipe's choices at a tiny scale; the encoder starts from ImageNet as the shipped model's does.
TINY_RECIPE = {
    "architecture": "lite-unet",
    "pretrained_encoder": True,
    "augmentation": "street",
    "rescale": "0.9,1.2",
    "jpeg": 0.3,
    "passes": 4,
    "size_schedule": "32:12",
    "batch_size": 4,
    "lr": 0.003,
    "class_weights": "median-frequency",
    "amp": "none",
    "workers": 0,
    "quiet": True,
    "inference": {"tta": "hflip"},
}


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_camvid(tmp_path_factory.mktemp("data") / "camvid")


@pytest.fixture(scope="module")
def trained(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the tiny recipe (about 20 s); the recipe names the data, the command line the run folder."""
    recipe = tmp_path_factory.mktemp("recipes") / "tiny.json"
    recipe.write_text(json.dumps({"_about": "a note, not a flag", "data": str(camvid), **TINY_RECIPE}))
    out = tmp_path_factory.mktemp("runs") / "run"
    unet.train.main(["--recipe", str(recipe), "--out", str(out)])
    return out


def test_recipe_trains_a_model_that_learns_the_scenes(trained: Path) -> None:
    history = json.loads((trained / "history.json").read_text())
    assert len(history) == 12
    assert history[0]["val_iou"] < 0.6 < max(record["val_iou"] for record in history)
    scores = json.loads((trained / "best" / "val_scores.json").read_text())
    present = {"sky", "building", "road", "car"}
    assert {name for name, value in scores["iou"]["per_class"].items() if value is not None} == present
    assert scores["accuracy"]["global"] > 0.8


def test_training_args_record_the_recipe_and_the_class_weights(trained: Path) -> None:
    arguments = json.loads((trained / "best" / "training_args.json").read_text())
    assert arguments["recipe"].endswith("tiny.json") and arguments["passes"] == 4
    assert arguments["size_schedule"] == [[32, 12]] and arguments["rescale"] == [0.9, 1.2]
    weights = arguments["class_weights"]
    assert len(weights) == 11 and weights[CAMVID_CLASSES.index("pole")] == 0  # never in the stand-in
    # The car covers the fewest pixels of the images it is in: it weighs most, the road less than 1.
    assert max(weights) == weights[CAMVID_CLASSES.index("car")] and weights[CAMVID_CLASSES.index("road")] < 1


def test_saved_model_carries_camvids_classes_and_no_background(trained: Path) -> None:
    model, info = load_model(trained / "best")
    assert info.settings.tta == "hflip"  # the recipe's inference settings, saved beside the weights
    assert isinstance(model, LiteUNet) and model.class_names == list(CAMVID_CLASSES)
    assert model.class_colors == list(CAMVID_COLORS) and model.background_class is None


def test_flags_beside_a_recipe_win(camvid: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"data": str(camvid), "batch_size": 8, "size_schedule": "64:3"}))
    args = unet.train.parse_args(["--recipe", str(recipe), "--out", "o", "--batch-size", "2"])
    assert args.batch_size == 2 and args.size_schedule == [(64, 3)] and args.data == str(camvid)
    recipe.write_text(json.dumps({"data": str(camvid), "batch_sise": 8}))
    with pytest.raises(SystemExit):
        unet.train.parse_args(["--recipe", str(recipe), "--out", "o"])


def test_evaluate_scores_a_camvid_split_as_the_literature_does(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    camvid = Path(json.loads((trained / "best" / "training_args.json").read_text())["data"])
    unet.evaluate.main(["--weights", str(trained / "best"), "--camvid", str(camvid), "--split", "test",
                        "--out", str(tmp_path)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "global pixel accuracy" in printed and "class-average accuracy" in printed
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["num_images"] == 2 and report["class_names"] == list(CAMVID_CLASSES)
    iou = report["iou"]["per_class"]
    assert iou["pole"] is None  # in neither the truth nor (by now) the prediction: left out of the mean
    present = [value for value in iou.values() if value is not None]
    assert report["headline"]["iou"] == pytest.approx(np.mean(present))
    assert 0 < report["accuracy"]["class_average"] <= 1 and report["accuracy"]["global"] > 0.8
    assert (tmp_path / "cases.png").is_file()


def test_settings_chosen_on_val_become_the_models_defaults(trained: Path, tmp_path: Path) -> None:
    camvid = Path(json.loads((trained / "best" / "training_args.json").read_text())["data"])
    folder = shutil.copytree(trained / "best", tmp_path / "weights")
    with pytest.raises(SystemExit, match="use the val split, never the test split"):
        unet.evaluate.main(["--weights", str(folder), "--camvid", str(camvid), "--split", "test", "--save-settings"])
    unet.evaluate.main(["--weights", str(folder), "--camvid", str(camvid), "--split", "val", "--tta", "hflip",
                        "--min-confidence", "0.3", "--save-settings"])  # fmt: skip
    settings = load_model(folder)[1].settings
    assert (settings.tta, settings.min_confidence) == ("hflip", 0.3)


def test_evaluate_asks_for_one_kind_of_data(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        unet.evaluate.main(["--images", "x"])
    assert "give --images and --masks, or --camvid" in capsys.readouterr().err


def tiny_street_model(folder: Path) -> Path:
    """An untrained 11-class LiteUNet with CamVid's classes whose logits favour the sky a little everywhere."""
    torch.manual_seed(0)
    model = LiteUNet(num_classes=11, decoder_widths=(8, 8, 8, 8), class_names=list(CAMVID_CLASSES),
                     class_colors=list(CAMVID_COLORS), background_class=None).eval()  # fmt: skip
    save_model(model, folder)
    return folder


def test_demo_never_calls_the_sky_background(tmp_path: Path, camvid: Path) -> None:
    model, _ = load_model(tiny_street_model(tmp_path / "model"))
    image = camvid / "val" / "0001TP_000000.png"
    result = segment(Predictor(model), str(image), downloads=tmp_path / "runs")
    assert result.scores["foreground_share"] is None
    shares = result.scores["class_shares"]
    assert sum(shares.values()) == pytest.approx(1.0) and set(shares) <= set(CAMVID_CLASSES)
    assert "Foreground" not in result.table and f"{next(iter(shares))} **" in result.table
    # Every pixel is drawn: no class is left as the bare photograph.
    photo = np.asarray(Image.open(image).convert("RGB"))
    assert (np.asarray(result.overlay) != photo).any(axis=-1).mean() > 0.9


def test_dropped_regions_become_unlabelled_without_a_background() -> None:
    mask = np.array([[0, 0, 3], [0, 0, 3]], np.uint8)
    probabilities = np.zeros((4, 2, 3), np.float32)
    probabilities[0, :, :2], probabilities[3, :, 2] = 0.9, 0.4  # sure of the sky, unsure of the road
    cleaned = drop_unsure_regions(mask, probabilities, 0.5, background_class=None)
    assert (cleaned == [[0, 0, IGNORE_INDEX], [0, 0, IGNORE_INDEX]]).all()  # the sky is kept; not made "background"
    assert (drop_unsure_regions(mask, probabilities, 0.5) == [[0, 0, 0], [0, 0, 0]]).all()  # with background 0


def test_pictures_use_the_models_colours_and_draw_class_zero() -> None:
    table = color_table(CAMVID_COLORS)
    assert tuple(table[0]) == (128, 128, 128) and tuple(table[IGNORE_INDEX]) == (0, 0, 0)  # grey is the sky's
    image = Image.new("RGB", (4, 2), (255, 255, 255))
    mask = np.array([[0, 0, 3, 3], [0, 0, 3, 3]], np.uint8)
    drawn = np.asarray(overlay(image, mask, 1.0, CAMVID_COLORS, background_class=None))
    assert tuple(drawn[0, 0]) == (128, 128, 128) and tuple(drawn[0, 3]) == (128, 64, 128)
    assert tuple(np.asarray(overlay(image, mask, 1.0, CAMVID_COLORS))[0, 0]) == (255, 255, 255)  # 0 = background
    # Without a background the sky predicted as sky is right, the road predicted as sky wrong.
    truth = np.array([[0, 0, 3, 3], [0, 0, 3, IGNORE_INDEX]], np.uint8)
    pred = np.array([[0, 0, 0, 3], [0, 0, 0, 3]], np.uint8)
    errors = np.asarray(error_map(pred, truth, background_class=None))
    assert tuple(errors[0, 0]) == (0, 158, 115) and tuple(errors[0, 2]) == (213, 94, 0)


def test_push_dry_run_writes_a_card_for_the_street_model(trained: Path, tmp_path: Path) -> None:
    from unet.publish import main as publish_main

    camvid = Path(json.loads((trained / "best" / "training_args.json").read_text())["data"])
    unet.evaluate.main(["--weights", str(trained / "best"), "--camvid", str(camvid), "--out", str(tmp_path / "e")])
    notes = tmp_path / "notes.md"
    notes.write_text("## Training data\n\nCamVid, for research and non-commercial use only.\n")
    publish_main(["--repo-id", "u/camvid", "--weights", str(trained / "best"), "--eval-json",
              str(tmp_path / "e" / "eval.json"), "--notes", str(notes), "--license", "cc-by-nc-4.0", "--dry-run",
              "--out", str(tmp_path / "card")])  # fmt: skip
    card = (tmp_path / "card" / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "EfficientNet-Lite0" in card and "non-commercial" in card
    assert "global pixel accuracy" in card and "mIoU" in card
    assert load_model(tmp_path / "card")[0].class_names == list(CAMVID_CLASSES)  # the folder loads as it is


def test_each_model_gets_its_own_examples(tmp_path: Path) -> None:
    from unet.describe import example_pairs, examples_folder
    from unet.hub import WeightsInfo
    from unet.model import UNet
    from unet.preprocessing import load_mask

    examples = Path(__file__).resolve().parent.parent / "examples"
    street = LiteUNet(num_classes=11, decoder_widths=(8, 8, 8, 8))
    bundled = WeightsInfo(source="checkpoints/camvid", folder=Path("checkpoints/camvid"))
    assert examples_folder(examples, ModelLabels.of(street), bundled) == examples / "camvid"
    elsewhere = WeightsInfo(source="mine", folder=tmp_path)
    assert examples_folder(examples, ModelLabels.of(street), elsewhere) is None  # no clip art for a street model
    assert examples_folder(examples, ModelLabels.of(UNet(base_width=4, depth=2)), elsewhere) == examples / "composites"
    pairs = example_pairs(examples / "camvid")
    assert len(pairs) == 8
    for image, mask in pairs:
        with Image.open(image) as picture:
            assert picture.size == (480, 360)
            assert load_mask(mask, num_labels=11).shape == (360, 480)  # void is the ignore index


def test_the_class_legend_names_every_class_in_its_colour() -> None:
    from unet.describe import class_legend_html

    street = LiteUNet(num_classes=11, decoder_widths=(8, 8, 8, 8), class_names=list(CAMVID_CLASSES),
                      class_colors=list(CAMVID_COLORS))  # fmt: skip
    legend = class_legend_html(ModelLabels.of(street))
    assert legend.count("background:#") == 11 and "background:#804080" in legend  # the road's (128, 64, 128)
    assert "sign/symbol" in legend and "sky" in legend


def test_the_page_says_what_the_model_segments() -> None:
    from unet.describe import model_summary
    from unet.model import UNet

    street = LiteUNet(num_classes=11, decoder_widths=(8, 8, 8, 8), class_names=list(CAMVID_CLASSES))
    assert model_summary(ModelLabels.of(street)) == (
        "This model labels every pixel as one of 11 classes: sky, building, pole, road, pavement, tree, "
        "sign/symbol, fence, car, pedestrian, bicyclist."
    )
    assert (
        model_summary(ModelLabels.of(UNet(base_width=4, depth=2)))
        == "This model finds the foreground (one class against the background)."
    )


def test_the_error_legend_speaks_of_classes_without_a_background() -> None:
    from unet.describe import error_legend_html
    from unet.visualize import error_legend

    assert [label for label, _ in error_legend(None)] == ["right class", "wrong class", "left unlabelled", "ignored"]
    assert [label for label, _ in error_legend()][:3] == ["true positive", "false positive", "false negative"]
    assert "true negatives" not in error_legend_html(None) and "true negatives" in error_legend_html()
