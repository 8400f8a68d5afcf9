"""What the page, the model panel and the model card say about a model, in words and HTML: its one-line summary,
class and error legends, examples, where its weights came from, its network and training data, and its test scores.

Everything here is read from a weights folder's files (`config.json` through `unet.labels`, `inference.json`, the
card, `eval.json`, `training_args.json`) and never from a built network, so none of it imports PyTorch: the demo lays
out its page from it while its models load (`unet.catalog`).
"""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from unet.hub import BUNDLED_WEIGHTS, CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, WeightsInfo, parameter_count
from unet.labels import ModelLabels
from unet.settings import TTA_HELP, recorded_tta
from unet.visualize import color_table, error_legend

EXAMPLE_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_SWATCH = (
    '<span style="display:inline-block;width:0.9em;height:0.9em;background:{};border:1px solid #444;'
    'vertical-align:middle;margin:0 0.3em 0 0.8em"></span>{}'
)


def error_legend_html(background_class: int | None = 0) -> str:
    """The error map's legend as HTML: a colour swatch and a label for each kind of pixel."""
    items = "".join(_SWATCH.format(color, label) for label, color in error_legend(background_class))
    dimmed = '<span style="margin-left:0.8em">(true negatives: dimmed)</span>' if background_class is not None else ""
    return f'<div style="font-size:0.9em">{items}{dimmed}</div>'


def card_summary(card: str | None) -> str | None:
    """The one-line summary of a model card: the quoted paragraph (`> ...`) that opens its text after the title
    (`unet.publish.build_model_card` puts it there), or None when the card has none."""
    if not card:
        return None
    text = card.partition("\n---\n")[2] if card.startswith("---\n") else card  # after the YAML metadata
    paragraphs = [paragraph.strip() for paragraph in text.split("\n\n") if paragraph.strip()]
    for paragraph in paragraphs[:2]:  # the title, then the summary
        lines = paragraph.splitlines()
        if all(line.startswith(">") for line in lines):
            return " ".join(line[1:].strip() for line in lines)
    return None


_URL = re.compile(r"https?://[^\s'\"`<>)]+")
_PATH = re.compile(r"(?<![\w.~/])/(?:[^\s/'\"`():,;]+/)*[^\s/'\"`():,;]*")


def visitor_text(text: str) -> str:
    """`text` fit for a visitor's eyes: server paths shortened to their last part, addresses (such as the Hub
    endpoint a server was given) hidden. The log keeps the full text."""
    text = _URL.sub("(address hidden)", text)
    return _PATH.sub(lambda match: next((part for part in reversed(match[0].split("/")) if part), "/"), text)


def model_summary(labels: ModelLabels) -> str:
    """One sentence for the top of the page: what the served model tells apart."""
    named = [name for index, name in enumerate(labels.class_names) if index != labels.background_class]
    if labels.is_binary:
        return f"This model finds the {named[0]} (one class against the background)."
    return f"This model labels every pixel as one of {len(named)} classes: {', '.join(named)}."


def class_legend_html(labels: ModelLabels) -> str:
    """The model's classes as HTML: each name beside the colour every overlay draws it in (its background, which
    the overlays leave as the photo, is not listed)."""
    colors = class_colors_hex(labels)
    background = labels.background_class
    entries = [(name, colors[name]) for index, name in enumerate(labels.class_names) if index != background]
    items = "".join(_SWATCH.format(color, html.escape(name)) for name, color in entries)
    return f'<div style="font-size:0.9em">Classes:{items}</div>'


def class_colors_hex(labels: ModelLabels) -> dict[str, str]:
    """Each class name and the colour every overlay draws it in, as "#rrggbb"."""
    table = color_table(labels.class_colors)
    return {name: "#{:02x}{:02x}{:02x}".format(*table[index]) for index, name in enumerate(labels.class_names)}


def example_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs from `folder/images/*` and `folder/masks/<same stem>.png`, sorted; images without a mask
    are left out.

    Args:
        folder: A folder holding `images/` and `masks/`.
    """
    folder = Path(folder)
    pairs = []
    for image in sorted((folder / "images").glob("*")):
        mask = folder / "masks" / f"{image.stem}.png"
        if image.suffix.lower() in EXAMPLE_IMAGE_SUFFIXES and mask.is_file():
            pairs.append((image, mask))
    return pairs


def examples_folder(root: str | Path, labels: ModelLabels, info: WeightsInfo) -> Path | None:
    """The examples for a model: `root/<name of its bundled folder>` (examples/camvid for checkpoints/camvid), else,
    for a binary model, the composites' (`root/composites`), else none: a street scene is no example for a model
    of something else.
    """
    root = Path(root)
    own = root / info.folder.name
    if info.repo_id is None and (own / "images").is_dir():
        return own
    return root / "composites" if labels.is_binary and (root / "composites").is_dir() else None


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in `path`, or None and why not."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{path.name} is unreadable ({error})"
    if not isinstance(content, dict):
        return None, f"{path.name} does not hold a JSON object"
    return content, None


@functools.lru_cache(maxsize=32)
def _card(info: WeightsInfo) -> ModelCard | None:
    """The parsed model card, or None when there is none; parsed once (its YAML takes ~0.1 s), as the page asks
    for it again each time the model is chosen."""
    return ModelCard(info.card, ignore_metadata_errors=True) if info.card else None


def _weights_line(info: WeightsInfo) -> str:
    """Where the weights came from, for visitors: a Hub repo and commit, or a folder's name (never its path)."""
    if info.repo_id is not None:
        return f"Hugging Face Hub repo `{info.repo_id}`, revision `{info.revision}`, commit `{info.commit}`"
    if info.folder.resolve().parent == BUNDLED_WEIGHTS.resolve().parent:
        return f"the bundled model `checkpoints/{info.folder.name}`"
    return f"local folder `{info.folder.name}`"


def _network_line(labels: ModelLabels, info: WeightsInfo, config: dict[str, Any] | None) -> str:
    parameters = parameter_count(info.folder / WEIGHTS_FILE)
    kind = "binary" if labels.is_binary else f"{labels.num_labels}-class"
    details = ""
    if config:
        shown = ("encoder", "decoder_widths", "base_width", "depth", "upsampling", "norm")
        details = ", " + ", ".join(f"{key.replace('_', ' ')} {config[key]}" for key in shown if key in config)
    classes = ", ".join(labels.class_names)
    counted = "" if parameters is None else f"; {parameters:,} parameters"
    return f"U-Net, {kind} ({classes}){details}{counted}"


def _training_line(info: WeightsInfo, card: ModelCard | None) -> str:
    arguments, problem = _read_json(info.folder / "training_args.json")
    if arguments and arguments.get("data"):
        return f"`{arguments['data']}` (from training_args.json)"
    datasets = getattr(card.data, "datasets", None) if card else None
    if datasets:
        return ", ".join(f"`{name}`" for name in datasets) + " (from the model card)"
    return f"not recorded ({problem or 'training_args.json names no data'}, and the model card names no data set)"


def _eval_section(info: WeightsInfo, card: ModelCard | None) -> str:
    scores, problem = _read_json(info.folder / "eval.json")
    if scores and isinstance(scores.get("iou"), dict) and isinstance(scores.get("dice"), dict):
        headline = scores.get("headline", {})
        dropped = scores.get("min_confidence") or 0
        tta = recorded_tta(scores)
        views = "" if tta == "none" else f", {TTA_HELP[tta]}"
        regions = f", regions of mean probability below {dropped} dropped" if dropped > 0 else ""
        where = (
            f"on `{scores.get('dataset', '?')}` ({scores.get('num_images', '?')} images"
            f"{views}{regions}), evaluated {scores.get('date', '?')} (eval.json)"
        )
        mean = "m" if len(scores["iou"].get("per_class", {})) > 2 else ""  # the headline of many classes: their mean
        accuracy = scores.get("accuracy") if mean else None
        extra = f", global pixel accuracy **{score_cell(accuracy.get('global'))}**" if accuracy else ""
        return (
            f"**Test scores:** {mean}IoU **{score_cell(headline.get('iou'))}**, "
            f"{mean}Dice **{score_cell(headline.get('dice'))}**"
            f"{extra} {where}\n\n" + score_table(scores)
        )
    results = getattr(card.data, "eval_results", None) if card else None
    if results:
        listed = ", ".join(f"{result.metric_name} {score_cell(result.metric_value)}" for result in results[:4])
        return f"**Test scores** on `{results[0].dataset_name}` (from the model card): {listed}"
    return f"**Test scores:** none found ({problem}, and the model card lists no scores)."


def model_panel(labels: ModelLabels, info: WeightsInfo) -> str:
    """Markdown for the model panel: which weights, the network, its training data and its test scores.

    Args:
        labels: What its masks mean (`unet.labels`).
        info: Where its weights came from (`load_model`).
    """
    card = _card(info)
    config, _ = _read_json(info.folder / CONFIG_FILE)
    parts = [
        f"**Weights:** {_weights_line(info)}",
        f"**Network:** {_network_line(labels, info, config)}",
        f"**Trained on:** {_training_line(info, card)}",
        _eval_section(info, card),
    ]
    if info.repo_id is None:  # a local folder: say which of the files a checkpoint ships with are missing
        expected = (CARD_FILE, "training_args.json", "eval.json", "curves.png")
        missing = [name for name in expected if not (info.folder / name).is_file()]
        if missing:
            parts.append(f"Not in its folder: {', '.join(missing)}.")
    return "\n\n".join(parts)


def model_card_text(info: WeightsInfo) -> str:
    """The model card's text without its YAML metadata, or a line saying there is none."""
    card = _card(info)
    if card is None:
        return f"No model card ({CARD_FILE}) came with these weights."
    return card.text.strip() or f"The model card ({CARD_FILE}) holds metadata only."


def curves_file(info: WeightsInfo) -> Path | None:
    """The training curves picture beside the weights, or None."""
    path = info.folder / "curves.png"
    return path if path.is_file() else None


def warning_markdown(warning: str | None) -> str:
    """The banner at the top of the page when some weights were left out (`unet.catalog.describe_catalog`)."""
    return "" if not warning else f"⚠️ **{warning}**"


def score_cell(value: float | None) -> str:
    """A score as the tables show it: four decimals, or a dash for a class without one."""
    return "—" if value is None else f"{value:.4f}"


def score_table(report: dict[str, Any], absent: str = "dash") -> str:
    """A `summary` report as a Markdown table: IoU and Dice a class, then their means in bold. The page, the model
    panel and the model card all show scores this way.

    Args:
        report: `summary`'s report (or an eval.json, which holds one).
        absent: What becomes of a class in neither mask (no score): "dash" shows it with dashes, "omit" leaves it out.
    """

    rows = ["| class | IoU | Dice |", "|:--|--:|--:|"]
    for name, iou in report["iou"]["per_class"].items():
        if iou is not None or absent == "dash":
            rows.append(f"| {name} | {score_cell(iou)} | {score_cell(report['dice']['per_class'].get(name))} |")
    rows.append(f"| **mean** | **{score_cell(report['iou']['mean'])}** | **{score_cell(report['dice']['mean'])}** |")
    return "\n".join(rows)
