"""The demo's floor: a Gradio app with the demo's inputs and outputs and no model (benchmarks.app_latency times it).

    python -m benchmarks.echo_app --port P

Its `/segment` takes what the demo's takes and returns files of the sizes a 512x512 upload gives the demo (a mask,
four pictures, the before/after pair) plus a small JSON and Markdown answer, made once at start-up: what remains is
Gradio's own work (upload, queue, copying files into its cache) and the client's downloads.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=512, help="side of the pictures returned")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="unet-echo-"))
    rng = np.random.default_rng(0)
    mask = folder / "mask.png"
    Image.fromarray(rng.integers(0, 11, (args.size, args.size), dtype=np.uint8)).save(mask)
    pictures = []
    for name in ("overlay", "truth", "errors", "image"):
        pictures.append(folder / f"{name}.png")
        pixels = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(pictures[-1], compress_level=1)
    overlay, truth, errors, image = (str(path) for path in pictures)

    def segment(image_in, truth_in, threshold, opacity, augment, min_confidence, model):
        scores = {"image_size": [args.size, args.size], "class_shares": {"road": 0.5}}
        return str(mask), overlay, truth, errors, scores, "echo", overlay, (image, overlay)

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
            gr.File(),
            gr.ImageSlider(format="png", type="pil"),
        ]
        gr.Button().click(segment, inputs, outputs, api_name="segment", preprocess=False)
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=args.port)


if __name__ == "__main__":
    main()
