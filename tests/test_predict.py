"""The predict CLI on generated images of every common mode: the files it writes, their sizes and values, and how it
reports inputs it cannot read while it goes on with the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet.hub import load_model
from unet.model import UNet
from unet.predict import Predictor, main
from unet.preprocessing import image_to_tensor, load_image, logits_to_probabilities

# name: (mode, (width, height))
INPUTS = {
    "photo.jpg": ("RGB", (64, 48)),
    "cutout.png": ("RGBA", (40, 56)),
    "scan.png": ("L", (50, 50)),
    "odd.png": ("RGB", (97, 131)),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """INPUTS written as noise in their mode; the RGBA one half transparent."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = {}
    for name, (mode, (width, height)) in INPUTS.items():
        channels = len(mode)
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        if mode == "RGBA":
            pixels[:, : width // 2, 3] = 0
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
        image.save(folder / name)
        paths[name] = folder / name
    return paths


def weights(folder: Path, num_classes: int) -> Path:
    """A tiny random U-Net saved as a weights folder, its batch-norm statistics those of noise images, so that
    (unlike a freshly built one, whose output is nearly constant) its masks mix classes."""
    torch.manual_seed(0)
    model = UNet(num_classes=num_classes, base_width=4, depth=2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the batches below
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 64, 64) * 4 - 2)
    model.save_pretrained(folder)
    return folder


def run(argv: list[str | Path]) -> int:
    """main(argv) and its exit status: it always ends with sys.exit."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
    return exit_info.value.code


@pytest.mark.parametrize("num_classes", [1, 3])
def test_writes_mask_and_overlay_of_the_input_size(
    images: dict[str, Path], tmp_path: Path, num_classes: int, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = weights(tmp_path / "weights", num_classes)
    out = tmp_path / "out"
    assert run(["--weights", model_dir, *images.values(), "--out", out]) == 0

    stems = [Path(name).stem for name in INPUTS]
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [f"{s}.png" for s in stems] + [f"{s}_overlay.png" for s in stems]
    )
    num_labels = max(2, num_classes)
    predictor = Predictor(load_model(model_dir)[0])
    for name, (_, size) in INPUTS.items():
        stem = Path(name).stem
        with Image.open(out / f"{stem}.png") as mask_file:
            assert mask_file.format == "PNG" and mask_file.mode == "L" and mask_file.size == size
            mask = np.asarray(mask_file)
        assert set(np.unique(mask)) <= set(range(num_labels)) and len(np.unique(mask)) > 1
        # The CLI writes what the Python API predicts for the same file.
        np.testing.assert_array_equal(mask, predictor.predict(images[name]).mask)
        with Image.open(out / f"{stem}_overlay.png") as overlay_file:
            assert overlay_file.format == "PNG" and overlay_file.mode == "RGB" and overlay_file.size == size
            overlay = np.asarray(overlay_file)
        # Background pixels are the input as the model saw it (RGBA composited onto white), the rest are tinted.
        seen = np.asarray(load_image(images[name]))
        assert np.array_equal(overlay[mask == 0], seen[mask == 0])
        assert not np.array_equal(overlay[mask != 0], seen[mask != 0])
    printed = capsys.readouterr().out
    assert all(f"{out / stem}.png" in printed for stem in stems)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_flip_averages_the_four_mirror_images(images: dict[str, Path], tmp_path: Path, num_classes: int) -> None:
    """With flip, mirroring the input mirrors the output exactly (a random network is far from that by itself), and
    the probabilities are those of the mean of the four mirrored images' logits, mirrored back."""
    predictor = Predictor(load_model(weights(tmp_path / "weights", num_classes))[0])
    image = load_image(images["odd.png"])  # odd sides: a mirror is not a shift of the padding
    plain = predictor.probabilities(image)
    tta = predictor.probabilities(image, tta="flip")
    for method, dims in ((Image.Transpose.FLIP_LEFT_RIGHT, (-1,)), (Image.Transpose.FLIP_TOP_BOTTOM, (-2,))):
        mirrored = image.transpose(method)
        torch.testing.assert_close(predictor.probabilities(mirrored, tta="flip"), tta.flip(dims))
        assert (predictor.probabilities(mirrored) - plain.flip(dims)).abs().max() > 1e-3
    with torch.inference_mode():  # each mirror image on its own, by hand
        x = image_to_tensor(image)[None]
        logits = [predictor.model(x.flip(dims)).flip(dims) for dims in ((), (-1,), (-2,), (-2, -1))]
    expected = logits_to_probabilities(torch.stack(logits).mean(0)[0], (image.height, image.width))
    torch.testing.assert_close(tta, expected)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_dihedral_averages_the_eight_quarter_turns_and_mirror_images(
    images: dict[str, Path], tmp_path: Path, num_classes: int
) -> None:
    """With dihedral, turning or mirroring the input (a non-square one) turns or mirrors the output exactly, and the
    probabilities are those of the mean of the eight views' logits, each turned back."""
    predictor = Predictor(load_model(weights(tmp_path / "weights", num_classes))[0])
    image = load_image(images["odd.png"])  # 97 x 131: a transposed view has another shape and padding
    tta = predictor.probabilities(image, tta="dihedral")
    for method, expected in (
        (Image.Transpose.ROTATE_90, tta.rot90(1, (-2, -1))),  # PIL turns counter-clockwise, as rot90 from -2 to -1
        (Image.Transpose.ROTATE_270, tta.rot90(-1, (-2, -1))),
        (Image.Transpose.TRANSPOSE, tta.transpose(-2, -1)),
        (Image.Transpose.FLIP_TOP_BOTTOM, tta.flip(-2)),
    ):
        torch.testing.assert_close(predictor.probabilities(image.transpose(method), tta="dihedral"), expected)
        assert (predictor.probabilities(image.transpose(method), tta="flip") - expected).abs().max() > 1e-3
    with torch.inference_mode():  # each view on its own, by hand
        x = image_to_tensor(image)[None]
        logits = []
        for turns in range(4):
            for view in (x, x.flip(-1)):
                turned = predictor.model(view.rot90(turns, (-2, -1))).rot90(-turns, (-2, -1))
                logits.append(turned if view is x else turned.flip(-1))
    expected = logits_to_probabilities(torch.stack(logits).mean(0)[0], (image.height, image.width))
    torch.testing.assert_close(tta, expected)


def test_the_cli_averages_the_views_it_is_told(images: dict[str, Path], tmp_path: Path) -> None:
    """--tta NAME predicts what Predictor.predict does with it, and --flip is the same as --tta flip."""
    model_dir = weights(tmp_path / "weights", 1)
    predictor = Predictor(load_model(model_dir)[0])
    for flags, tta in ((["--tta", "dihedral"], "dihedral"), (["--flip"], "flip"), (["--tta", "flip"], "flip")):
        out = tmp_path / "-".join(flags)
        assert run(["--weights", model_dir, images["odd.png"], "--out", out, "--threshold", "0.5", *flags]) == 0
        mask = np.asarray(Image.open(out / "odd.png"))
        np.testing.assert_array_equal(mask, predictor.predict(images["odd.png"], tta=tta).mask)
    assert not np.array_equal(
        predictor.predict(images["odd.png"], tta="dihedral").mask, predictor.predict(images["odd.png"]).mask
    )


def test_an_unknown_test_time_augmentation_is_refused(images: dict[str, Path], tmp_path: Path) -> None:
    predictor = Predictor(load_model(weights(tmp_path / "weights", 1))[0])
    with pytest.raises(ValueError, match="unknown test-time augmentation 'rotate': choose one of none, flip, dihedral"):
        predictor.probabilities(load_image(images["odd.png"]), tta="rotate")


def test_threshold_decides_binary_masks(images: dict[str, Path], tmp_path: Path) -> None:
    model_dir = weights(tmp_path / "weights", 1)
    shares = {}
    for threshold in ("0", "0.5", "1"):
        out = tmp_path / f"out{threshold}"
        assert run(["--weights", model_dir, images["odd.png"], "--out", out, "--threshold", threshold]) == 0
        mask = np.asarray(Image.open(out / "odd.png"))
        assert mask.shape == (131, 97)
        shares[threshold] = mask.mean()
    # Every probability is >= 0; a sigmoid reaches 1.0 in float32 only for logits above ~17.
    assert shares["0"] == 1.0 and shares["1"] < 0.01 and 0.05 < shares["0.5"] < 0.95


def test_min_confidence_drops_the_regions_the_model_is_unsure_of(images: dict[str, Path], tmp_path: Path) -> None:
    # Every logit 1.0: one region, the whole image, of foreground probability sigmoid(1) = 0.731.
    model = UNet(base_width=4, depth=2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.head.bias.fill_(1.0)
    model.save_pretrained(tmp_path / "weights")
    shares = {}
    for value in ("0", "0.7", "0.75"):
        out = tmp_path / f"out{value}"
        assert run(["--weights", tmp_path / "weights", images["odd.png"], "--out", out, "--min-confidence", value]) == 0
        shares[value] = np.asarray(Image.open(out / "odd.png")).mean()
    assert shares == {"0": 1.0, "0.7": 1.0, "0.75": 0.0}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--min-confidence", "1.5", "--min-confidence is a probability: give a value from 0 to 1, not 1.5"),
        ("--threshold", "-0.1", "--threshold is a probability: give a value from 0 to 1, not -0.1"),
        ("--threshold", "1.5", "--threshold is a probability: give a value from 0 to 1, not 1.5"),
        ("--threshold", "nan", "--threshold is a probability: give a value from 0 to 1, not nan"),
        ("--max-side", "0", "--max-side is the longest side in pixels the model sees: give 1 or more, not 0"),
        ("--max-side", "-64", "--max-side is the longest side in pixels the model sees: give 1 or more, not -64"),
    ],
)
def test_out_of_range_options_are_usage_errors(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    out = tmp_path / "out"
    # The weights do not exist: the option is refused before anything is loaded.
    assert run(["--weights", tmp_path / "nowhere", images["photo.jpg"], "--out", out, option, value]) == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: ") and f"error: {message}" in error
    assert not out.exists()


def test_inputs_sharing_a_stem_are_refused_before_anything_is_written(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(images["photo.jpg"], twin / "photo.png")
    out = tmp_path / "out"
    assert run(["--weights", tmp_path / "nowhere", images["photo.jpg"], twin / "photo.png", "--out", out]) == 2
    assert "share a file name stem, so their masks would overwrite each other: photo;" in capsys.readouterr().err
    assert not out.exists()


def test_unreadable_inputs_are_reported_and_the_rest_still_processed(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = weights(tmp_path / "weights", 1)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(images["photo.jpg"].read_bytes()[:200])
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"

    status = run(
        ["--weights", model_dir, missing, images["photo.jpg"], corrupt, not_image, images["odd.png"], "--out", out]
    )
    assert status == 1
    assert sorted(path.name for path in out.iterdir()) == [
        "odd.png",
        "odd_overlay.png",
        "photo.png",
        "photo_overlay.png",
    ]
    error = capsys.readouterr().err
    assert f"skipped {missing}: " in error and "No such file or directory" in error
    assert f"skipped {corrupt}: the image file is truncated or corrupt" in error
    assert f"skipped {not_image}: the file is not an image in a known format" in error
    assert error.count("skipped") == 3


def test_bad_weights_exit_with_a_message_not_a_traceback(images: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    status = run(["--weights", empty, images["photo.jpg"], "--out", out])
    assert isinstance(status, str) and status.startswith(f"error: Could not load folder {empty}")
    assert "model.safetensors" in status
    status = run(["--weights", tmp_path / "nowhere", images["photo.jpg"], "--out", out])
    assert isinstance(status, str) and "neither an existing folder nor a Hub repo id" in status
    assert not out.exists()
