"""Speed of the identity network (dlib's ResNet in torch) on CPU: forward, and forward+backward
to the input, which is what the perceptual identity loss costs per training step.

Usage: python benchmarks/identity_speed.py [--batch 16] [--repeats 5] [--threads N]
dlib's own compute_face_descriptor on the same batch is timed as the reference.
Run on an idle machine; OMP_NUM_THREADS=1 for a per-core figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import print_table  # noqa: E402

from diat_cli.face.identity import face_chips, load_identity_network  # noqa: E402


def median_seconds(step, repeats: int) -> float:
    step()  # warm-up: allocations, kernel choice
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    network = load_identity_network()
    generator = torch.Generator().manual_seed(0)
    chips = torch.rand(args.batch, 3, 150, 150, generator=generator) * 255
    crops = torch.rand(args.batch, 3, 128, 128, generator=generator) * 2 - 1

    def forward() -> None:
        with torch.no_grad():
            network(chips)

    def forward_backward() -> None:
        images = chips.clone().requires_grad_()
        network(images).square().sum().backward()

    def chips_forward_backward() -> None:
        images = crops.clone().requires_grad_()
        descriptors, features = network(face_chips(images), return_features=True)
        (descriptors.square().sum() + sum(f.square().mean() for f in features)).backward()

    def dlib_forward() -> None:
        recogniser.compute_face_descriptor(dlib_chips)

    import dlib

    from diat_cli.face.model_files import FACE_RECOGNITION_RESNET, model_path

    recogniser = dlib.face_recognition_model_v1(str(model_path(FACE_RECOGNITION_RESNET)))
    dlib_chips = [np.ascontiguousarray(chip.permute(1, 2, 0).numpy().astype(np.uint8)) for chip in chips]

    rows = []
    for name, step in [
        ("forward (no grad)", forward),
        ("forward + backward to the 150 px chips", forward_backward),
        ("face_chips(128 px crops) + forward with features + backward", chips_forward_backward),
        ("dlib compute_face_descriptor (reference)", dlib_forward),
    ]:
        seconds = median_seconds(step, args.repeats)
        rows.append([name, f"{1000 * seconds:.0f}", f"{args.batch / seconds:.1f}"])
    print_table(
        f"Identity network, batch {args.batch}, CPU, median of {args.repeats}",
        ["what", "ms/batch", "img/s"],
        rows,
    )


if __name__ == "__main__":
    main()
