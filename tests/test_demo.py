"""The demo's handlers on synthetic images: scores equal unet.metrics, a full-size mask, errors that help."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from app_helpers import ROOT, save_tiny_checkpoint
from PIL import Image

from unet import metrics
from unet.demo import DISPLAY_MAX_SIDE, InputError, class_regions, prune_downloads, scores_markdown, segment
from unet.describe import (
    card_summary,
    class_colors_hex,
    curves_file,
    error_legend_html,
    example_pairs,
    model_card_text,
    model_panel,
    visitor_text,
    warning_markdown,
)
from unet.hub import WeightsInfo, load_model
from unet.labels import ModelLabels
from unet.model import UNet
from unet.predict import Predictor
from unet.preprocessing import load_mask

WIDTH, HEIGHT = 48, 32


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[UNet, WeightsInfo]:
    return load_model(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def predictor(loaded: tuple[UNet, WeightsInfo]) -> Predictor:
    return Predictor(loaded[0])


def photo(width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """Seeded noise with a bright rectangle: something for the model to find."""
    pixels = np.random.default_rng(0).integers(0, 120, (height, width, 3), dtype=np.uint8)
    pixels[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] += 130
    return Image.fromarray(pixels)


def truth_mask(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The rectangle of `photo` as a 0/1 mask, shifted a little so that the scores are not perfect."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 + 2 : 3 * height // 4 + 2, width // 3 : 2 * width // 3 + 3] = 1
    return mask


def save(image: Image.Image | np.ndarray, path: Path) -> Path:
    (Image.fromarray(image) if isinstance(image, np.ndarray) else image).save(path)
    return path


def expected_scores(mask: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """IoU and Dice straight from unet.metrics, NaN as None the way the demo's JSON holds them."""
    scores = {}
    for name, per_class in (("iou", metrics.iou(mask, truth, 2)), ("dice", metrics.dice(mask, truth, 2))):
        values = [None if np.isnan(value) else float(value) for value in per_class]
        present = [value for value in values if value is not None]
        scores[name] = {
            "per_class": dict(zip(["background", "foreground"], values, strict=True)),
            "mean": sum(present) / len(present) if present else None,
        }
    return scores


def test_scores_equal_unet_metrics_on_the_same_pair(predictor: Predictor, tmp_path: Path) -> None:
    image = save(photo(), tmp_path / "photo.png")
    truth = save(truth_mask() * 255, tmp_path / "truth.png")  # stored 0/255, read as 0/1
    # The median probability as threshold splits the prediction into two classes of about equal size.
    threshold = float(np.median(predictor.predict(photo()).probabilities[1]))

    result = segment(predictor, image, truth, threshold=threshold, downloads=tmp_path / "downloads")

    assert 0 < result.mask.mean() < 1
    expected = expected_scores(result.mask, truth_mask())
    for name in ("iou", "dice"):
        assert result.scores[name]["per_class"] == pytest.approx(expected[name]["per_class"], abs=1e-12)
        assert result.scores[name]["mean"] == pytest.approx(expected[name]["mean"], abs=1e-12)
    assert result.scores["headline"]["iou"] == pytest.approx(expected["iou"]["per_class"]["foreground"])
    assert result.scores["threshold"] == threshold
    assert result.scores["foreground_share"] == pytest.approx(result.mask.mean())
    assert f"| **mean** | **{expected['iou']['mean']:.4f}** | **{expected['dice']['mean']:.4f}** |" in result.table
    assert result.truth_overlay.size == result.error_map.size == (WIDTH, HEIGHT)


def test_without_ground_truth_there_are_no_scores_and_no_error_map(predictor: Predictor, tmp_path: Path) -> None:
    result = segment(predictor, save(photo(), tmp_path / "photo.png"), None, downloads=tmp_path)

    assert "iou" not in result.scores and "dice" not in result.scores
    assert result.truth_overlay is None and result.error_map is None
    assert "Add the ground-truth mask to see IoU and Dice." in result.table
    assert f"{WIDTH}×{HEIGHT}" in result.table
    assert result.scores["image_size"] == [WIDTH, HEIGHT]


def test_downloads_are_full_size_pngs_and_the_page_gets_display_size(predictor: Predictor, tmp_path: Path) -> None:
    width, height = 1300, 200  # wider than DISPLAY_MAX_SIDE
    result = segment(predictor, save(photo(width, height), tmp_path / "wide.png"), downloads=tmp_path)

    assert result.mask_file.name == "wide_mask.png"
    with Image.open(result.mask_file) as mask_file:
        assert (mask_file.format, mask_file.mode, mask_file.size) == ("PNG", "L", (width, height))
        np.testing.assert_array_equal(np.asarray(mask_file), result.mask)
    assert set(np.unique(result.mask)) <= {0, 1}
    shown = (DISPLAY_MAX_SIDE, round(height * DISPLAY_MAX_SIDE / width))
    overlay_file = result.picture_files()["overlay"]
    assert overlay_file.name == "wide_overlay.png"
    with Image.open(overlay_file) as picture:
        assert (picture.format, picture.size) == ("PNG", shown)  # drawn at display size, never at full size
    assert result.segmentation.picture.size == result.overlay.size == shown


def test_picture_files_are_the_display_pictures_beside_the_downloads(predictor: Predictor, tmp_path: Path) -> None:
    image, truth = save(photo(), tmp_path / "photo.png"), save(truth_mask() * 255, tmp_path / "truth.png")
    with_truth = segment(predictor, image, truth, downloads=tmp_path)
    files = with_truth.picture_files()
    assert set(files) == {"overlay", "truth_overlay", "error_map"}  # never the upload itself
    for name, path in files.items():
        assert path.parent == with_truth.mask_file.parent
        with Image.open(path) as picture:
            assert picture.format == "PNG"
            np.testing.assert_array_equal(np.asarray(picture), np.asarray(getattr(with_truth, name)))
    without_truth = segment(predictor, image, downloads=tmp_path).picture_files()
    assert without_truth["truth_overlay"] is None and without_truth["error_map"] is None


def test_run_folders_are_pruned_by_age_then_by_size_at_most_once_a_while(tmp_path: Path) -> None:
    now = time.time()
    for name, age_s, size in [("old", 7200, 10), ("big-older", 60, 600), ("big-newer", 30, 600), ("new", 0, 10)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "mask.png").write_bytes(b"x" * size)
        os.utime(tmp_path / name, (now - age_s, now - age_s))
    prune_downloads(tmp_path, max_age_s=3600, max_bytes=1000, every_s=0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["big-newer", "new"]  # too old; then the oldest

    (tmp_path / "old").mkdir()
    os.utime(tmp_path / "old", (now - 7200, now - 7200))
    prune_downloads(tmp_path, max_age_s=3600, every_s=60)  # looked over a moment ago: not again yet
    assert (tmp_path / "old").is_dir()
    prune_downloads(tmp_path, max_age_s=3600, every_s=0)
    assert not (tmp_path / "old").exists()


def test_a_gradio_file_payload_reads_like_its_path(predictor: Predictor, tmp_path: Path) -> None:
    path = save(photo(), tmp_path / "photo.png")
    from_path = segment(predictor, path, downloads=tmp_path, tta="flip")
    from_payload = segment(predictor, {"path": str(path), "orig_name": "photo.png"}, downloads=tmp_path, tta="flip")

    np.testing.assert_array_equal(from_payload.mask, from_path.mask)
    assert from_payload.mask_file.name == "photo_mask.png"
    assert from_payload.scores["tta"] == "flip"


def test_an_unknown_test_time_augmentation_is_refused_by_name(predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Unknown test-time augmentation 'rotate': choose one of none, flip, dihedral"):
        segment(predictor, photo(), downloads=tmp_path, tta="rotate")


def test_min_confidence_reaches_the_prediction_and_the_scores(predictor: Predictor, tmp_path: Path) -> None:
    image = photo()
    everything = segment(predictor, image, threshold=0.0, downloads=tmp_path)
    assert everything.scores["foreground_share"] == 1.0  # one region: the whole image
    mean = float(predictor.predict(image).probabilities[1].mean())  # how sure the model is of it
    assert 0 < mean < 1
    kept = segment(predictor, image, threshold=0.0, min_confidence=mean - 0.01, downloads=tmp_path)
    dropped = segment(predictor, image, threshold=0.0, min_confidence=mean + 0.01, downloads=tmp_path)
    assert kept.scores["foreground_share"] == 1.0 and kept.scores["min_confidence"] == pytest.approx(mean - 0.01)
    assert dropped.scores["foreground_share"] == 0.0 and not dropped.mask.any()


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


def _truncated_png(tmp_path: Path) -> Path:
    path = save(photo(), tmp_path / "cut.png")
    path.write_bytes(path.read_bytes()[:300])
    return path


# (image, ground truth, extra arguments) for each bad input, and words the message must hold.
BAD_INPUTS: dict[str, tuple[Callable[[Path], tuple[Any, Any, dict]], str]] = {
    "no image": (lambda tmp: (None, None, {}), "No image yet: upload"),
    "text file": (lambda tmp: (_text_file(tmp), None, {}), "Image: the file is not an image in a known format"),
    "truncated png": (lambda tmp: (_truncated_png(tmp), None, {}), "Image: the image file is truncated or corrupt"),
    "too many pixels": (lambda tmp: (photo(), None, {"max_pixels": 100}), "more than the 100 allowed; downscale"),
    "missing file": (lambda tmp: (tmp / "gone.png", None, {}), "gone from the server; upload it again"),
    "payload without a path": (lambda tmp: ({"url": "x"}, None, {}), "gradio_client.handle_file"),
    "threshold": (lambda tmp: (photo(), None, {"threshold": 1.5}), "threshold must lie between 0 and 1, got 1.5"),
    "opacity": (lambda tmp: (photo(), None, {"opacity": -0.1}), "opacity must lie between 0 and 1"),
    "region confidence": (
        lambda tmp: (photo(), None, {"min_confidence": 2.0}),
        "least region confidence must lie between 0 and 1, got 2.0",
    ),
    "truth of another size": (
        lambda tmp: (photo(), save(truth_mask(20, 10), tmp / "small.png"), {}),
        f"the mask is 20x10 pixels but the image is {WIDTH}x{HEIGHT}",
    ),
    "truth with unknown classes": (
        lambda tmp: (photo(), save(truth_mask() * 7, tmp / "seven.png"), {}),
        "mask has values [0, 7]; this model predicts classes 0..1",
    ),
    "truth in colour": (
        lambda tmp: (photo(), save(np.asarray(photo()), tmp / "colour.png"), {}),
        "Ground truth: the mask is in colour",
    ),
    "truth not an image": (lambda tmp: (photo(), _text_file(tmp), {}), "Ground truth: the file is not an image"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_raise_input_error_that_says_what_to_do(predictor: Predictor, tmp_path: Path, case: str) -> None:
    make, words = BAD_INPUTS[case]
    image, truth, arguments = make(tmp_path)
    with pytest.raises(InputError) as raised:
        segment(predictor, image, truth, downloads=tmp_path, **arguments)
    assert words in str(raised.value)
    assert ".." not in str(raised.value).replace("0..1", "") and str(raised.value).endswith(".")


def test_scores_markdown_leaves_out_a_class_absent_from_both_masks() -> None:
    scores = {
        "iou": {"per_class": {"background": 1.0, "foreground": None}, "mean": 1.0},
        "dice": {"per_class": {"background": 1.0, "foreground": None}, "mean": 1.0},
        "accuracy": {"global": 0.75},
        "foreground_share": 0.0,
        "image_size": [8, 4],
        "seconds": 0.012,
        "total_seconds": 0.02,
    }
    table = scores_markdown(scores)
    assert "| background | 1.0000 | 1.0000 |" in table and "| foreground |" not in table
    assert "Pixel accuracy **0.7500**" in table and "in neither mask, so left out: foreground." in table
    assert "model 12 ms · in all 20 ms" in table


def test_model_panel_gives_the_test_scores_and_their_settings(loaded: tuple[UNet, WeightsInfo], tmp_path: Path) -> None:
    model, info = loaded
    labels = ModelLabels.of(model)
    folder = tmp_path / "weights"
    shutil.copytree(info.folder, folder)
    scores = {"dataset": "composites-test", "num_images": 500, "date": "2026-11-26", "min_confidence": 0.8,
              "iou": {"per_class": {"background": 0.97, "foreground": 0.87}, "mean": 0.92},
              "dice": {"per_class": {"background": 0.98, "foreground": 0.93}, "mean": 0.96},
              "headline": {"iou": 0.87, "dice": 0.93}}  # fmt: skip
    (folder / "eval.json").write_text(json.dumps(scores))
    panel = model_panel(labels, WeightsInfo(source=str(folder), folder=folder))
    expected = "IoU **0.8700**, Dice **0.9300** on `composites-test` (500 images, regions of mean probability below 0.8"
    assert expected in panel
    (folder / "eval.json").write_text(json.dumps({**scores, "min_confidence": 0.0}))
    assert "(500 images), evaluated" in model_panel(labels, WeightsInfo(source=str(folder), folder=folder))
    (folder / "eval.json").write_text(json.dumps({**scores, "tta": "dihedral"}))
    expected = (
        "(500 images, average over the image's eight quarter turns and mirror images (eight times the time), "
        "regions of mean probability below 0.8"
    )
    assert expected in model_panel(labels, WeightsInfo(source=str(folder), folder=folder))


def test_model_panel_names_the_weights_without_their_path(loaded: tuple[UNet, WeightsInfo]) -> None:
    model, info = loaded
    panel = model_panel(ModelLabels.of(model), info)
    assert f"local folder `{info.folder.name}`" in panel and str(info.folder.parent) not in panel
    assert "U-Net, binary (background, foreground), base width 4, depth 2" in panel
    assert "Not in its folder" in panel and "training_args.json" in panel
    warning = "Not every model loaded, so the picker lists only the others. Could not load user/missing: offline."
    assert warning_markdown(warning) == f"⚠️ **{warning}**" and warning_markdown(None) == ""
    assert "PytorchModelHubMixin" in model_card_text(info)  # the card save_pretrained writes
    no_card = WeightsInfo(source=info.source, folder=info.folder)
    assert model_card_text(no_card) == "No model card (README.md) came with these weights."


def test_a_card_summary_is_the_quote_under_its_title_and_server_paths_stay_hidden() -> None:
    card = "---\nlicense: mit\n---\n\n# unet-x\n\n> Street scenes: road, cars.\n> Not indoor photos.\n\nMore."
    assert card_summary(card) == "Street scenes: road, cars. Not indoor photos."
    assert card_summary("# unet-x\n\nA U-Net.\n\n> a quote further down") is None
    assert card_summary(None) is None
    text = visitor_text("Could not load folder /srv/app/runs/best: it does not exist; from http://10.0.0.5:8080/x")
    assert text == "Could not load folder best: it does not exist; from (address hidden)"
    assert visitor_text("values 0/255 and 3/4 stay") == "values 0/255 and 3/4 stay"


def test_curves_file_is_found_beside_the_weights(tmp_path: Path) -> None:
    info = WeightsInfo(source=str(tmp_path), folder=tmp_path)
    assert curves_file(info) is None
    save(photo(), tmp_path / "curves.png")
    assert curves_file(info) == tmp_path / "curves.png"


def test_example_pairs_are_images_with_masks_of_their_size(tmp_path: Path) -> None:
    pairs = example_pairs(ROOT / "examples" / "composites")
    assert len(pairs) >= 4
    for image, mask in pairs:
        assert image.stem == mask.stem
        with Image.open(image) as picture:
            assert load_mask(mask, num_labels=2).shape == (picture.height, picture.width)

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    save(photo(), tmp_path / "images" / "a.png")
    save(photo(), tmp_path / "images" / "b.png")  # no mask: left out
    save(truth_mask(), tmp_path / "masks" / "a.png")
    assert example_pairs(tmp_path) == [(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")]


def test_error_legend_names_every_kind_of_pixel() -> None:
    legend = error_legend_html()
    for label in ("true positive", "false positive", "false negative", "true negatives"):
        assert label in legend


def test_class_regions_are_one_map_a_class_largest_first_without_the_background() -> None:
    model = UNet(num_classes=3, base_width=4, depth=2, class_names=["background", "cat", "dog"])
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[:, :2], mask[:, 3:] = 1, 2  # cat 8 pixels, dog 12
    regions = class_regions(mask, ModelLabels.of(model), (3, 2))  # shown at half size
    assert [name for _, name in regions] == ["dog", "cat"]
    np.testing.assert_array_equal(regions[0][0], [[0, 1, 1], [0, 1, 1]])
    colors = class_colors_hex(ModelLabels.of(model))
    assert colors["cat"].startswith("#") and len(colors) == 3
