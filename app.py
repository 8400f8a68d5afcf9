"""The U-Net demo: pick a model, upload an image (and, to score it, its true mask), see the segmentation and IoU/Dice.

    python app.py [--host H] [--port P] [--share] [--weights FOLDER|USER/NAME[@REV] ...] [--strict-weights]

This file only lays out the page and wires its events; the models come from `unet.catalog`, what the page says of
them from `unet.describe`, and every step of the work is in `unet.demo`. The page is laid out and answering before
PyTorch is imported: the models load beside it, and a request that comes first waits for them. The same run is the
`/segment` API endpoint:
`gradio_client.Client(URL).predict(handle_file("photo.jpg"), None, model="camvid", api_name="/segment")`.
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
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet.catalog import ServedModel, describe_catalog, load_catalog, load_models, requested_sources
from unet.describe import (
    class_colors_hex,
    class_legend_html,
    curves_file,
    error_legend_html,
    model_card_text,
    model_panel,
    visitor_text,
    warning_markdown,
)
from unet.hub import WEIGHTS_ENV, WeightsError, add_timeout_argument
from unet.settings import TTA_HELP, InferenceSettings

if TYPE_CHECKING:  # `unet.demo` imports PyTorch: the handlers import it when the first request comes
    from unet.demo import DemoResult, ImageInput, Segmentation

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # otherwise Gradio looks up its servers at launch
import gradio as gr
from gradio import tunneling

EXAMPLES = Path(__file__).resolve().parent / "examples"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_OPACITY = 0.5
# The threshold and the least region confidence are each model's own, chosen on its validation set (`inference.json`
# beside its weights, `unet.settings`). The page and the API run one view by default, whatever the model's own
# test-time augmentation: its checkbox turns that on (or, for a model of one view, the image and its mirror image),
# at the cost its label says.
MAX_FILE_SIZE = "20mb"
STRICT_ENV = "UNET_STRICT_WEIGHTS"  # set to 1: weights that do not load stop the app instead of being left out
# One run at a time: a forward pass already uses every core, so a second one would only slow both down.
CONCURRENCY_LIMIT = 1
QUEUE_SIZE = 16  # further visitors are told the queue is full rather than left waiting minutes
IMAGE_HEIGHT = 260
NO_RESULT = "Upload an image to see its segmentation."

# What one run returns, in the order of the `outputs` list in `build_demo`: the mask file first, as the API says.
# Pictures are PNG files (`DemoResult.picture_files` says why); the upload itself is never sent back.
Outputs = tuple[
    str | None,  # mask PNG (class indices, full size)
    str | None,  # prediction overlay (display size; its download button gives the file)
    str | None,  # ground-truth overlay
    str | None,  # error map
    dict[str, Any] | None,  # scores as JSON
    str,  # scores as Markdown
]
NO_OUTPUTS: Outputs = (None, None, None, None, None, NO_RESULT)
LAST_RUN_TTL_S = 600  # a visitor's last segmentation (about 12 MB at 512x512) is dropped after this long


@dataclass(frozen=True)
class LastRun:
    """A visitor's last segmentation (kept in a `gr.State`) and the inputs it was made from: new drawing settings
    for the same inputs are applied to it without running the network again."""

    inputs: tuple[str, str | None, str | None, str]  # model, image file, ground-truth file, test-time augmentation
    segmentation: Segmentation


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
    )


def augmentation_views(settings: InferenceSettings) -> str:
    """The test-time augmentation the checkbox turns on: the model's own, else the image and its mirror image."""
    return settings.tta if settings.tta != "none" else "hflip"


def segment_image(
    served: ServedModel,
    image: ImageInput | None,
    ground_truth: ImageInput | None,
    threshold: float,
    opacity: float,
    augment: bool,
    min_confidence: float,
    downloads: Path | None = None,
    last: LastRun | None = None,
) -> tuple[Outputs, LastRun]:
    """Segment an image with `served` and score it against the ground truth when one is given; bad input becomes a
    `gr.Error`. `augment` (the checkbox) turns on its test-time augmentation (`augmentation_views`); the run's files
    go under `downloads` (`unet.demo.segment`). When `last` was made from the same model, files and augmentation,
    its segmentation is drawn again at the new settings instead (`unet.demo.redraw`)."""
    from unet.demo import InputError, redraw, segment, upload_path

    tta = augmentation_views(served.settings) if augment else "none"
    try:
        predictor = served.predictor  # waits while the model loads
    except WeightsError as error:
        raise gr.Error(visitor_text(str(error)), title="Model unavailable", print_exception=False) from error
    files = [upload_path(value) for value in (image, ground_truth)]  # whether two runs had the same input
    inputs = (served.name, *(str(path) if isinstance(path, str | Path) else None for path in files), tta)
    try:
        if last is not None and last.inputs == inputs:
            result = redraw(predictor, last.segmentation, threshold, opacity, min_confidence, downloads=downloads)
        else:
            result = segment(
                predictor, image, ground_truth, threshold, opacity, tta, min_confidence, downloads=downloads
            )
    except InputError as error:
        raise gr.Error(str(error), title="Cannot use this input", print_exception=False) from error
    return _outputs(result), LastRun(inputs, result.segmentation)


def handlers(
    models: Sequence[ServedModel], downloads: Path | None = None
) -> tuple[Callable[..., tuple], Callable[..., tuple], Callable[..., tuple]]:
    """The page's handlers, each returning the outputs and the visitor's `LastRun`: `run` (the Run button; without
    the `LastRun`, `api_run`, the /segment API), `run_new` (a new upload; clearing the image clears the results
    instead of asking for an image) and `restyle` (new settings: the last segmentation drawn again when its inputs
    are the same, else a run).

    Gradio's API reads their signatures: the parameters are the page's inputs, in order, with the page's starting
    values as defaults: the first model and its settings. Choosing another model on the page also sets its
    settings; an API call that names another model gives them (or takes the first model's).
    """
    by_name = {served.name: served for served in models}
    settings = models[0].settings

    def segment_with(
        model: str,
        image: ImageInput | None,
        ground_truth: ImageInput | None,
        threshold: float,
        opacity: float,
        augment: bool,
        min_confidence: float,
        last: LastRun | None = None,
    ) -> tuple[Any, ...]:
        if model not in by_name:
            raise gr.Error(
                f"There is no model {model!r} here: choose one of {', '.join(by_name)}.",
                title="Unknown model",
                print_exception=False,
            )
        outputs, kept = segment_image(
            by_name[model], image, ground_truth, threshold, opacity, augment, min_confidence, downloads, last
        )
        return (*outputs, kept)

    def run(
        image: ImageInput | None,
        ground_truth: ImageInput | None = None,
        threshold: float = settings.threshold,
        opacity: float = DEFAULT_OPACITY,
        augment: bool = False,
        min_confidence: float = settings.min_confidence,
        model: str = models[0].name,
    ) -> tuple[Any, ...]:
        return segment_with(model, image, ground_truth, threshold, opacity, augment, min_confidence)

    @functools.wraps(run)  # the same signature for Gradio
    def run_new(image: ImageInput | None, *rest: Any) -> tuple[Any, ...]:
        return (*NO_OUTPUTS, None) if image is None else run(image, *rest)

    def restyle(
        image: ImageInput | None,
        ground_truth: ImageInput | None,
        threshold: float,
        opacity: float,
        augment: bool,
        min_confidence: float,
        model: str,
        last: LastRun | None,
    ) -> tuple[Any, ...]:
        if image is None:  # a setting changed before any image: nothing to draw
            return (*NO_OUTPUTS, None)
        return segment_with(model, image, ground_truth, threshold, opacity, augment, min_confidence, last)

    return run, run_new, restyle


def api_run(run: Callable[..., tuple]) -> Callable[..., Outputs]:
    """`run` without the kept segmentation: the /segment API's handler, with `run`'s signature for Gradio."""

    @functools.wraps(run)
    def segment_api(*args: Any, **kwargs: Any) -> Outputs:
        return run(*args, **kwargs)[: len(NO_OUTPUTS)]

    return segment_api


def example_runner(segment_api: Callable[..., Outputs], served: ServedModel) -> Callable[..., Outputs]:
    """The API's run (`api_run`) with the model fixed: what `served`'s examples are cached with."""

    def run_example(
        image: ImageInput, ground_truth: ImageInput, threshold: float, opacity: float, augment: bool, confidence: float
    ) -> Outputs:
        return segment_api(image, ground_truth, threshold, opacity, augment, confidence, served.name)

    return run_example


def model_view(served: ServedModel) -> dict[str, dict[str, Any]]:
    """What the page shows of a model, part by part, as each part's constructor arguments (or `gr.update`'s): its
    description, legends, controls, panel and card."""
    settings, labels = served.settings, served.labels
    curves = curves_file(served.info)
    return {
        "summary": {"value": served.summary},
        "class_legend": {"value": class_legend_html(labels), "visible": not labels.is_binary},
        "error_legend": {"value": error_legend_html(labels.background_class)},
        "threshold": {"value": settings.threshold, "visible": labels.is_binary},
        "augment": {
            "value": False,
            "label": f"Test-time augmentation: {TTA_HELP[augmentation_views(settings)]}",
        },
        "min_confidence": {"value": settings.min_confidence},
        "model_info": {"value": model_panel(labels, served.info)},
        "curves": {"value": None if curves is None else str(curves), "visible": curves is not None},
        "card": {"value": model_card_text(served.info)},
        "highlight": {"value": None, "color_map": class_colors_hex(labels)},
    }


def highlight_handler(models: Sequence[ServedModel]) -> Callable[..., Any]:
    """The handler of the class highlight: the image at display size with one region a class, from the image and
    the last result's mask file; nothing is drawn while its panel is closed."""
    by_name = {served.name: served for served in models}

    def highlight(image: ImageInput | None, mask_file: str | None, model: str, is_open: bool) -> Any:
        from unet.demo import DISPLAY_MAX_SIDE, InputError, class_regions, read_image
        from unet.preprocessing import load_mask, resize_for_model

        if not is_open:
            return gr.skip()
        if image is None or mask_file is None or model not in by_name:
            return None
        try:
            picture = resize_for_model(read_image(image), DISPLAY_MAX_SIDE)
        except InputError:  # the upload changed under the result: nothing to point at
            return None
        return picture, class_regions(load_mask(mask_file), by_name[model].labels, picture.size)

    return highlight


# ----------------------------------------------------------------------------------------------------------------
# Layout and wiring


def build_demo(models: Sequence[ServedModel], warning: str | None = None, downloads: Path | None = None) -> gr.Blocks:
    """The page for `models` (the first is the default), with its queue set: the picker, inputs, results, each
    model's examples, the model panel and the API.

    Args:
        models: The served models (`unet.catalog.describe_catalog`; they may still be loading).
        warning: What was left out (`describe_catalog`): shown as a banner when given.
        downloads: The folder of the runs' files (`unet.demo.segment`; default one in the system's temporary folder).
    """
    first = models[0]
    view = model_view(first)
    run, run_new, restyle = handlers(models, downloads)
    segment_api = api_run(run)

    with gr.Blocks(title="U-Net segmentation", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# U-Net segmentation", elem_id="title")
        gr.Markdown(warning_markdown(warning), visible=bool(warning), container=True, elem_id="warning")
        with gr.Row(equal_height=True):
            model_choice = gr.Dropdown(
                [(served.label, served.name) for served in models],
                value=first.name,
                label="Model",
                scale=1,
                min_width=220,
                elem_id="model",
            )
            summary = gr.Markdown(elem_id="summary", **view["summary"])

        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                image = gr.Image(
                    label="Image: upload, drop, paste or photograph",
                    sources=["upload", "clipboard", "webcam"],
                    type="filepath",
                    format="png",
                    height=IMAGE_HEIGHT,
                    elem_id="image",
                )
                ground_truth = gr.Image(
                    label="Ground-truth mask (optional): PNG of class indices",  # one line: two cover the drop text
                    sources=["upload", "clipboard"],
                    type="filepath",
                    format="png",
                    image_mode=None,  # keep the class indices: never convert a mask to RGB
                    height=IMAGE_HEIGHT // 2,
                    elem_id="ground-truth",
                )
                run_button = gr.Button("Run", variant="primary", elem_id="run")
                example_sets = [gr.Column(visible=served is first) for served in models]
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    threshold = gr.Slider(
                        0.0,
                        1.0,
                        step=0.05,
                        label="Threshold: foreground probability from which a pixel is foreground",
                        elem_id="threshold",
                        **view["threshold"],
                    )
                    opacity = gr.Slider(
                        0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", elem_id="opacity"
                    )
                    augment = gr.Checkbox(elem_id="augment", **view["augment"])
                    min_confidence = gr.Slider(
                        0.0,
                        1.0,
                        step=0.05,
                        label="Least region confidence: drop regions whose mean probability is below it (0 keeps all)",
                        elem_id="min-confidence",
                        **view["min_confidence"],
                    )

            with gr.Column(scale=2, min_width=400):
                prediction = gr.Image(
                    label="Prediction (the overlay's download is at most 1024 px; set the opacity to 0 for the photo)",
                    format="png",
                    interactive=False,
                    height=480,
                    elem_id="prediction",
                )
                class_legend = gr.HTML(elem_id="class-legend", **view["class_legend"])
                scores = gr.Markdown(NO_RESULT, label="Scores table", elem_id="scores")
                mask_file = gr.File(label="Mask PNG (class indices, full size)", elem_id="mask-file")

        with gr.Row(equal_height=True):
            truth_overlay = gr.Image(label="Ground truth", format="png", interactive=False, elem_id="truth-overlay")
            error_map = gr.Image(
                label="Error map (needs a ground truth)", format="png", interactive=False, elem_id="error-map"
            )
        error_legend = gr.HTML(elem_id="error-legend", **view["error_legend"])
        with gr.Accordion(
            "Highlight a class: point at its name under the picture", open=False, elem_id="highlight-panel"
        ) as highlight_panel:
            highlight = gr.AnnotatedImage(
                format="png", height=420, label="Prediction, a region a class", elem_id="highlight", **view["highlight"]
            )
        highlight_open = gr.State(False)
        last_run = gr.State(None, time_to_live=LAST_RUN_TTL_S)
        with gr.Accordion("Scores as JSON (what the /segment API returns)", open=False, elem_id="json-panel"):
            scores_json = gr.JSON(label="Scores", open=True, elem_id="scores-json")

        with gr.Accordion("Model", open=False, elem_id="model-panel"):
            model_info = gr.Markdown(elem_id="model-info", **view["model_info"])
            curves = gr.Image(
                label="Training curves", format="png", interactive=False, elem_id="curves", **view["curves"]
            )
            with gr.Accordion("Model card", open=False, elem_id="model-card-panel"):
                card = gr.Markdown(elem_id="model-card", **view["card"])

        inputs = [image, ground_truth, threshold, opacity, augment, min_confidence, model_choice]
        outputs = [mask_file, prediction, truth_overlay, error_map, scores_json, scores]
        kept = [*outputs, last_run]  # what the page's runs return: the outputs and the visitor's last segmentation
        for index, (served, column) in enumerate(zip(models, example_sets, strict=True)):
            if not served.examples:
                continue
            settings = served.settings
            with column:
                gr.Examples(
                    # The model's defaults travel with each example, so a click also resets the settings the cached
                    # result used.
                    examples=[
                        [
                            str(picture),
                            str(mask),
                            settings.threshold,
                            DEFAULT_OPACITY,
                            False,
                            settings.min_confidence,
                        ]
                        for picture, mask in served.examples
                    ],
                    inputs=inputs[:-1],
                    outputs=outputs,
                    fn=example_runner(segment_api, served),
                    cache_examples=True,
                    cache_mode="lazy",
                    preprocess=False,
                    visible_columns=[0],
                    label="Examples from the held-out test split: click one for the photo, its true mask and "
                    "the scores",
                    api_name=f"load_example_{index}",
                    elem_id=f"examples-{index}",
                )

        def show_model(name: str) -> tuple[Any, ...]:
            shown = next(served for served in models if served.name == name)
            parts = model_view(shown)
            visible = [gr.update(visible=served is shown) for served in models]
            return (*[gr.update(**parts[key]) for key in view], *visible, None, *NO_OUTPUTS, None)

        parts = [
            summary,
            class_legend,
            error_legend,
            threshold,
            augment,
            min_confidence,
            model_info,
            curves,
            card,
            highlight,
        ]
        assert len(parts) == len(view)
        # A new model: its description, controls and examples; the ground truth of the last one may not fit it, so
        # it goes, and an image already there is segmented again.
        model_choice.input(
            show_model, model_choice, [*parts, *example_sets, ground_truth, *kept], api_visibility="private"
        ).then(run_new, inputs, kept, preprocess=False, api_visibility="private", trigger_mode="always_last")
        # Each run first clears the last one's results, so an error never stands under another image's figures.
        run_button.click(lambda: NO_OUTPUTS, None, outputs, queue=False, api_visibility="private").then(
            run, inputs, kept, api_visibility="private", preprocess=False
        )
        # The API's /segment is the same run, keeping nothing for its caller: a client never redraws, and a kept
        # segmentation per API session would only take memory.
        api = gr.Button(visible=False, elem_id="api")
        api.click(segment_api, inputs, outputs, api_name="segment", preprocess=False)
        # New settings for the same inputs draw the last segmentation again; the network runs only when the
        # test-time augmentation changes (or the inputs did, say after an example's click).
        gr.on(
            [threshold.input, opacity.input, min_confidence.input, augment.input],
            restyle,
            [*inputs, last_run],
            kept,
            api_visibility="private",
            preprocess=False,
            trigger_mode="always_last",
        )
        # `input`, not `change`: an example click sets these too, and its cached result is already on the way.
        gr.on(
            [image.input, ground_truth.input],
            lambda: NO_OUTPUTS,
            None,
            outputs,
            queue=False,
            api_visibility="private",
            trigger_mode="always_last",
        ).then(
            run_new,
            inputs,
            kept,
            api_name="segment_new_input",
            api_visibility="undocumented",
            preprocess=False,
            trigger_mode="always_last",  # a second upload while the first runs is run after it, never dropped
        )
        # The class highlight is drawn only while its panel is open: when it opens, and after each run.
        highlight_inputs = [image, mask_file, model_choice, highlight_open]
        show_highlight = highlight_handler(models)
        highlight_panel.expand(lambda: True, None, highlight_open, api_visibility="private").then(
            show_highlight, highlight_inputs, highlight, api_visibility="private"
        )
        highlight_panel.collapse(lambda: False, None, highlight_open, api_visibility="private")
        mask_file.change(show_highlight, highlight_inputs, highlight, api_visibility="private")
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
        if Path(tunneling.BINARY_PATH).is_file():
            cause = "Gradio's share server did not answer"
        else:  # downloaded at the first --share: offline, it never arrives
            cause = "Gradio's tunnel program (frpc), which it downloads at the first --share, could not be downloaded"
        print(
            f"\nNo public link was created: {cause} (is this machine offline?). The demo runs only at "
            f"{demo.local_url} ; to reach it from another machine, start it with --host 0.0.0.0 on a network you "
            "trust, or deploy it.",
            flush=True,
        )


def scratch_folder() -> Path:
    """A folder of this server's own for every file it writes, removed when it stops (also on SIGTERM and Ctrl-C):
    the runs' downloads, the examples' cache (a folder per server keeps results of other weights from showing up),
    Gradio's uploads and cache (unless `GRADIO_EXAMPLES_CACHE` or `GRADIO_TEMP_DIR` name folders of their own), and,
    as the process's temporary folder, whatever else a library writes there (onnxruntime's session file, say)."""
    scratch = Path(tempfile.mkdtemp(prefix="unet-demo-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop by a service manager also runs atexit
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(scratch / "examples"))
    os.environ.setdefault("GRADIO_TEMP_DIR", str(scratch / "gradio"))
    os.environ["TMPDIR"] = str(scratch)  # Gradio also serves files from the temporary folder: the runs' among them
    tempfile.tempdir = None  # `tempfile` looks the folder up again, from TMPDIR
    return scratch


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
    parser.add_argument(
        "--weights",
        action="append",
        metavar="FOLDER|USER/NAME[@REV]",
        help="more weights for the picker, after the bundled street-scene and composites models: a folder with "
        f"config.json + model.safetensors or a Hub repo id (pin a commit sha); repeat for several (default: "
        f"${WEIGHTS_ENV}, several separated by commas)",
    )
    parser.add_argument(
        "--strict-weights",
        action="store_true",
        default=os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"},
        help=f"exit with an error when any weights do not load, instead of leaving them out of the picker "
        f"(default: ${STRICT_ENV})",
    )
    add_timeout_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("unet").setLevel(logging.INFO)  # which weights loaded; not every HTTP request Gradio makes

    # Strict: every network is built before serving, so that one that does not build stops the app. Otherwise the
    # page is laid out from the models' files alone and answers while they load.
    catalog = load_catalog if args.strict_weights else describe_catalog
    try:
        models, warning = catalog(
            requested_sources(args.weights),
            strict=args.strict_weights,
            examples_root=EXAMPLES,
            timeout_s=args.hub_timeout,
        )
    except WeightsError as error:
        sys.exit(f"error: {error}")
    demo = build_demo(models, warning, downloads=scratch_folder() / "runs")
    launch(demo, args.host, args.port, args.share)
    # The page answers at once; meanwhile the networks are built and each one's fastest agreeing way to run is
    # chosen (eager until then).
    stop = threading.Event()
    loader = threading.Thread(target=load_models, args=(models, stop), name="load-models")
    loader.start()
    try:
        demo.block_thread()
    finally:  # a stop (SIGTERM, Ctrl-C) waits for the loading to give up: a network built, an export, a forward pass
        stop.set()
        loader.join()


if __name__ == "__main__":
    main()
