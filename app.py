"""The U-Net demo: upload an image (and, to score it, its true mask) to see the segmentation, IoU and Dice.

    python app.py [--host H] [--port P] [--share] [--weights FOLDER|USER/NAME[@REV]]

This file only lays out the page and wires its events; every step of the work is in `unet.demo`. The same run is
the `/segment` API endpoint: `gradio_client.Client(URL).predict(handle_file("photo.jpg"), None, api_name="/segment")`.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unet.demo import (
    DemoResult,
    ImageInput,
    InputError,
    class_legend_html,
    curves_file,
    error_legend_html,
    example_pairs,
    examples_folder,
    model_card_text,
    model_panel,
    model_summary,
    segment,
    warning_markdown,
)
from unet.hub import (
    WeightsError,
    WeightsInfo,
    add_weights_argument,
    load_model,
    load_model_with_fallback,
    resolve_weights,
)
from unet.predict import TTA_HELP, Predictor
from unet.settings import InferenceSettings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # otherwise Gradio looks up its servers at launch
import gradio as gr

EXAMPLES = Path(__file__).resolve().parent / "examples"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_OPACITY = 0.5
# The threshold, the test-time augmentation and the least region confidence are the model's own, chosen on its
# validation set (`inference.json` beside its weights, `unet.settings`). The checkbox turns on the model's test-time
# augmentation, or, for a model that serves one view by default, the image and its left-right mirror image.
MAX_FILE_SIZE = "20mb"
STRICT_ENV = "UNET_STRICT_WEIGHTS"  # set to 1: weights that do not load stop the app instead of a fallback
# One run at a time: a forward pass already uses every core, so a second one would only slow both down.
CONCURRENCY_LIMIT = 1
QUEUE_SIZE = 16  # further visitors are told the queue is full rather than left waiting minutes
IMAGE_HEIGHT = 300
NO_RESULT = "Upload an image to see its segmentation."

# What one run returns, in the order of the `outputs` list in `build_demo`: the mask file first, as the API says.
# Pictures are PNG files (`DemoResult.picture_files` says why).
Outputs = tuple[
    str | None,  # mask PNG (class indices, full size)
    str | None,  # prediction overlay
    str | None,  # ground-truth overlay
    str | None,  # error map
    dict[str, Any] | None,  # scores as JSON
    str,  # scores as Markdown
    str | None,  # overlay PNG (full size)
    str | None,  # the image as the model saw it
    tuple[str, str] | None,  # before / after
]
NO_OUTPUTS: Outputs = (None, None, None, None, None, NO_RESULT, None, None, None)


# ----------------------------------------------------------------------------------------------------------------
# Handlers


def _outputs(result: DemoResult) -> Outputs:
    files = {name: None if path is None else str(path) for name, path in result.picture_files().items()}
    return (
        str(result.mask_file),
        files["overlay"],
        files["truth_overlay"],
        files["error_map"],
        result.scores,
        result.table,
        str(result.overlay_file),
        files["image"],
        (files["image"], files["overlay"]),
    )


def augmentation_views(settings: InferenceSettings) -> str:
    """The test-time augmentation the checkbox turns on: the model's own, else the image and its mirror image."""
    return settings.tta if settings.tta != "none" else "hflip"


def segment_image(
    predictor: Predictor,
    views: str,
    image: ImageInput | None,
    ground_truth: ImageInput | None,
    threshold: float,
    opacity: float,
    augment: bool,
    min_confidence: float,
) -> Outputs:
    """Segment an image and score it against the ground truth when one is given; bad input becomes a `gr.Error`.

    `augment` (the checkbox) turns on the test-time augmentation `views`.
    """
    tta = views if augment else "none"
    try:
        return _outputs(segment(predictor, image, ground_truth, threshold, opacity, tta, min_confidence))
    except InputError as error:
        raise gr.Error(str(error), title="Cannot use this input", print_exception=False) from error


def handlers(
    predictor: Predictor, settings: InferenceSettings
) -> tuple[Callable[..., Outputs], Callable[..., Outputs]]:
    """The page's two handlers, the model's settings as their defaults: `run` (the Run button and the /segment
    API) and `run_new` (a new upload; clearing the image clears the results instead of asking for an image).

    Gradio's API reads their signatures: the parameters are the page's inputs, in order, with these defaults.
    """
    views = augmentation_views(settings)

    def run(
        image: ImageInput | None,
        ground_truth: ImageInput | None = None,
        threshold: float = settings.threshold,
        opacity: float = DEFAULT_OPACITY,
        augment: bool = settings.tta != "none",
        min_confidence: float = settings.min_confidence,
    ) -> Outputs:
        return segment_image(predictor, views, image, ground_truth, threshold, opacity, augment, min_confidence)

    @functools.wraps(run)  # the same signature for Gradio
    def run_new(image: ImageInput | None, *rest: Any) -> Outputs:
        return NO_OUTPUTS if image is None else run(image, *rest)

    return run, run_new


# ----------------------------------------------------------------------------------------------------------------
# Layout and wiring


def build_demo(predictor: Predictor, info: WeightsInfo, warning: str | None = None) -> gr.Blocks:
    """The page for `predictor`, with its queue set: inputs, results, examples, the model panel and the API.

    Args:
        predictor: The model the page runs.
        info: Where its weights came from (`load_model_with_fallback`).
        warning: The fallback warning of `load_model_with_fallback`: shown as a banner when given.
    """
    model = predictor.model
    settings = info.settings
    curves = curves_file(info)
    folder = examples_folder(EXAMPLES, model, info)
    examples = example_pairs(folder) if folder is not None else []
    run, run_new = handlers(predictor, settings)

    with gr.Blocks(title="U-Net segmentation", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# U-Net segmentation\n"
            f"{model_summary(model)} Upload, drop, paste or photograph an image to segment it. Add its "
            "ground-truth mask to see IoU, Dice and where the prediction is wrong (a mask of class indices 0, 1, ... "
            "looks black in its box; the results draw it in colour).",
            elem_id="intro",
        )
        gr.Markdown(warning_markdown(warning), visible=bool(warning), container=True, elem_id="warning")

        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                image = gr.Image(
                    label="Image",
                    sources=["upload", "clipboard", "webcam"],
                    type="filepath",
                    format="png",
                    height=IMAGE_HEIGHT,
                    elem_id="image",
                )
                ground_truth = gr.Image(
                    label="Ground-truth mask (optional): PNG of class indices, or 0/255",
                    sources=["upload", "clipboard"],
                    type="filepath",
                    format="png",
                    image_mode=None,  # keep the class indices: never convert a mask to RGB
                    height=IMAGE_HEIGHT // 2,
                    elem_id="ground-truth",
                )
                threshold = gr.Slider(
                    0.0,
                    1.0,
                    value=settings.threshold,
                    step=0.05,
                    label="Threshold: foreground probability from which a pixel is foreground",
                    visible=model.is_binary,
                    elem_id="threshold",
                )
                opacity = gr.Slider(
                    0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", elem_id="opacity"
                )
                augment = gr.Checkbox(
                    value=settings.tta != "none",
                    label=f"Test-time augmentation: {TTA_HELP[augmentation_views(settings)]}",
                    elem_id="augment",
                )
                min_confidence = gr.Slider(
                    0.0,
                    1.0,
                    value=settings.min_confidence,
                    step=0.05,
                    label="Least region confidence: drop regions whose mean probability is below it (0 keeps all)",
                    elem_id="min-confidence",
                )
                run_button = gr.Button("Run", variant="primary", elem_id="run")

            with gr.Column(scale=2, min_width=400):
                before_after = gr.ImageSlider(
                    label="Before / after: drag the handle",
                    format="png",
                    type="pil",
                    interactive=False,
                    max_height=520,
                    elem_id="before-after",
                )
                scores = gr.Markdown(NO_RESULT, label="Scores table", elem_id="scores")
                with gr.Row():
                    mask_file = gr.File(label="Mask PNG (class indices, full size)", elem_id="mask-file")
                    overlay_file = gr.File(label="Overlay PNG (full size)", elem_id="overlay-file")

        with gr.Row(equal_height=True):
            shown = gr.Image(label="Image", format="png", interactive=False, elem_id="image-shown")
            prediction = gr.Image(label="Prediction", format="png", interactive=False, elem_id="prediction")
            truth_overlay = gr.Image(label="Ground truth", format="png", interactive=False, elem_id="truth-overlay")
            error_map = gr.Image(
                label="Error map (needs a ground truth)", format="png", interactive=False, elem_id="error-map"
            )
        if not model.is_binary:  # which colour is which class: a binary model draws one
            gr.HTML(class_legend_html(model), elem_id="class-legend")
        gr.HTML(error_legend_html(model.background_class), elem_id="error-legend")
        with gr.Accordion("Scores as JSON (what the /segment API returns)", open=False, elem_id="json-panel"):
            scores_json = gr.JSON(label="Scores", open=True, elem_id="scores-json")

        inputs = [image, ground_truth, threshold, opacity, augment, min_confidence]
        outputs = [
            mask_file,
            prediction,
            truth_overlay,
            error_map,
            scores_json,
            scores,
            overlay_file,
            shown,
            before_after,
        ]
        if examples:
            gr.Examples(
                # The defaults travel with each example, so a click also resets the sliders the cached result used.
                examples=[
                    [
                        str(picture),
                        str(mask),
                        settings.threshold,
                        DEFAULT_OPACITY,
                        settings.tta != "none",
                        settings.min_confidence,
                    ]
                    for picture, mask in examples
                ],
                inputs=inputs,
                outputs=outputs,
                fn=run,
                cache_examples=True,
                cache_mode="lazy",
                preprocess=False,
                visible_columns=[0],
                label="Examples from the held-out test split: click one to load the photo and its true mask",
                api_name="load_example",
                elem_id="examples",
            )

        with gr.Accordion("Model", open=bool(warning), elem_id="model-panel"):
            gr.Markdown(model_panel(model, info, warning), elem_id="model-info")
            if curves is not None:
                gr.Image(str(curves), label="Training curves", format="png", interactive=False, elem_id="curves")
            with gr.Accordion("Model card", open=False, elem_id="model-card-panel"):
                gr.Markdown(model_card_text(info), elem_id="model-card")

        run_button.click(run, inputs, outputs, api_name="segment", preprocess=False)
        gr.on(
            [image.change, ground_truth.change],
            run_new,
            inputs,
            outputs,
            api_name="segment_new_input",
            api_visibility="undocumented",
            preprocess=False,
            trigger_mode="always_last",
        )
    return demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def launch(demo: gr.Blocks, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, share: bool = False) -> None:
    """Start serving `demo` without blocking; say plainly when a requested share link could not be made."""
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_FILE_SIZE,
        prevent_thread_lock=True,
    )
    if share and not demo.share_url:
        print(
            "\nNo public link was created: Gradio could not reach its share server (is this machine offline?). "
            f"The demo runs only at {demo.local_url} ; to reach it from another machine, start it with "
            "--host 0.0.0.0 on a network you trust, or deploy it.",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
        help=f"address to serve on (default: $GRADIO_SERVER_NAME, else {DEFAULT_HOST}; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=os.environ.get("GRADIO_SERVER_PORT", str(DEFAULT_PORT)),
        help=f"port to serve on (default: $GRADIO_SERVER_PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument("--share", action="store_true", help="also ask Gradio for a temporary public link")
    add_weights_argument(parser)
    parser.add_argument(
        "--strict-weights",
        action="store_true",
        default=os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"},
        help=f"exit with an error when the weights do not load, instead of serving the bundled model "
        f"(default: ${STRICT_ENV})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("unet").setLevel(logging.INFO)  # which weights loaded; not every HTTP request Gradio makes

    try:
        if args.strict_weights:  # a deployment that must serve these weights or nothing
            model, info = load_model(resolve_weights(args.weights))
            warning = None
        else:
            model, info, warning = load_model_with_fallback(args.weights)
    except WeightsError as error:
        sys.exit(f"error: {error}")
    # Examples are cached at first use; a folder per server keeps results of other weights from showing up.
    if "GRADIO_EXAMPLES_CACHE" not in os.environ:
        cache = tempfile.mkdtemp(prefix="unet-demo-examples-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop by a service manager also runs atexit
        os.environ["GRADIO_EXAMPLES_CACHE"] = cache
    demo = build_demo(Predictor(model), info, warning)
    launch(demo, args.host, args.port, args.share)
    demo.block_thread()


if __name__ == "__main__":
    main()
