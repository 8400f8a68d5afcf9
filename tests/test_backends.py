"""The ways to run a forward pass, and the choice of the fastest one whose masks agree with eager fp32's."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from app_helpers import EXAMPLE_IMAGE, EXAMPLE_MASK

import unet.backends
from unet.backends import EAGER, MIN_AGREEMENT, OnnxForward, Stopped, candidates, choose_forward
from unet.catalog import choose_backends, load_catalog
from unet.model import UNet


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(num_classes=3, base_width=4, depth=2, class_names=["a", "b", "c"], background_class=None).eval()


def images(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(3, 40, 56, generator=generator) for _ in range(count)]


def test_the_fastest_way_whose_masks_agree_is_chosen_and_a_faster_wrong_one_never(model: UNet) -> None:
    def slow_but_right(batch: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return model(batch)

    ways = {
        EAGER: slow_but_right,
        "wrong": lambda batch: -model(batch),  # other classes win: fast, and never to be served
        "fast": lambda batch: model(batch) + 0.0,
    }
    choice = choose_forward(model, images(), ways, runs=3)

    assert choice.name == "fast" and choice.forward is ways["fast"]
    assert choice.agreement["fast"] == choice.agreement[EAGER] == 1.0
    assert choice.agreement["wrong"] < MIN_AGREEMENT
    assert choice.milliseconds[EAGER] >= 20
    assert choice.describe().startswith("fast, ") and "wrong" in choice.describe()
    # Nothing faster that agrees: the reference stays.
    assert choose_forward(model, images(), {EAGER: model, "wrong": ways["wrong"]}, runs=2).name == EAGER


def test_onnxruntime_computes_what_the_model_does(model: UNet) -> None:
    forward = OnnxForward(model)
    for image in images():
        with torch.inference_mode():
            expected = model(image[None])
        torch.testing.assert_close(forward(image[None]), expected, atol=1e-4, rtol=1e-4)
    # A side shorter than its padding: the graph cannot reflect-pad it, and the model runs it instead.
    tiny = torch.randn(1, 3, 1, 5)
    with torch.inference_mode():
        torch.testing.assert_close(forward(tiny), model(tiny))
    assert "onnxruntime fp32" in candidates(model, bf16=False)
    assert list(candidates(model, bf16=True))[:2] == [EAGER, "bf16 autocast"]


def test_a_stop_gives_the_choice_up(model: UNet) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        choose_forward(model, images(), {EAGER: model}, stop=stop)


def test_each_served_model_with_examples_gets_its_choice_and_the_same_masks(
    model: UNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model.save_pretrained(tmp_path / "plain")
    composites = Path(__file__).resolve().parent.parent / "checkpoints" / "composites"
    (with_examples, without), _ = load_catalog([str(tmp_path / "plain")], bundled=[composites])
    with_examples.examples = [(EXAMPLE_IMAGE, EXAMPLE_MASK)]
    eager = without.predictor.forward
    before = with_examples.predictor.predict(EXAMPLE_IMAGE).mask
    returned = []  # whether the choice was made when freed memory was given back (each export gives it back too)

    def return_freed_memory() -> None:
        returned.append(any(" runs in " in record.getMessage() for record in caplog.records))

    monkeypatch.setattr(unet.backends, "return_freed_memory", return_freed_memory)

    with caplog.at_level(logging.INFO, logger="unet"):
        choose_backends([with_examples, without])

    assert returned[-1]  # last, once the choice is made
    assert without.predictor.forward is eager  # nothing to check another way on: eager
    after = with_examples.predictor.predict(EXAMPLE_IMAGE).mask
    assert np.mean(after == before) > 0.99
