"""The demo's floor: a Gradio app with the demo's inputs and outputs and no model (benchmarks.app_latency times it).

    python -m benchmarks.echo_app --port P

Its `/segment` takes what the demo's takes and returns what the demo returns for a 512x512 upload without a ground
truth: files of those sizes and kinds (the benchmark's CamVid example as the prediction's picture and its true mask
as the mask; no ground-truth pictures) plus a small JSON and Markdown answer, made once at start-up: what remains is
Gradio's own work (upload, queue, copying files into its cache) and the client's downloads.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from PIL import Image

from benchmarks.app_latency import EXAMPLE

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=512, help="side of the pictures returned")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="unet-echo-"))
    size = (args.size, args.size)
    mask, overlay = folder / "mask.png", folder / "overlay.png"
    with Image.open(EXAMPLE.parent.parent / "masks" / f"{EXAMPLE.stem}.png") as truth:
        truth.resize(size, Image.Resampling.NEAREST).save(mask, compress_level=1)
    with Image.open(EXAMPLE) as picture:
        picture.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(overlay, compress_level=1)

    def segment(image_in, truth_in, threshold, opacity, augment, min_confidence, model):
        scores = {"image_size": [args.size, args.size], "class_shares": {"road": 0.5}}
        return str(mask), str(overlay), None, None, scores, "echo"

    with gr.Blocks() as demo:
        inputs = [
            gr.Image(type="filepath"),
            gr.Image(type="filepath", image_mode=None),
            gr.Slider(0, 1, value=0.5),
            gr.Slider(0, 1, value=0.5),
            gr.Checkbox(value=False),
            gr.Slider(0, 1, value=0.0),
            gr.Dropdown(["camvid"], value="camvid"),
        ]
        outputs = [
            gr.File(),
            gr.Image(format="png"),
            gr.Image(format="png"),
            gr.Image(format="png"),
            gr.JSON(),
            gr.Markdown(),
        ]
        gr.Button().click(segment, inputs, outputs, api_name="segment", preprocess=False)
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=args.port)


if __name__ == "__main__":
    main()
