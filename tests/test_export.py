"""ONNX export: the graph computes the model's logits at any size, and gives the predictor's masks."""

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from app_helpers import EXAMPLE_IMAGE, save_tiny_checkpoint

from unet.export import export_onnx, main, max_difference
from unet.hub import load_model
from unet.model import UNet
from unet.predict import Predictor
from unet.preprocessing import image_to_tensor, load_image, logits_to_probabilities, probabilities_to_mask


@pytest.mark.parametrize("num_classes", [1, 3])
def test_onnxruntime_gives_the_model_s_logits_at_other_sizes(tmp_path: Path, num_classes: int) -> None:
    torch.manual_seed(0)
    model = UNet(num_classes=num_classes, base_width=4, depth=2)
    path = export_onnx(model, tmp_path / "deep" / "unet.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["logits"]
    assert max_difference(model, path, [(1, 3, 33, 70), (3, 3, 16, 16), (1, 3, 128, 64)]) < 1e-4
    assert session.run(None, {"image": np.zeros((2, 3, 21, 45), np.float32)})[0].shape == (2, num_classes, 21, 45)


def test_onnx_masks_equal_the_predictor_s(tmp_path: Path) -> None:
    model, _ = load_model(save_tiny_checkpoint(tmp_path / "tiny"))
    session = onnxruntime.InferenceSession(str(export_onnx(model, tmp_path / "unet.onnx")))
    image = load_image(EXAMPLE_IMAGE)
    (logits,) = session.run(["logits"], {"image": image_to_tensor(image)[None].numpy()})
    mask = probabilities_to_mask(logits_to_probabilities(torch.from_numpy(logits[0]), (image.height, image.width)))
    expected = Predictor(model, max_side=None).predict(image).mask
    assert 0 < expected.mean() < 1  # both classes present, so a mix-up would show
    assert (mask != expected).mean() < 1e-3  # logits equal to ~1e-6: only pixels right at the threshold may differ


def test_cli_writes_and_checks_the_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_tiny_checkpoint(tmp_path / "tiny")
    main(["--weights", str(weights), "--out", str(tmp_path / "unet.onnx")])
    printed = capsys.readouterr().out
    assert (tmp_path / "unet.onnx").stat().st_size > 1000
    assert "largest logit difference" in printed and f"local folder {weights}" in printed


def test_cli_names_weights_that_do_not_load(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"^error: Could not load folder"):
        main(["--weights", str(tmp_path), "--out", str(tmp_path / "unet.onnx")])
    assert not (tmp_path / "unet.onnx").exists()
