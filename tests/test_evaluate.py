"""The evaluate CLI on a fixture folder: scores counted by hand, the JSON, CSV and picture it writes, and its errors."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet.datasets import PairedFolder
from unet.evaluate import (
    ImageScore,
    cases_picture,
    error_kinds,
    evaluate,
    group_scores,
    main,
    pick_cases,
    write_report,
)
from unet.labels import IGNORE_INDEX
from unet.model import UNet
from unet.predict import Predictor
from unet.visualize import legend_image, side_by_side

# name: (width, height, foreground box (left, top, right, bottom), ignored rows (top, bottom) or None)
FIXTURE = {
    "a": (30, 20, (5, 4, 15, 10), None),  # 600 pixels, 10 x 6 = 60 foreground
    "b": (16, 24, (4, 6, 12, 18), None),  # 384 pixels, 8 x 12 = 96 foreground
    "c": (16, 16, (0, 0, 4, 4), (12, 16)),  # 256 pixels, 64 ignored, 192 labelled, 16 foreground
    "d": (12, 12, None, None),  # 144 pixels, no foreground
}
LABELLED = {"a": 600, "b": 384, "c": 192, "d": 144}
FOREGROUND = {"a": 60, "b": 96, "c": 16, "d": 0}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """`data/images/*.png` (noise) and `data/masks/*.png` (0/1 boxes, 255 ignored rows), as FIXTURE draws them."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, (width, height, box, ignored) in FIXTURE.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        mask = np.zeros((height, width), dtype=np.uint8)
        if box is not None:
            left, top, right, bottom = box
            mask[top:bottom, left:right] = 1
        if ignored is not None:
            mask[ignored[0] : ignored[1]] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def constant_model(logit: float) -> UNet:
    """A binary U-Net whose every output logit is `logit`: all weights zero, the head's bias `logit`."""
    model = UNet(base_width=4, depth=2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.head.bias.fill_(logit)
    return model.eval()


def dataset(root: Path, num_labels: int = 2) -> PairedFolder:
    return PairedFolder(images_dir=root / "images", masks_dir=root / "masks", num_labels=num_labels)


def test_all_foreground_model_scores_counted_by_hand(data: Path) -> None:
    result = evaluate(Predictor(constant_model(10.0)), dataset(data))
    # Every labelled pixel is predicted foreground: tp = foreground, fp = labelled background, fn = 0.
    tp, fp = sum(FOREGROUND.values()), sum(LABELLED.values()) - sum(FOREGROUND.values())  # 172, 1148
    assert result.counts.tolist() == [[0, 0, fp], [tp, fp, 0]]
    scores = result.scores()
    assert scores["iou"]["per_class"] == {"background": 0.0, "foreground": pytest.approx(172 / 1320)}
    assert scores["dice"]["per_class"]["foreground"] == pytest.approx(344 / 1492)
    assert scores["iou"]["mean"] == pytest.approx(172 / 1320 / 2)
    assert scores["headline"] == {"iou": pytest.approx(172 / 1320), "dice": pytest.approx(344 / 1492)}

    assert [row.image for row in result.rows] == ["a.png", "b.png", "c.png", "d.png"]
    assert [row.iou for row in result.rows] == pytest.approx([60 / 600, 96 / 384, 16 / 192, 0.0])
    assert [row.dice for row in result.rows] == pytest.approx([120 / 660, 192 / 480, 32 / 208, 0.0])
    assert [row.foreground_share_true for row in result.rows] == pytest.approx([0.1, 0.25, 16 / 192, 0.0])
    assert [row.foreground_share_pred for row in result.rows] == [1.0] * 4


def test_all_background_model_leaves_empty_images_unscored(data: Path, tmp_path: Path) -> None:
    result = evaluate(Predictor(constant_model(-10.0)), dataset(data))
    scores = result.scores()
    assert scores["iou"]["per_class"] == {"background": pytest.approx(1148 / 1320), "foreground": 0.0}
    assert scores["headline"]["iou"] == 0.0
    # d has no foreground in either mask: its score is undefined, an empty CSV cell, and not a case to show.
    assert math.isnan(result.rows[3].iou) and math.isnan(result.rows[3].dice)
    write_report(result, tmp_path / "out", weights="w")
    with open(tmp_path / "out" / "per_image.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows[3] == {
        "image": "d.png",
        "iou": "",
        "dice": "",
        "foreground_share_true": "0.0",
        "foreground_share_pred": "0.0",
    }
    assert pick_cases(result.rows) == ([0, 1, 2], [])


def test_random_model_matches_an_independent_count(data: Path) -> None:
    """A 3-class model with random weights: every score recounted from its masks with numpy boolean logic."""
    torch.manual_seed(0)
    model = UNet(num_classes=3, base_width=4, depth=2)
    with torch.no_grad():
        model.head.bias.zero_()  # the random biases alone would outweigh the features: one class everywhere
    predictor = Predictor(model)
    folder = dataset(data, num_labels=3)
    result = evaluate(predictor, folder, class_names=["sky", "cat", "dog"])

    total = np.zeros((3, 3), dtype=np.int64)
    predicted_classes = set()
    for index, row in enumerate(result.rows):
        image, target = folder.load_pair(index)
        pred = predictor.predict(image).mask
        predicted_classes |= set(np.unique(pred).tolist())
        labelled = target != 255
        counts = np.array(
            [
                [
                    ((pred == k) & (target == k) & labelled).sum(),
                    ((pred == k) & (target != k) & labelled).sum(),
                    ((pred != k) & (target == k) & labelled).sum(),
                ]
                for k in range(3)
            ]
        )
        total += counts
        tp, fp, fn = counts.T.astype(float)
        with np.errstate(invalid="ignore"):
            iou, dice = tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)
        assert row.iou == pytest.approx(np.nanmean(iou))  # more than two classes: the headline is the mean
        assert row.dice == pytest.approx(np.nanmean(dice))
        assert row.foreground_share_pred == pytest.approx((pred[labelled] != 0).mean())
    assert len(predicted_classes) > 1  # the weights do not predict one class everywhere, so the check means something
    assert result.counts.tolist() == total.tolist()
    tp, fp, fn = total.T
    assert result.scores()["iou"]["per_class"]["cat"] == pytest.approx(tp[1] / (tp[1] + fp[1] + fn[1]))


def test_error_kinds_counted_by_hand() -> None:
    target, pred = np.zeros((20, 20), dtype=np.uint8), np.zeros((20, 20), dtype=np.uint8)
    target[2:6, 2:6] = 1
    pred[2:6, 3:7] = 1  # one column off: 4 missed and 4 false pixels, all beside the outline
    target[10:17, 10:17] = 1  # a 7x7 object missed: its 3x3 core lies farther than 2 px from its outline
    pred[17:20, 0:3] = 1  # a 3x3 false object far from every true one
    np.testing.assert_array_equal(error_kinds(pred, target), [8 + 40, 9, 9, 0])
    pred[10:17, 10:17] = 2  # now found, as the wrong class
    np.testing.assert_array_equal(error_kinds(pred, target), [8 + 40, 9, 0, 9])
    np.testing.assert_array_equal(error_kinds(target, target), [0, 0, 0, 0])
    target[17:20, 0:3] = IGNORE_INDEX  # ignored pixels are never counted
    np.testing.assert_array_equal(error_kinds(pred, target), [8 + 40, 0, 0, 9])


def test_pick_cases_ranks_by_iou_and_skips_nan() -> None:
    ious = [0.5, math.nan, 0.9, 0.1, 0.7, 0.3, 0.2, 0.8]
    rows = [ImageScore(f"{i}.png", iou, iou, 0.5, 0.5) for i, iou in enumerate(ious)]
    assert pick_cases(rows) == ([2, 7, 4], [5, 6, 3])
    assert pick_cases(rows[:5]) == ([2, 4, 0], [3])  # four scored images: each shown once


def test_cli_end_to_end(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "checkpoint"
    constant_model(10.0).save_pretrained(weights)
    out = tmp_path / "out"
    images, masks = data / "images", data / "masks"
    main(["--weights", str(weights), "--images", str(images), "--masks", str(masks), "--out", str(out)])

    printed = capsys.readouterr().out
    assert re.search(r"foreground\s+0\.1303\s+0\.2306", printed)  # 172/1320 and 344/1492
    report = json.loads((out / "eval.json").read_text())
    assert list(report) == [
        "dataset", "images", "masks", "num_images", "threshold", "tta", "min_confidence", "max_side", "weights",
        "class_names",
        "iou", "dice", "headline", "accuracy", "errors", "date", "seconds",
    ]  # fmt: skip
    assert report["dataset"] == "data"  # the images folder's parent
    assert (report["images"], report["masks"], report["weights"]) == (str(images), str(masks), str(weights))
    assert (report["num_images"], report["threshold"], report["tta"], report["max_side"]) == (4, 0.5, "none", 512)
    assert report["class_names"] == ["background", "foreground"]
    assert report["iou"] == {"per_class": {"background": 0.0, "foreground": pytest.approx(172 / 1320)},
                             "mean": pytest.approx(172 / 2640)}  # fmt: skip
    assert report["dice"]["per_class"]["foreground"] == pytest.approx(344 / 1492)
    assert report["headline"] == {"iou": pytest.approx(172 / 1320), "dice": pytest.approx(344 / 1492)}
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", report["date"]) and report["seconds"] >= 0
    # Every labelled background pixel is wrong (1320 - 172). Within 2 px of a true outline: a box's 2-px ring inside the
    # image (a: 14x10 - 60 = 80, b: 12x16 - 96 = 96, c: 6x6 - 16 = 20) and c's two rows above its ignored rows (32).
    shares = {"near_outline": pytest.approx(228 / 1148), "false_object": pytest.approx(920 / 1148)}
    assert report["errors"] == {"wrong_pixels": 1148, "outline_px": 2, **shares, "missed": 0.0, "wrong_class": 0.0}
    assert "wrong pixels: 1148, 19.9% within 2 px of a true outline; farther: 80.1% false objects, 0.0% missed" in (
        printed
    )

    with open(out / "per_image.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["image", "iou", "dice", "foreground_share_true", "foreground_share_pred"]
    assert [row[0] for row in rows[1:]] == ["a.png", "b.png", "c.png", "d.png"]
    assert [float(row[1]) for row in rows[1:]] == pytest.approx([0.1, 0.25, 1 / 12, 0.0])
    assert [float(row[3]) for row in rows[1:]] == pytest.approx([0.1, 0.25, 1 / 12, 0.0])

    # The legend, then best b, a, c and the worst that is left, d: four rows of four 256-pixel-high panels.
    expected_rows = [
        side_by_side([Image.new("RGB", FIXTURE[name][:2])] * 4, ["title"] * 4, height=256) for name in "bacd"
    ]
    legend = legend_image(height=25)
    with Image.open(out / "cases.png") as picture:
        assert picture.width == max(row.width for row in [*expected_rows, legend]) + 2 * 4
        assert picture.height == sum(row.height for row in expected_rows) + legend.height + 4 * 6


def test_cli_min_confidence_drops_unsure_regions_and_is_recorded(data: Path, tmp_path: Path) -> None:
    weights = tmp_path / "checkpoint"
    constant_model(1.0).save_pretrained(weights)  # every pixel foreground with probability sigmoid(1) = 0.731
    images, masks = data / "images", data / "masks"
    for value, foreground_iou in (("0.7", 172 / 1320), ("0.75", 0.0)):
        out = tmp_path / f"out{value}"
        argv = ["--weights", str(weights), "--images", str(images), "--masks", str(masks), "--out", str(out)]
        main([*argv, "--min-confidence", value])
        report = json.loads((out / "eval.json").read_text())
        assert report["min_confidence"] == float(value)
        assert report["iou"]["per_class"]["foreground"] == pytest.approx(foreground_iou)
    with pytest.raises(SystemExit, match=r"error: min_confidence must lie in \[0, 1\], got 2.0"):
        main([*argv, "--min-confidence", "2"])


def test_cases_picture_shows_nothing_when_no_image_is_scored(data: Path) -> None:
    for mask in (data / "masks").iterdir():
        Image.new("L", Image.open(mask).size, 0).save(mask)  # no foreground anywhere
    folder, predictor = dataset(data), Predictor(constant_model(-10.0))
    assert cases_picture(predictor, folder, evaluate(predictor, folder)) is None


def test_cli_names_a_mask_the_model_cannot_read(data: Path, tmp_path: Path) -> None:
    weights = tmp_path / "checkpoint"
    constant_model(10.0).save_pretrained(weights)
    bad = data / "masks" / "b.png"
    Image.fromarray(np.full((24, 16), 7, dtype=np.uint8)).save(bad)
    args = ["--weights", str(weights), "--images", str(data / "images"), "--masks", str(data / "masks")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    message = str(exit_info.value.code)
    assert str(bad) in message and "this model predicts classes 0..1" in message

    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--class-names", "a,b,c"])
    assert "3 class names (a, b, c) for a model with 2 classes" in str(exit_info.value.code)


def test_group_scores_pool_each_groups_images(data: Path) -> None:
    result = evaluate(Predictor(constant_model(10.0)), dataset(data))
    scores = group_scores(result, {"a.png": "x", "b.png": "x", "c.png": "y", "d.png": "y", "e.png": "z"})
    # All foreground predicted: x has tp 60 + 96, fp 540 + 288; y has tp 16, fp 176 + 144 (d: all background).
    assert scores == {
        "x": {"num_images": 2, "iou": pytest.approx(156 / 984), "dice": pytest.approx(312 / 1140)},
        "y": {"num_images": 2, "iou": pytest.approx(16 / 336), "dice": pytest.approx(32 / 352)},
    }  # z names no image of the data set, so it has no scores
    with pytest.raises(ValueError, match=re.escape("2 images have no group: c.png, d.png")):
        group_scores(result, {"a.png": "x", "b.png": "x"})


def test_cli_scores_groups(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "checkpoint"
    constant_model(10.0).save_pretrained(weights)
    groups = tmp_path / "photos.csv"
    groups.write_text("image,group\na.png,x\nb.png,x\nc.png,y\nd.png,y\n")
    args = ["--weights", str(weights), "--images", str(data / "images"), "--masks", str(data / "masks")]
    main([*args, "--groups", str(groups), "--out", str(tmp_path / "out")])
    assert "  x: 2 images, IoU 0.1585, Dice 0.2737\n  y: 2 images, IoU 0.0476, Dice 0.0909" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert list(report["groups"]) == ["x", "y"] and report["groups"]["y"]["iou"] == pytest.approx(16 / 336)
    assert report["headline"]["iou"] == pytest.approx(172 / 1320)  # the pooled scores as without groups

    groups.write_text("image,photo\na.png,x\n")
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--groups", str(groups)])
    assert "needs the columns image and group" in str(exit_info.value.code)
    groups.write_text("image,group\na.png,x\n")
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--groups", str(groups)])
    assert "3 images have no group: b.png, c.png, d.png" in str(exit_info.value.code)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--groups", str(tmp_path / "none.csv")])
    assert "none.csv" in str(exit_info.value.code)
