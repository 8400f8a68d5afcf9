"""Training throughput on this machine, fp32 against bf16 autocast, in one run: python -m benchmarks.train_speed

One training step is what `unet.train` does for a batch: forward (under autocast for bf16), the fp32 loss
(BCE + soft Dice), backward and an AdamW step, on random data with the model in channels-last. Prints the median
step time and images per second of each precision at each crop size, and their ratio. Medians of repeated steps:
machines here are shared and noisy, so only the ratio within one run means much.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from benchmarks.latency import median_seconds
from unet.losses import SegmentationLoss
from unet.model import UNet


def step_seconds(size: int, batch: int, amp: bool, model_args: dict, repeats: int) -> float:
    """Median seconds of one training step on a (batch, 3, size, size) batch."""
    torch.manual_seed(0)
    model = UNet(3, 1, **model_args).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = SegmentationLoss(dice_weight=1.0)
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(batch, size, size) > 0.5).long()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
        loss = criterion(logits, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return median_seconds(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,176", help="square crop sizes")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--upsampling", choices=["bilinear", "transpose"], default="bilinear")
    parser.add_argument("--repeats", type=int, default=9, help="timed steps per figure (the median is printed)")
    args = parser.parse_args()

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    print(f"date {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, native bf16: {native}")  # fmt: skip
    model_args = {"base_width": args.base_width, "depth": args.depth, "upsampling": args.upsampling}
    print(f"U-Net {model_args}, batch {args.batch_size}, training step (fwd+bwd+AdamW)")
    print(f"{'crop':>6} {'fp32 ms':>9} {'img/s':>7} {'bf16 ms':>9} {'img/s':>7} {'bf16 speed-up':>14}")
    for size in (int(s) for s in args.sizes.split(",")):
        fp32 = step_seconds(size, args.batch_size, False, model_args, args.repeats)
        bf16 = step_seconds(size, args.batch_size, True, model_args, args.repeats)
        print(f"{size:>6} {fp32 * 1e3:>9.0f} {args.batch_size / fp32:>7.1f} "
              f"{bf16 * 1e3:>9.0f} {args.batch_size / bf16:>7.1f} {fp32 / bf16:>13.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
