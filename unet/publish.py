"""Publish a checkpoint folder on the Hugging Face Hub with a generated model card.

    python -m unet.publish --repo-id USER/NAME [--weights FOLDER] [--eval-json PATH] [--notes PATH]
        [--license ID] [--private] [--dry-run [--out DIR]]

The card (`build_model_card`) is written from the folder's own files: YAML metadata whose `model-index` scores come
from the evaluate command's JSON (never typed by hand), the training recipe, the scores, the architecture and how to
load it. `--dry-run` writes exactly what a push would upload into a folder (`prepare_upload`); each folder under
`checkpoints/` was made that way.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx2
from huggingface_hub import EvalResult, HfApi, ModelCardData, constants

from unet.architectures import ARCHITECTURE_KEY, model_class
from unet.describe import score_table
from unet.hub import (
    BUNDLED_WEIGHTS,
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    WeightsError,
    is_repo_id,
    load_model,
)
from unet.settings import SETTINGS_FILE, TTA_HELP, recorded_tta
from unet.train import FP32_VALUES

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


# ----------------------------------------------------------------------------------------------------------------
# The model card


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
            (`unet.describe.card_summary`).
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
        shown = {key: value for key, value in recipe.items() if not key.startswith("_") and key != FP32_VALUES}
        chosen = {key: training.get(key, value) for key, value in shown.items()}
        chosen["class_weights"] = training.get("class_weights")
        lines.append(
            f"Trained by `python -m unet.train --recipe {training['recipe']}` with these values (every other "
            "argument at its default; all of them are in `training_args.json`):"
        )
        lines.append(_table({key: chosen[key] for key in sorted(chosen)}, "argument"))
        if training.get("fp32_values"):
            values = ", ".join(f"`{key}` {value}" for key, value in training["fp32_values"].items())
            lines.append(f"It trained in fp32 (a CPU without native bf16) with the recipe's values for that: {values}.")
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
    with tempfile.TemporaryDirectory(prefix="unet-publish-") as staging:
        prepare_upload(folder, repo_id, staging, eval_json, notes, license)
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=staging, commit_message=f"Upload U-Net weights from {Path(folder).name}"
        )
    return commit.oid


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unet.publish", description=__doc__.split("\n\n")[0])

    parser.add_argument("--repo-id", required=True, metavar="USER/NAME", help="the Hub repo to upload to")
    parser.add_argument(
        "--weights",
        type=Path,
        default=BUNDLED_WEIGHTS,
        metavar="FOLDER",
        help=f"checkpoint folder to upload (default: the bundled checkpoints/{BUNDLED_WEIGHTS.name}/)",
    )
    parser.add_argument(
        "--eval-json",
        type=Path,
        metavar="PATH",
        help="the evaluate CLI's JSON for the card's scores (default: the folder's eval.json)",
    )
    parser.add_argument(
        "--notes",
        type=Path,
        metavar="PATH",
        help="a Markdown file for the card: the training data, what the model is and is not for, how to rebuild it",
    )
    parser.add_argument(
        "--license",
        default="mit",
        help="the weights' licence as a Hub licence id (default mit; cc-by-nc-4.0 for weights trained on CamVid)",
    )
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--dry-run", action="store_true", help="write what would be uploaded; upload nothing")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="with --dry-run: the folder to write (default: a new temporary folder)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.out is not None and not args.dry_run:
        parser.error("--out goes with --dry-run")
    if not is_repo_id(args.repo_id):
        parser.error(f"--repo-id must look like USER/NAME, got {args.repo_id!r}")
    try:
        eval_json = json.loads(args.eval_json.read_text()) if args.eval_json else None
        notes = args.notes.read_text(encoding="utf-8") if args.notes else None
        if args.dry_run:
            out = args.out or Path(tempfile.mkdtemp(prefix="unet-publish-dry-run-"))
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
