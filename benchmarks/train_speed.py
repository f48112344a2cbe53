"""Training images/s: a plain fp32 GAN loop vs the trainer as shipped, same networks and losses.

Usage: python benchmarks/train_speed.py [--sizes 64 128] [--steps 12] [--repeats 3] [--compile] [--data ALIGNED_FOLDER] [--device auto]
Both run DIAT-A (GAN loss + perceptual identity loss on D's 4th/5th features), batch 16, on the
same device (auto: CUDA when present).
The plain loop: fp32, D step then T step, T run twice per step, D's gradients computed during the
T step, NCHW, images decoded by a DataLoader each step. The trainer: TransformStage (T once per
step, real+fake in one D pass, D frozen during the T step), channels_last, preloaded batches,
and on CUDA its automatic mixed precision (bf16, or fp16 with a grad scaler).
Run on an idle machine: another busy process slows 2-thread training 7-10x.

The table also gives each loop's floating-point work per step (counted by PyTorch's
FlopCounterMode on the first warm-up step: convolutions and matrix products, forward and
backward) and the rate it reached, against a large fp32 matrix product on the same device: the
speed-up one loop can have over the other is its share of the work times its share of the rate.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from diat_cli.data import FaceImages  # noqa: E402
from diat_cli.losses import discriminator_loss_gan, generator_loss_gan, perceptual_loss  # noqa: E402
from diat_cli.manifest import face_records  # noqa: E402
from diat_cli.nets.discriminator import AttributeDiscriminator  # noqa: E402
from diat_cli.nets.transform import TransformNetwork  # noqa: E402
from diat_cli.train.batches import StepBatches  # noqa: E402
from diat_cli.train.runtime import setup_runtime  # noqa: E402
from diat_cli.train.transform import TransformStage  # noqa: E402

BATCH = 16
IDENTITY_WEIGHT = 10.0


def face_paths(folder: Path | None, count: int) -> list[Path] | None:
    if folder is None or not (folder / "manifest.jsonl").exists():
        return None
    return [folder / record["crop"] for record in face_records(folder)[:count]]


def synthetic(count: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, size, size), generator=generator, dtype=torch.uint8)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _counting(active: bool):
    """A FlopCounterMode for the one warm-up step that is counted; a no-op for the others.

    Never under torch.compile: the counter's module hooks would be traced into the compiled graph.
    """
    return FlopCounterMode(display=False) if active else contextlib.nullcontext()


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an fp32 square matrix product: what this device's cores give dense work."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    _synchronise(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronise(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


class LossMeans:
    """Mean of each loss over the timed steps: one step's value swings too much to compare loops by."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, discriminator: torch.Tensor, adversarial: torch.Tensor) -> None:
        for name, value in (("discriminator", discriminator), ("adversarial", adversarial)):
            self.sums[name] = self.sums.get(name, 0) + value.detach().float()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {name: float(total) / self.count for name, total in self.sums.items()}


def plain_loop(paths, size: int, steps: int, warmup: int, device: torch.device) -> tuple[float, int, dict[str, float]]:
    torch.manual_seed(0)
    transform, discriminator = TransformNetwork().to(device), AttributeDiscriminator(64, size).to(device)
    optimizer_t = torch.optim.Adam(transform.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    if paths is not None:
        loader = torch.utils.data.DataLoader(FaceImages(paths, size), batch_size=BATCH, shuffle=True, drop_last=True)
        batches = iter(loader)
        next_batch = lambda: next(batches).to(device)  # noqa: E731
    else:
        images = synthetic(BATCH * 4, size).float() / 127.5 - 1
        next_batch = lambda: images[torch.randint(0, len(images), (BATCH,))].to(device)  # noqa: E731
    timed_losses = LossMeans()
    for step in range(warmup + steps):
        if step == warmup:
            _synchronise(device)
            start = time.perf_counter()
        source, reference = next_batch(), next_batch()
        counted = step == 0
        with _counting(counted) as counter:
            with torch.no_grad():
                fake = transform(source)
            loss_d = discriminator_loss_gan(discriminator(reference), discriminator(fake))
            optimizer_d.zero_grad()
            loss_d.backward()
            optimizer_d.step()
            fake = transform(source)
            logits, fake_features = discriminator(fake, return_features=True)
            with torch.no_grad():
                _, source_features = discriminator(source, return_features=True)
            identity = perceptual_loss(fake_features[3:5], source_features[3:5], [1.0, 1.0])
            loss_t = generator_loss_gan(logits) + IDENTITY_WEIGHT * identity
            optimizer_t.zero_grad()
            loss_t.backward()
            optimizer_t.step()
        if counted:
            flops = counter.get_total_flops()
        if step >= warmup:
            timed_losses.add(loss_d, loss_t - IDENTITY_WEIGHT * identity)
    _synchronise(device)
    seconds = time.perf_counter() - start
    return steps * BATCH / seconds, flops, timed_losses.means()


def shipped_trainer(paths, size: int, steps: int, warmup: int, compile_networks: bool, device: str) -> tuple[float, int, dict[str, float]]:
    torch.manual_seed(0)
    runtime = setup_runtime(device, "auto", channels_last=True)
    pixels = FaceImages(paths, size, preload=True).pixels if paths is not None else synthetic(BATCH * 4, size)
    source_batches, reference_batches = StepBatches(pixels, BATCH, 0), StepBatches(pixels, BATCH, 1)
    transform = runtime.prepare(TransformNetwork())
    discriminator = runtime.prepare(AttributeDiscriminator(64, size))
    if compile_networks:
        transform = torch.compile(transform, dynamic=False)
        discriminator = torch.compile(discriminator, dynamic=False)
    stage = TransformStage(transform, discriminator, runtime, {}, variant="a", identity_weight=IDENTITY_WEIGHT)
    timed_losses, flops = LossMeans(), 0
    for step in range(warmup + steps):
        if step == warmup:
            _synchronise(runtime.device)
            start = time.perf_counter()
        counted = step == 0 and not compile_networks
        with _counting(counted) as counter:
            losses = stage.train_step((source_batches(step), reference_batches(step)), step)
        if counted:
            flops = counter.get_total_flops()
        if step >= warmup:
            timed_losses.add(losses["discriminator"], losses["adversarial"])
    _synchronise(runtime.device)
    seconds = time.perf_counter() - start
    return steps * BATCH / seconds, flops, timed_losses.means()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="time the loops this many times, in turn; the table gives the median")
    parser.add_argument("--compile", action="store_true", help="also time the trainer with torch.compile (slow first steps)")
    parser.add_argument("--data", type=Path, default=None, help="aligned folder (default: random pixels)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when present")
    args = parser.parse_args()
    runtime = setup_runtime(args.device, "auto")
    peak = matmul_rate(runtime.device)
    loops = [("plain fp32 loop", None), (f"diat trainer ({runtime.precision})", False)]
    if args.compile:
        loops.append((f"diat trainer ({runtime.precision}) + torch.compile", True))
    rows = []
    for size in args.sizes:
        paths = face_paths(args.data, 512)
        runs: dict[str, list[tuple[float, int, dict[str, float]]]] = {name: [] for name, _ in loops}
        for _ in range(args.repeats):  # in turn, so a slow spell of the machine hits every loop alike
            for name, compile_networks in loops:
                if compile_networks is None:
                    runs[name].append(plain_loop(paths, size, args.steps, args.warmup, runtime.device))
                else:
                    warmup = args.warmup + (5 if compile_networks else 0)
                    runs[name].append(shipped_trainer(paths, size, args.steps, warmup, compile_networks, args.device))
        plain_rate = statistics.median(rate for rate, _, _ in runs[loops[0][0]])
        eager_flops = runs[loops[1][0]][0][1]
        for name, _ in loops:
            rates = [rate for rate, _, _ in runs[name]]
            rate, flops, losses = statistics.median(rates), runs[name][0][1] or eager_flops, runs[name][0][2]
            step_gflop = flops / 1e9
            achieved = step_gflop * rate / BATCH
            rows.append([
                f"{size}", name, f"{rate:.1f} ({min(rates):.1f}-{max(rates):.1f})", f"{rate / plain_rate:.2f}x", f"{step_gflop:.1f}",
                f"{achieved:.0f} ({achieved / peak:.0%})", f"{losses['discriminator']:.3f} / {losses['adversarial']:.3f}",
            ])
    print_table(
        f"Training speed on {runtime.device.type}, DIAT-A step (T + D), batch {BATCH}, {args.steps} timed steps after {args.warmup} warm-up, "
        f"median of {args.repeats} runs taken in turn; fp32 2048x2048 matrix product: {peak:.0f} GFLOP/s",
        ["px", "loop", "img/s (range)", "speed-up", "GFLOP/step", "GFLOP/s (of matmul)", "mean D / adversarial loss, timed steps"],
        rows,
    )


if __name__ == "__main__":
    main()
