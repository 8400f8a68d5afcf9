"""The figures the README and the street-scene model's card quote are those its eval.json holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAMVID = ROOT / "checkpoints" / "camvid"


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def test_readme_quotes_the_street_models_test_scores() -> None:
    scores = json.loads((CAMVID / "eval.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert scores["dataset"] == "camvid-test" and scores["num_images"] == 233 and scores["tta"] == "none"
    per_class = " | ".join(percent(value) for value in scores["iou"]["per_class"].values())
    assert f"| {per_class} | **{percent(scores['headline']['iou'])}** |" in readme
    accuracy = scores["accuracy"]
    assert (
        f"**mIoU {percent(scores['headline']['iou'])}**, global accuracy {percent(accuracy['global'])}, "
        f"class-average accuracy {percent(accuracy['class_average'])}"
    ) in readme


def test_the_figure_on_user_like_photos_is_its_eval_json() -> None:
    scores = json.loads((ROOT / "docs" / "camvid-photos-eval.json").read_text())
    assert scores["dataset"] == "camvid-test-2x-jpeg70" and scores["num_images"] == 233
    assert (
        f"upscaled 2x as quality-70 JPEGs, score\nmIoU {percent(scores['headline']['iou'])}."
        in (ROOT / "README.md").read_text()
    )
    notes = (ROOT / "docs" / "camvid-card-notes.md").read_text()
    assert f"mIoU {scores['headline']['iou']:.4f}, global accuracy {scores['accuracy']['global']:.4f}" in notes


def test_the_card_and_its_notes_agree_with_eval_json() -> None:
    scores = json.loads((CAMVID / "eval.json").read_text())
    card = (CAMVID / "README.md").read_text()
    assert f"mIoU {scores['headline']['iou']:.4f}" in card
    row = "| **this model** (ImageNet encoder, 80 minutes on a 2-core CPU) | 3.8 M |"
    assert f"{row} **{percent(scores['headline']['iou'])}** |" in card
    assert "license: cc-by-nc-4.0" in card
    history = json.loads((CAMVID / "history.json").read_text())
    assert round(sum(record["seconds"] for record in history) / 60) == 80  # "80 minutes" of training


def test_the_composites_figures_in_the_readme_are_its_eval_json() -> None:
    scores = json.loads((ROOT / "checkpoints" / "composites" / "eval.json").read_text())
    readme = (ROOT / "README.md").read_text()
    headline = scores["headline"]
    assert f"foreground IoU {headline['iou']:.4f}, Dice {headline['dice']:.4f}" in readme
    assert re.search(r"\| clip art, `checkpoints/composites/`", readme)


def test_the_from_scratch_unet_figures_are_its_eval_json() -> None:
    scores = json.loads((ROOT / "docs" / "camvid-unet-eval.json").read_text())
    assert scores["dataset"] == "camvid-test" and scores["num_images"] == 233
    headline = f"mIoU {percent(scores['headline']['iou'])}"
    assert f"reaches test {headline} (`docs/camvid-unet-eval.json`)" in (ROOT / "README.md").read_text()
    record = (ROOT / "docs" / "camvid.md").read_text()
    assert (
        f"**mIoU {scores['headline']['iou']:.4f}**, global pixel accuracy {scores['accuracy']['global']:.4f}" in record
    )
    row = " | ".join(percent(value) for value in scores["iou"]["per_class"].values())
    assert f"| {row} | **{percent(scores['headline']['iou'])}** |" in record
