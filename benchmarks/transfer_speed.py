"""Photos/s of `diat transfer` end to end next to bare face detection on the same photos, same run.

Usage: python benchmarks/transfer_speed.py [PHOTO_FOLDER] [--limit N] [--workers W] [--size S] [--weights W]
Default folder: ../shared/data/celeba-wild/images. Without --weights, an untrained transform
network of the real architecture (32 channels, 5 residual blocks) at --size is timed: speed does
not depend on what the weights learned. Run on an idle machine.

Goal: transfer at 80% or more of bare detection with the same number of processes, i.e. the
network, pasting and writing hide behind detection.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from diat_cli.face.detect import FaceDetector  # noqa: E402
from diat_cli.imageio import find_images, read_image  # noqa: E402
from diat_cli.pipelines.transfer import split_cores, transfer_photos  # noqa: E402
from diat_cli.settings import TransferSettings  # noqa: E402

_detector: FaceDetector | None = None


def _init(upsample: int) -> None:
    global _detector
    _detector = FaceDetector(upsample=upsample)


def _detect(path: Path) -> int:
    """Read one photo and find its faces with landmarks: the work transfer cannot avoid."""
    return len(_detector.detect(read_image(path)))


def bare_detection(paths: list[Path], upsample: int, processes: int) -> tuple[float, int]:
    """Seconds and faces for reading + HOG detection + landmarks of every photo, in `processes` processes."""
    start = time.perf_counter()
    if processes == 1:
        _init(upsample)
        faces = sum(_detect(path) for path in paths)
    else:
        with multiprocessing.get_context("fork").Pool(processes, initializer=_init, initargs=(upsample,)) as pool:
            faces = sum(pool.imap_unordered(_detect, paths, chunksize=2))
    return time.perf_counter() - start, faces


def fixture_weights(folder: Path, size: int) -> Path:
    import torch

    from diat_cli.checkpoints import save_network
    from diat_cli.nets import TransformNetwork

    torch.manual_seed(0)
    network = TransformNetwork(channels=32, residual_blocks=5)
    with torch.no_grad():
        network.to_rgb[1].weight.normal_(0.0, 0.01)
    path = folder / "benchmark.transform.safetensors"
    save_network(path, network, {"channels": 32, "residual_blocks": 5}, {"kind": "transform", "attribute": "old", "size": size})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "celeba-wild" / "images"
    parser.add_argument("folder", nargs="?", type=Path, default=default)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--upsample", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="detection processes (default: as diat transfer decides)")
    parser.add_argument("--size", type=int, default=128, help="network size of the untrained fixture network")
    parser.add_argument("--weights", type=Path, default=None, help="time real weights instead of the fixture network")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    paths = [image.path for image in find_images([args.folder])]
    if args.limit:
        paths = paths[: args.limit]

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = args.weights or fixture_weights(scratch, args.size)
        from diat_cli.pipelines.transfer import plan_editors, resolve_device

        probe = TransferSettings(inputs=tuple(paths), output=scratch / "probe", weights=(weights,))
        size = plan_editors(probe)[0].size
        device = resolve_device(args.device)
        workers, threads = split_cores(os.cpu_count() or 1, device, size, args.workers)
        _init(args.upsample)
        _detect(paths[0])  # load dlib's models outside the timing

        rows = []
        one_seconds, faces = bare_detection(paths, args.upsample, 1)
        one_rate = len(paths) / one_seconds
        rows.append(["bare detection + landmarks (1 process)", f"{one_rate:.2f}", f"{faces / one_seconds:.2f}", "100%", "-"])
        same_rate = one_rate
        if workers > 1:
            seconds, faces = bare_detection(paths, args.upsample, workers)
            same_rate = len(paths) / seconds
            rows.append([f"bare detection + landmarks ({workers} processes)", f"{same_rate:.2f}", f"{faces / seconds:.2f}", f"{100 * same_rate / one_rate:.0f}%", "100%"])
        settings = TransferSettings(
            inputs=tuple(paths),
            output=scratch / "out",
            weights=(weights,),
            workers=workers,
            upsample=args.upsample,
            min_face=0,
            device=args.device,
            batch_size=args.batch_size,
        )
        start = time.perf_counter()
        summary = transfer_photos(settings)
        seconds = time.perf_counter() - start
        rate = summary.photos / seconds
        network = f"{size} px network on {device}" + (f", {threads} thread{'s' if threads > 1 else ''}" if threads else "")
        rows.append(
            [
                f"diat transfer ({workers} detection process{'es' if workers > 1 else ''} + {network})",
                f"{rate:.2f}",
                f"{summary.faces / seconds:.2f}",
                f"{100 * rate / one_rate:.0f}%",
                f"{100 * rate / same_rate:.0f}%",
            ]
        )
    print_table(
        f"diat transfer on {len(paths)} photos of {args.folder} (upsample {args.upsample}, {summary.faces} faces edited; times include start-up)",
        ["what", "photos/s", "faces/s", "vs 1-process detection", "vs detection, same processes"],
        rows,
    )


if __name__ == "__main__":
    main()
