"""The Gradio app through a real server: the /segment API, its scores, its errors, the page's parts and the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from app_helpers import (
    EXAMPLE_IMAGE,
    EXAMPLE_MASK,
    ROOT,
    free_port,
    save_tiny_checkpoint,
    start_app,
    stop,
    wait_until_up,
)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
from unet import metrics
from unet.catalog import ServedModel, describe_catalog, load_catalog, load_models
from unet.demo import segment
from unet.hub import WeightsError, load_model
from unet.model import UNet
from unet.predict import Predictor
from unet.preprocessing import load_mask

WARNING = "Not every model loaded, so the picker lists only the others. Could not load user/missing: offline."
# The /segment outputs, in order (see app.Outputs).
MASK, PREDICTION, TRUTH, ERRORS, JSON, TABLE = range(6)
CLASSES = ["sky", "road", "car"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3-class model without a background class, as a second model for the picker."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("three") / "three-classes"
    UNet(num_classes=3, base_width=4, depth=2, class_names=CLASSES, background_class=None).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(weights: Path, three_classes: Path) -> list[ServedModel]:
    """The tiny binary model first (the default), the 3-class one second; each with the examples it gets."""
    served, warning = load_catalog([str(weights), str(three_classes)], bundled=(), examples_root=app.EXAMPLES)
    assert warning is None
    return served


@pytest.fixture(scope="module")
def predictor(models: list[ServedModel]) -> Predictor:
    return models[0].predictor


@pytest.fixture(scope="module")
def demo(models: list[ServedModel], tmp_path_factory: pytest.TempPathFactory) -> Iterator[gr.Blocks]:
    """The app with both tiny models and a warning, served in this process on a free port."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("examples-cache")))
        blocks = app.build_demo(models, WARNING)
    app.launch(blocks, "127.0.0.1", free_port())
    yield blocks
    blocks.close()


@pytest.fixture(scope="module")
def client(demo: gr.Blocks) -> Client:
    return Client(demo.local_url, verbose=False)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def scores_from_metrics(mask: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    return {"iou": list(metrics.iou(mask, truth, 2)), "dice": list(metrics.dice(mask, truth, 2))}


def components(demo: gr.Blocks) -> list[gr.components.Component]:
    return [block for block in demo.blocks.values() if isinstance(block, gr.components.Component)]


def test_page_parts_have_ids_png_images_and_named_events(demo: gr.Blocks) -> None:
    parts = components(demo)
    by_id = {part.elem_id: part for part in parts}
    shown = [part for part in parts if not isinstance(part, gr.State)]  # a State is no part of the page
    assert all(part.elem_id for part in shown), [type(part).__name__ for part in shown if not part.elem_id]
    images = [part for part in parts if isinstance(part, gr.Image)]
    assert {image.format for image in images} == {"png"}
    assert by_id["image"].sources == ["upload", "clipboard", "webcam"]
    assert by_id["image"].type == by_id["ground-truth"].type == "filepath"
    for name in ("prediction", "truth-overlay", "error-map", "scores", "scores-json", "mask-file"):
        assert name in by_id
    assert by_id["warning"].visible and WARNING in by_id["warning"].value
    assert by_id["model"].choices == [("tiny (binary)", "tiny"), ("three-classes (3 classes)", "three-classes")]
    assert by_id["model"].value == "tiny"
    assert "true positive" in by_id["error-legend"].value
    assert "examples-0" in by_id and "examples-1" not in by_id  # the 3-class model gets no clip-art examples
    assert all(function.api_name for function in demo.fns.values())
    segment_api = next(function for function in demo.fns.values() if function.api_name == "segment")
    assert not any(isinstance(output, gr.State) for output in segment_api.outputs)  # API callers keep nothing


def test_segment_with_ground_truth_returns_the_scores_of_its_mask(client: Client) -> None:
    # Every region kept, as the network predicts them: the scores are checked against the mask's own.
    result = client.predict(
        handle_file(EXAMPLE_IMAGE), handle_file(EXAMPLE_MASK), min_confidence=0.0, api_name="/segment"
    )

    truth = load_mask(EXAMPLE_MASK, num_labels=2)
    with Image.open(result[MASK]) as mask_file:
        assert mask_file.format == "PNG" and mask_file.size == (truth.shape[1], truth.shape[0])
        mask = np.asarray(mask_file)
    assert set(np.unique(mask)) == {0, 1}  # the tiny model's threshold splits this image
    expected = scores_from_metrics(mask, truth)
    scores = result[JSON]
    for name in ("iou", "dice"):
        per_class = scores[name]["per_class"]
        assert [per_class["background"], per_class["foreground"]] == pytest.approx(expected[name], abs=1e-12)
        assert scores[name]["mean"] == pytest.approx(np.nanmean(expected[name]), abs=1e-12)
    assert f"**{scores['iou']['mean']:.4f}**" in result[TABLE]
    assert len(result) == len(app.NO_OUTPUTS)  # the visitor's kept segmentation is no output of the API
    for output in (PREDICTION, TRUTH, ERRORS):
        with Image.open(result[output]) as picture:
            assert picture.format == "PNG"


def test_segment_without_ground_truth_passes_the_other_inputs(client: Client, small_image: Path) -> None:
    result = client.predict(handle_file(small_image), None, 0.0, 0.3, True, 0.0, api_name="/segment")

    assert "iou" not in result[JSON] and result[TRUTH] is None and result[ERRORS] is None
    assert result[JSON]["foreground_share"] == 1.0  # threshold 0: every pixel is foreground
    assert result[JSON]["tta"] == "dihedral" and result[JSON]["min_confidence"] == 0.0
    # The same, with every region dropped: none is sure beyond probability 1.
    unsure = client.predict(handle_file(small_image), None, 0.0, 0.3, True, 1.0, api_name="/segment")
    assert unsure[JSON]["foreground_share"] == 0.0
    assert "Add the ground-truth mask" in result[TABLE]


def test_the_api_segments_like_unet_demo(client: Client, predictor: Predictor, weights: Path, tmp_path: Path) -> None:
    result = client.predict(handle_file(EXAMPLE_IMAGE), None, api_name="/segment")
    settings = load_model(weights)[1].settings  # the checkpoint's inference.json: the page's defaults, but one view
    assert settings.tta == "dihedral"
    direct = segment(predictor, EXAMPLE_IMAGE, min_confidence=settings.min_confidence, downloads=tmp_path)
    assert result[JSON]["min_confidence"] == settings.min_confidence and result[JSON]["tta"] == "none"
    with Image.open(result[MASK]) as mask_file:
        np.testing.assert_array_equal(np.asarray(mask_file), direct.mask)


def _text_file(folder: Path) -> tuple[Path, Path | None]:
    (folder / "notes.txt").write_text("not an image")
    return folder / "notes.txt", None


def _truncated_png(folder: Path) -> tuple[Path, Path | None]:
    (folder / "cut.png").write_bytes(EXAMPLE_MASK.read_bytes()[:200])
    return folder / "cut.png", None


def _huge_png(folder: Path) -> tuple[Path, Path | None]:
    Image.new("1", (5000, 4000)).save(folder / "huge.png")  # 20 megapixels in a few kilobytes
    return folder / "huge.png", None


def _truth_of_another_size(folder: Path) -> tuple[Path, Path | None]:
    Image.new("L", (20, 10)).save(folder / "small_truth.png")
    return EXAMPLE_IMAGE, folder / "small_truth.png"


def _truth_with_unknown_values(folder: Path) -> tuple[Path, Path | None]:
    truth = load_mask(EXAMPLE_MASK) * 3
    Image.fromarray(truth).save(folder / "threes.png")
    return EXAMPLE_IMAGE, folder / "threes.png"


BAD_INPUTS = {
    "text file": (_text_file, "Image: the file is not an image in a known format"),
    "truncated png": (_truncated_png, "Image: the image file is truncated or corrupt"),
    "huge image": (_huge_png, "5000x4000 = 20,000,000 pixels, more than the 16,777,216 allowed; downscale it first"),
    "truth of another size": (_truth_of_another_size, "Ground truth: the mask is 20x10 pixels but the image is"),
    "truth with unknown values": (
        _truth_with_unknown_values,
        "mask has values [0, 3]; this model predicts classes 0..1",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_its_message_and_the_next_call_works(
    client: Client, small_image: Path, tmp_path: Path, case: str
) -> None:
    make, words = BAD_INPUTS[case]
    image, truth = make(tmp_path)
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(image), handle_file(truth) if truth else None, api_name="/segment")
    assert words in str(raised.value)

    result = client.predict(handle_file(small_image), None, api_name="/segment")
    assert result[JSON]["image_size"] == [32, 24]


def test_main_exits_with_the_reason_when_no_weights_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(sources: list[str], **_) -> None:
        raise WeightsError(f"Could not load folder {sources[0]}: it does not exist")

    monkeypatch.setattr(app, "describe_catalog", fail)
    monkeypatch.setattr(app, "load_catalog", fail)
    for strict in ([], ["--strict-weights"]):
        with pytest.raises(SystemExit, match="error: Could not load folder /nowhere: it does not exist"):
            app.main(["--weights", "/nowhere", *strict])


def test_the_page_is_laid_out_without_pytorch(tmp_path: Path) -> None:
    script = (
        "import sys, app; models, warning = app.describe_catalog(examples_root=app.EXAMPLES); "
        "app.build_demo(models, warning); "
        "print(sorted(name for name in sys.modules if name.partition('.')[0] in {'torch', 'onnxruntime'}))"
    )
    env = {**os.environ, "GRADIO_EXAMPLES_CACHE": str(tmp_path / "cache"), "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_a_request_that_comes_before_its_model_has_loaded_waits_for_it(
    weights: Path, predictor: Predictor, tmp_path: Path
) -> None:
    models, _ = describe_catalog([str(weights)], bundled=())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "cache"))
        blocks = app.build_demo(models)
    app.launch(blocks, "127.0.0.1", free_port())
    try:
        job = Client(blocks.local_url, verbose=False).submit(
            handle_file(EXAMPLE_IMAGE), None, min_confidence=0.0, api_name="/segment"
        )
        time.sleep(1.0)
        assert not job.done()  # queued behind the model, not refused
        models[0].load()
        with Image.open(job.result(timeout=60)[MASK]) as mask_file:
            np.testing.assert_array_equal(np.asarray(mask_file), segment(predictor, EXAMPLE_IMAGE).mask)
    finally:
        blocks.close()


def test_a_server_that_stops_while_its_models_load_leaves_no_request_waiting(weights: Path) -> None:
    models, _ = describe_catalog([str(weights)], bundled=())
    stop = threading.Event()
    stop.set()
    load_models(models, stop)
    with pytest.raises(WeightsError, match="could not be loaded: the server is stopping"):
        models[0].predictor  # noqa: B018 (the property waits for the model)


def test_a_model_that_does_not_build_tells_its_visitors_and_the_others_serve(weights: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(weights, tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "base_width": 8}))  # the weights no longer fit
    models, warning = describe_catalog([str(weights), str(broken)], bundled=())
    assert warning is None and [served.name for served in models] == [weights.name, "broken"]  # its files are there
    load_models(models)
    run, _, _ = app.handlers(models)
    with pytest.raises(gr.Error, match=r"The model broken could not be loaded: .*does not fit") as raised:
        run(str(EXAMPLE_IMAGE), model="broken")
    assert str(tmp_path) not in str(raised.value)
    assert run(str(EXAMPLE_IMAGE), model=weights.name)[0] is not None


@pytest.mark.slow
def test_cli_serves_the_given_weights_and_says_when_share_fails(
    weights: Path, predictor: Predictor, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "app.log"
    process = start_app("--weights", str(weights), "--port", str(port), "--share", log=log)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, process, log)
        client = Client(url, verbose=False)
        api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/segment"]
        model = api["parameters"][-1]  # the bundled models first, the default; then the given weights
        assert (model["type"]["enum"], model["parameter_default"]) == (["camvid", "composites", weights.name], "camvid")
        result = client.predict(
            handle_file(EXAMPLE_IMAGE), None, 0.5, 0.5, False, 0.0, weights.name, api_name="/segment"
        )
        with Image.open(result[MASK]) as mask_file:
            np.testing.assert_array_equal(np.asarray(mask_file), segment(predictor, EXAMPLE_IMAGE).mask)

        deadline = time.monotonic() + 30  # the share attempt ends after the server answers
        while not re.search("No public link was created|Running on public URL", log.read_text()):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        output = log.read_text()
        offline = "Could not create share link" in output
        assert ("No public link was created" in output) == offline, output
        if offline:  # what failed: Gradio's tunnel program never arrived, or its server did not answer
            assert f"The demo runs only at {url}" in output
            assert ("Missing file" in output) == ("(frpc)" in output and "could not be downloaded" in output), output
        assert process.poll() is None, "the app must keep serving after a failed share link"
    finally:
        stop(process)


def test_clearing_the_image_clears_the_results_and_a_run_without_one_says_what_to_do(models: list[ServedModel]) -> None:
    run, run_new, _ = app.handlers(models)
    assert run_new(None, str(EXAMPLE_MASK)) == (*app.NO_OUTPUTS, None)
    with pytest.raises(gr.Error, match="No image yet: upload, drop, paste or take a photo first"):
        run(None)


def test_pictures_reach_gradio_as_png_files_of_the_run(models: list[ServedModel]) -> None:
    """Files, not images: Gradio renames a copied file into its cache, but writes an image over the cached copy of an
    identical earlier result while a browser may still be downloading it."""
    run, _, _ = app.handlers(models)
    outputs = run(str(EXAMPLE_IMAGE), str(EXAMPLE_MASK))
    run_folder = Path(outputs[MASK]).parent
    for picture in (outputs[PREDICTION], outputs[TRUTH], outputs[ERRORS]):
        assert isinstance(picture, str) and Path(picture).parent == run_folder
        with Image.open(picture) as opened:
            assert opened.format == "PNG"


def test_new_settings_for_the_same_inputs_draw_the_last_segmentation_again(
    models: list[ServedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _, restyle = app.handlers(models)
    last = run(str(EXAMPLE_IMAGE), str(EXAMPLE_MASK), 0.5, 0.5, False, 0.0)[-1]
    fresh = run(str(EXAMPLE_IMAGE), str(EXAMPLE_MASK), 0.3, 0.8, False, 0.6)
    forward_passes = []
    predictor = models[0].predictor
    monkeypatch.setattr(predictor, "forward", lambda batch: forward_passes.append(batch) or predictor.model(batch))

    *again, kept = restyle(str(EXAMPLE_IMAGE), str(EXAMPLE_MASK), 0.3, 0.8, False, 0.6, "tiny", last)
    assert forward_passes == [] and kept.segmentation is last.segmentation
    assert again[JSON]["reused"] and "drawn again" in again[TABLE]
    with Image.open(again[MASK]) as reused, Image.open(fresh[MASK]) as ran:
        np.testing.assert_array_equal(np.asarray(reused), np.asarray(ran))  # the same as running it all again
    for output in (PREDICTION, TRUTH, ERRORS):
        with Image.open(again[output]) as reused, Image.open(fresh[output]) as ran:
            np.testing.assert_array_equal(np.asarray(reused), np.asarray(ran))
    assert again[JSON]["iou"] == fresh[JSON]["iou"]
    assert restyle(None, None, 0.3, 0.8, False, 0.6, "tiny", last) == (*app.NO_OUTPUTS, None)  # no image: nothing
    # Other inputs (here no ground truth) or another test-time augmentation: the network runs.
    for changed in (
        (str(EXAMPLE_IMAGE), None, 0.3, 0.8, False),
        (str(EXAMPLE_IMAGE), str(EXAMPLE_MASK), 0.3, 0.8, True),
    ):
        before = len(forward_passes)
        restyle(*changed, 0.6, "tiny", last)
        assert len(forward_passes) > before


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_strict_weights_stop_the_app_instead_of_falling_back(tmp_path: Path, how: str, monkeypatch) -> None:
    missing = tmp_path / "no-such-weights"
    args = ["--weights", str(missing), "--port", str(free_port())]
    if how == "flag":
        args.append("--strict-weights")
    else:
        monkeypatch.setenv(app.STRICT_ENV, "1")
    log = tmp_path / "app.log"
    process = start_app(*args, log=log)
    try:
        assert process.wait(timeout=60) != 0
    finally:
        stop(process)
    output = log.read_text()
    assert f"error: '{missing}' is neither an existing folder nor a Hub repo id" in output
    assert "Using the bundled model" not in output


def test_segment_runs_the_model_it_names_and_the_first_one_by_default(
    client: Client, models: list[ServedModel], tmp_path: Path
) -> None:
    settings = models[0].settings  # the API's defaults: the page's starting values, the first model's
    for served, named in ((models[1], {"model": "three-classes"}), (models[0], {})):
        result = client.predict(handle_file(EXAMPLE_IMAGE), None, 0.5, 0.5, False, 0.0, api_name="/segment", **named)
        direct = segment(served.predictor, EXAMPLE_IMAGE, downloads=tmp_path)
        with Image.open(result[MASK]) as mask_file:
            np.testing.assert_array_equal(np.asarray(mask_file), direct.mask)
    three = client.predict(handle_file(EXAMPLE_IMAGE), None, model="three-classes", api_name="/segment")
    assert three[JSON]["tta"] == "none"  # one view unless asked for more
    augmented = client.predict(
        handle_file(EXAMPLE_IMAGE), None, augment=True, model="three-classes", api_name="/segment"
    )
    assert augmented[JSON]["tta"] == app.augmentation_views(models[1].settings) == "hflip"  # the named model's own
    assert three[JSON]["min_confidence"] == settings.min_confidence
    assert three[JSON]["foreground_share"] is None and set(three[JSON]["class_shares"]) <= set(CLASSES)


def test_a_multi_class_truth_is_scored_per_class_through_segment(client: Client, tmp_path: Path) -> None:
    width, height = Image.open(EXAMPLE_IMAGE).size
    truth = np.random.default_rng(0).integers(0, 3, (height, width), dtype=np.uint8)
    truth[:10] = 255  # unlabelled: left out of every score
    Image.fromarray(truth).save(tmp_path / "truth.png")
    result = client.predict(
        handle_file(EXAMPLE_IMAGE),
        handle_file(tmp_path / "truth.png"),
        min_confidence=0.0,
        model="three-classes",
        api_name="/segment",
    )
    with Image.open(result[MASK]) as mask_file:
        mask = np.asarray(mask_file)
    iou, dice = metrics.iou(mask, truth, 3), metrics.dice(mask, truth, 3)  # recomputed from the returned mask
    scores = result[JSON]
    assert list(scores["iou"]["per_class"].values()) == pytest.approx(list(iou), abs=1e-12)
    assert list(scores["dice"]["per_class"].values()) == pytest.approx(list(dice), abs=1e-12)
    labelled = truth != 255
    assert scores["accuracy"]["global"] == pytest.approx((mask == truth)[labelled].mean(), abs=1e-12)
    assert f"Pixel accuracy **{scores['accuracy']['global']:.4f}**" in result[TABLE]


def test_an_unknown_model_is_refused_with_the_choices(client: Client) -> None:
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(EXAMPLE_IMAGE), None, model="nope", api_name="/segment")
    assert "There is no model 'nope' here: choose one of tiny, three-classes" in str(raised.value)


def test_the_api_documents_the_model_input_and_its_default(client: Client) -> None:
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/segment"]["parameters"]
    named = {parameter["parameter_name"]: parameter for parameter in parameters}
    assert list(named) == ["image", "ground_truth", "threshold", "opacity", "augment", "min_confidence", "model"]
    assert named["model"]["parameter_default"] == "tiny"
    assert named["min_confidence"]["parameter_default"] == 0.8  # the first model's own (its inference.json)


def test_each_model_brings_its_own_controls_legend_and_description(models: list[ServedModel]) -> None:
    binary, three = app.model_view(models[0]), app.model_view(models[1])
    assert binary["threshold"]["visible"] and not three["threshold"]["visible"]
    assert not binary["class_legend"]["visible"] and three["class_legend"]["visible"]
    assert all(name in three["class_legend"]["value"] for name in CLASSES)
    assert "3 classes: sky, road, car" in three["summary"]["value"]  # no card: what the model labels
    assert (
        "true negatives" in binary["error_legend"]["value"] and "true negatives" not in three["error_legend"]["value"]
    )


def test_no_visitor_facing_text_names_a_server_path(weights: Path, tmp_path: Path) -> None:
    gone = tmp_path / "secret-folder" / "gone"
    models, warning = load_catalog([str(weights), str(gone)], bundled=(), examples_root=app.EXAMPLES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "cache"))
        blocks = app.build_demo(models, warning)
    texts = [warning]
    for part in components(blocks):
        texts.append(str(part.label or ""))
        if isinstance(part, gr.Markdown | gr.HTML | gr.Dropdown):
            texts.append(str(part.value) + str(getattr(part, "choices", "")))
    shown = "\n".join(texts)
    assert "gone' is neither an existing folder" in shown  # what failed is said
    for path in (str(tmp_path), str(weights.parent), str(app.EXAMPLES.parent)):
        assert path not in shown, path


@pytest.mark.slow
def test_a_stopped_server_leaves_no_files_behind(weights: Path, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    port, log = free_port(), tmp_path / "app.log"
    process = start_app("--weights", str(weights), "--port", str(port), log=log, temp=temp)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, process, log)
        client = Client(url, verbose=False)
        for model in ("camvid", weights.name):
            client.predict(handle_file(EXAMPLE_IMAGE), handle_file(EXAMPLE_MASK), model=model, api_name="/segment")
        written = sum(file.stat().st_size for file in temp.rglob("*") if file.is_file())
        assert written > 0  # uploads, run folders and Gradio's copies, all under the system's temporary folder
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log.read_text()
    finally:
        stop(process)
    left = [file for file in temp.rglob("*") if file.is_file()]
    assert not left, left  # the issue allows 10 MB; nothing at all is left
    assert not list(temp.glob("unet-demo-*")), list(temp.iterdir())
