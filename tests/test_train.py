"""The training CLI end to end on a tiny synthetic folder: it learns, writes its run folder, reproduces, resumes,
runs data-parallel under torchrun, and refuses bad flags."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset
from torchvision.transforms import v2

import unet.train
from unet import load_model
from unet.datasets import PairedFolder
from unet.evaluate import evaluate
from unet.losses import SegmentationLoss
from unet.metrics import ConfusionMeter
from unet.model import UNet
from unet.predict import Predictor
from unet.train import (
    build_data,
    build_parser,
    load_resume_state,
    loader_state,
    main,
    make_weight_average,
    parse_size_schedule,
    resolve_amp,
    save_checkpoint,
    set_train_size,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
SIZE = 48
# Base-width-4 U-Net, 2 steps an epoch. At lr 1e-2 it passes 0.9 validation IoU by epoch 30 on seeds 0-4;
# at the default 3e-3 one seed in three still predicted no foreground after 40 epochs.
# fp32 whatever the CPU: `--amp auto` would pick bf16 on AVX512-BF16 machines and shift these numbers.
TINY = ["--base-width", "4", "--depth", "2", "--batch-size", "4", "--workers", "0", "--quiet"]
TINY += ["--lr", "1e-2", "--amp", "none"]


def write_folder(root: Path, count: int, seed: int) -> Path:
    """`root/images/*.png`: dark noise with one bright square or disc; `root/masks/*.png`: 0/1 where it is."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[:SIZE, :SIZE]
    for index in range(count):
        pixels = rng.integers(0, 100, (SIZE, SIZE, 3), dtype=np.uint8)
        radius = int(rng.integers(7, 13))
        cy, cx = rng.integers(radius, SIZE - radius, 2)
        if index % 2:
            shape = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
        else:
            shape = (abs(rows - cy) <= radius) & (abs(cols - cx) <= radius)
        pixels[shape] = rng.integers(180, 256, (int(shape.sum()), 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{index:02d}.png")
        Image.fromarray(shape.astype(np.uint8)).save(root / "masks" / f"{index:02d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train folder of 8 pairs, validation folder of 4 pairs)."""
    root = tmp_path_factory.mktemp("data")
    return write_folder(root / "train", 8, seed=0), write_folder(root / "val", 4, seed=1)


def run_args(data: tuple[Path, Path], out: Path, schedule: str, *extra: str) -> list[str]:
    train, val = data
    return ["--data", str(train), "--val-data", str(val), "--out", str(out), "--size-schedule", schedule, *TINY, *extra]


def history(run: Path) -> list[dict]:
    return json.loads((run / "history.json").read_text())


@pytest.fixture(scope="module")
def overfit_run(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 30-epoch run on the tiny folder (~4 s); returns its folder and what main() printed."""
    out = tmp_path_factory.mktemp("overfit") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(run_args(data, out, f"{SIZE}:30"))
    return out, printed.getvalue()


def test_tiny_model_learns_the_tiny_data_set(overfit_run: tuple[Path, str]) -> None:
    run, _ = overfit_run
    records = history(run)
    assert [r["epoch"] for r in records] == list(range(1, 31))
    assert all(r["size"] == SIZE for r in records)
    losses = [r["train_loss"] for r in records]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    ious = [r["val_iou"] for r in records]
    assert ious[0] < 0.5  # an untrained model does not already solve it
    assert max(ious) > 0.85 and np.mean(ious[-5:]) > 0.8, ious
    # Warm-up for one epoch, then cosine decay to 1% of the peak.
    assert records[0]["lr"] == pytest.approx(1e-2)
    assert records[-1]["lr"] == pytest.approx(1e-4)


def test_run_folder_holds_best_last_history_and_curves(overfit_run: tuple[Path, str], data: tuple[Path, Path]) -> None:
    run, printed = overfit_run
    records = history(run)
    ious = [r["val_iou"] for r in records]
    best_epoch = ious.index(max(ious)) + 1  # the first epoch with the highest IoU

    for name in ("best", "last"):
        files = {path.name for path in (run / name).iterdir()}
        assert {"config.json", "model.safetensors", "training_args.json", "val_scores.json"} <= files
    assert "training_state.pt" in {path.name for path in (run / "last").iterdir()}
    assert "training_state.pt" not in {path.name for path in (run / "best").iterdir()}

    scores = json.loads((run / "best" / "val_scores.json").read_text())
    assert scores["epoch"] == best_epoch
    assert scores["headline"]["iou"] == pytest.approx(max(ious))
    assert json.loads((run / "last" / "val_scores.json").read_text())["epoch"] == 30
    assert json.loads(printed.strip().splitlines()[-1]) == {"best_epoch": best_epoch, **scores["headline"]}

    arguments = json.loads((run / "best" / "training_args.json").read_text())
    assert arguments["base_width"] == 4 and arguments["depth"] == 2 and arguments["lr"] == 1e-2
    assert arguments["size_schedule"] == [[SIZE, 30]] and "resume" not in arguments

    # best/ rebuilds the trained network by itself, and its weights are the best epoch's: the predictor scores
    # the validation folder exactly as the trainer did.
    model, _ = load_model(run / "best")
    assert isinstance(model, UNet) and model.num_classes == 1 and model.depth == 2
    assert model.inc[0].out_channels == 4 and model.class_names == ["background", "foreground"]
    result = evaluate(Predictor(model), PairedFolder(data[1], num_labels=2))
    assert result.scores()["headline"]["iou"] == pytest.approx(scores["headline"]["iou"], abs=1e-6)

    with Image.open(run / "curves.png") as curves:
        assert curves.format == "PNG" and curves.size == (900, 360)
        assert len(curves.convert("L").getcolors(2**16)) > 10  # drawn on, not a blank canvas


def test_same_seed_same_history(data: tuple[Path, Path], tmp_path: Path) -> None:
    runs = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        main(run_args(data, tmp_path / name, f"{SIZE}:3", "--seed", seed))
        runs.append([(r["train_loss"], r["val_loss"], r["val_iou"]) for r in history(tmp_path / name)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


class Interrupted(Exception):
    """Stands in for a run killed once an epoch's checkpoint is written."""


@pytest.mark.parametrize("extra", [[], ["--ema", "0.8"]], ids=["plain", "ema"])
def test_resume_continues_at_the_next_epoch(
    data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    main(run_args(data, tmp_path / "straight", f"{SIZE}:6", *extra))
    straight = history(tmp_path / "straight")

    plot_curves = unet.train.plot_curves

    def plot_then_stop(records: list[dict], path: Path) -> None:
        plot_curves(records, path)
        if len(records) == 3:
            raise Interrupted

    monkeypatch.setattr(unet.train, "plot_curves", plot_then_stop)
    with pytest.raises(Interrupted):
        main(run_args(data, tmp_path / "run", f"{SIZE}:6", *extra))
    monkeypatch.undo()
    saved = history(tmp_path / "run")
    assert [r["epoch"] for r in saved] == [1, 2, 3]
    timeless = [{k: v for k, v in r.items() if k != "seconds"} for r in saved]
    assert timeless == [{k: v for k, v in r.items() if k != "seconds"} for r in straight[:3]]  # same seed, same run

    main(run_args(data, tmp_path / "run", f"{SIZE}:6", *extra, "--resume", str(tmp_path / "run" / "last")))
    resumed = history(tmp_path / "run")
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert resumed[:3] == saved  # the saved history, as it was
    # Weights, optimizer, schedule and random streams go on where they stopped: the same epochs as never stopping.
    timeless = [{k: v for k, v in r.items() if k != "seconds"} for r in resumed[3:]]
    assert timeless == [{k: v for k, v in r.items() if k != "seconds"} for r in straight[3:]]
    assert json.loads((tmp_path / "run" / "last" / "val_scores.json").read_text())["epoch"] == 6


def test_weight_average_moves_a_share_of_the_way_each_step() -> None:
    """The first update copies the model; each later one moves weights and BatchNorm statistics by 1 - decay."""
    torch.manual_seed(0)
    model = UNet(base_width=4, depth=2)
    average = make_weight_average(model, decay=0.75)
    first = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    average.update_parameters(model)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor))
    second = model.state_dict()
    average.update_parameters(model)
    averaged = average.module.state_dict()
    assert averaged.keys() == first.keys()
    running_mean = next(name for name in first if name.endswith("running_mean"))
    for name in ("head.weight", "head.bias", running_mean):
        assert not torch.equal(first[name], second[name])
        assert torch.allclose(averaged[name], 0.75 * first[name] + 0.25 * second[name]), name


def test_ema_run_validates_and_keeps_the_average(data: tuple[Path, Path], tmp_path: Path) -> None:
    """With --ema, training is unchanged, but what is validated and kept as best/ is the weights' average."""
    out = tmp_path / "run"
    main(run_args(data, out, f"{SIZE}:4", "--ema", "0.9"))
    main(run_args(data, tmp_path / "plain", f"{SIZE}:4"))
    averaged, plain = history(out), history(tmp_path / "plain")
    assert [r["train_loss"] for r in averaged] == [r["train_loss"] for r in plain]
    assert all(a["val_loss"] != b["val_loss"] for a, b in zip(averaged, plain, strict=True))
    scores = json.loads((out / "best" / "val_scores.json").read_text())
    best, _ = load_model(out / "best")
    result = evaluate(Predictor(best), PairedFolder(data[1], num_labels=2))
    assert result.scores()["headline"]["iou"] == pytest.approx(scores["headline"]["iou"], abs=1e-6)
    last, _ = load_model(out / "last")
    state = torch.load(out / "last" / "training_state.pt", weights_only=True)
    average = state["average"]
    assert int(average["n_averaged"]) == 4 * 2  # two steps an epoch
    assert not torch.equal(average["module.head.weight"], last.head.weight)  # last/ holds the raw weights


def test_resume_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, fresh = UNet(base_width=4, depth=2), UNet(base_width=4, depth=2)
    args = argparse.Namespace(lr=0.1, resume="somewhere", size_schedule=[(32, 2)])
    save_checkpoint(tmp_path, model, args, {"epoch": 2}, {"epoch": 2, "history": [{"epoch": 1}, {"epoch": 2}]})
    assert not torch.equal(fresh.head.weight, model.head.weight)
    state = load_resume_state(tmp_path, fresh)
    assert state == {"epoch": 2, "history": [{"epoch": 1}, {"epoch": 2}]}
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    assert json.loads((tmp_path / "training_args.json").read_text()) == {"lr": 0.1, "size_schedule": [[32, 2]]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(data: tuple[Path, Path], out: Path, schedule: str, *extra: str) -> subprocess.CompletedProcess:
    """`unet.train` as two processes under torchrun, on one thread each; fails the test if it fails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(free_port()), "-m", "unet.train", *run_args(data, out, schedule, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=out.parent, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_torchrun_two_processes(data: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    val = write_folder(tmp_path / "val5", 5, seed=2)  # odd, so the two processes' shares differ in size
    done = torchrun((data[0], val), out, f"{SIZE}:2")

    # Only rank 0 writes: one run folder, one history with every epoch, one best/.
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("history.json")) == [
        "run/history.json"
    ]
    records = history(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["val_iou"] <= 1 for r in records)
    assert (out / "best" / "model.safetensors").is_file() and (out / "last" / "training_state.pt").is_file()
    assert "cpu x2" in done.stderr  # the log line names the device and the world size
    assert done.stdout.count("best_epoch") == 1  # rank 0 reports; rank 1 keeps no best

    # The ranks validate 3 and 2 of the 5 images; the mean loss and the counts reported are those of all 5, once.
    model, _ = load_model(out / "last")
    criterion = SegmentationLoss()
    losses, meter = [], ConfusionMeter(2)
    with torch.no_grad():
        for image, mask in PairedFolder(val, num_labels=2):
            logits = model(image[None])
            losses.append(criterion(logits, mask[None]).item())
            meter.update((logits[:, 0] > 0).long(), mask[None])
    assert records[-1]["val_loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    assert records[-1]["val_iou"] == pytest.approx(meter.iou()[1])

    # Each process draws its own augmentation (its own loader stream); both streams are saved and resumed.
    streams = torch.load(out / "last" / "training_state.pt", weights_only=True)["rng"]["loader"]
    assert len(streams) == 2 and not torch.equal(streams[0], streams[1])
    torchrun((data[0], val), out, f"{SIZE}:3", "--resume", str(out / "last"))
    assert [r["epoch"] for r in history(out)] == [1, 2, 3]


def test_loader_state_is_the_ranks_own_and_needs_as_many_processes() -> None:
    states = [torch.tensor([0], dtype=torch.uint8), torch.tensor([1], dtype=torch.uint8)]
    assert torch.equal(loader_state(states, 1, 2), states[1])
    assert torch.equal(loader_state(states[0], 0, 1), states[0])  # a lone state: a one-process run's
    with pytest.raises(ValueError, match="had 2 processes; resume it with as many, not 1"):
        loader_state(states, 0, 1)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("48", "expected SIZE:EPOCHS"),
        ("48:2,64", "expected SIZE:EPOCHS"),
        ("big:2", "expected SIZE:EPOCHS"),
        ("8:2", "sizes must be >= 16 and epochs >= 1"),
        ("48:0", "sizes must be >= 16 and epochs >= 1"),
    ],
)
def test_bad_size_schedule_is_a_clear_argparse_error(
    schedule: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--data", "d", "--out", "o", "--size-schedule", schedule])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --size-schedule" in error and message in error and repr(schedule) in error


def test_size_schedule_parses() -> None:
    assert parse_size_schedule("128:8,192:8,256:12") == [(128, 8), (192, 8), (256, 12)]
    assert build_parser().parse_args(["--data", "d", "--out", "o"]).size_schedule == [(256, 20)]


@pytest.mark.parametrize(
    ("flag", "text"),
    [
        *(("--crop-scale", text) for text in ["0.5", "0,1", "0.8,0.5", "0.5,1.5", "a,b"]),
        *(
            (flag, text)
            for flag in ["--jpeg", "--generated-backgrounds", "--varied-backgrounds"]
            for text in ["-0.1", "1.5", "often"]
        ),
        *(("--jpeg-quality", text) for text in ["70", "0,100", "90,80", "70,101", "0.7,1"]),
        *(("--ema", text) for text in ["1", "-0.1", "1.5", "slow"]),
    ],
)
def test_bad_range_setting_is_refused(flag: str, text: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--data", "d", "--out", "o", flag, text])
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_augmentation_flags_reach_the_transform_at_every_size(data: tuple[Path, Path]) -> None:
    """Crop range and JPEG settings are the flags', also after progressive resizing swaps in the next transform."""
    flags = ["--crop-scale", "0.25,0.75", "--jpeg", "0.5", "--jpeg-quality", "60,90"]
    args = build_parser().parse_args(["--data", str(data[0]), "--out", "o", *flags])
    assert (args.crop_scale, args.jpeg, args.jpeg_quality) == ((0.25, 0.75), 0.5, (60, 90))
    train_set, *_ = build_data(args)

    def random_crop(dataset) -> v2.RandomResizedCrop:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        return next(t for t in base.transform.geometric.transforms if isinstance(t, v2.RandomResizedCrop))

    assert random_crop(train_set).scale == (0.25, 0.75)
    set_train_size(train_set, 48, args)
    assert random_crop(train_set).scale == (0.25, 0.75) and random_crop(train_set).size == (48, 48)
    compression = (train_set.dataset if isinstance(train_set, Subset) else train_set).transform.compression
    assert (compression.p, compression.quality) == (0.5, (60, 90))
    default = build_parser().parse_args(["--data", "d", "--out", "o"])
    assert (default.crop_scale, default.jpeg, default.jpeg_quality) == ((0.5, 1.0), 0.0, (70, 100))


def test_bf16_training_learns_and_validates_in_fp32(data: tuple[Path, Path], tmp_path: Path) -> None:
    """bf16 autocast (emulated where the CPU lacks it) still learns; the scores it keeps are the fp32 predictor's."""
    out = tmp_path / "run"
    main(run_args(data, out, f"{SIZE}:12", "--amp", "bf16"))
    records = history(out)
    assert records[-1]["train_loss"] < 0.8 * records[0]["train_loss"], records
    model, _ = load_model(out / "best")
    scores = json.loads((out / "best" / "val_scores.json").read_text())
    result = evaluate(Predictor(model), PairedFolder(data[1], num_labels=2))
    assert result.scores()["headline"]["iou"] == pytest.approx(scores["headline"]["iou"], abs=1e-6)


def test_auto_amp_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in [(True, False, "bf16"), (False, True, "bf16"), (False, False, "none")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_amp("auto", cpu) == expected
        assert resolve_amp("none", cpu) == "none" and resolve_amp("bf16", cpu) == "bf16"


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.json")))
def test_every_shipped_recipe_is_valid_flags_recorded_as_given(recipe: Path) -> None:
    values = unet.train.read_recipe(recipe)
    args = unet.train.parse_args(["--recipe", str(recipe)])  # an unknown key or a bad value fails here
    assert args.recipe == str(recipe) and args.data == values["data"] and args.out == values["out"]
    assert args.lr == values["lr"] and args.batch_size == values["batch_size"]
    assert "_about" in json.loads(recipe.read_text())  # each says what it trains and what it took


@pytest.mark.parametrize("native", [True, False])
def test_a_recipe_says_what_it_trains_where_bf16_is_only_emulated(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "composites.json"
    monkeypatch.setattr(unet.train, "resolve_amp", lambda amp, device: "bf16" if native and amp == "auto" else "none")
    args = unet.train.parse_args(["--recipe", str(recipe)])
    assert args.size_schedule == ([(176, 20)] if native else [(176, 10)])
    assert args.fp32_values == (None if native else {"size_schedule": "176:10"})  # recorded in training_args.json
    given = unet.train.parse_args(["--recipe", str(recipe), "--size-schedule", "128:3"])
    assert given.size_schedule == [(128, 3)]  # the command line still wins
