"""Photos/s and faces/s of `diat align` next to bare dlib detection on the same photos, same run.

Usage: python benchmarks/align_speed.py [PHOTO_FOLDER] [--limit N]
Default folder: ../shared/data/celeba-wild/images. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from diat_cli.face.detect import FaceDetector  # noqa: E402
from diat_cli.imageio import find_images, read_image  # noqa: E402
from diat_cli.pipelines.align import align_photos  # noqa: E402
from diat_cli.settings import AlignSettings  # noqa: E402


def bare_detection(paths: list[Path], upsample: int) -> tuple[float, int]:
    """Read each photo and run dlib's HOG detector on it, one process: the reference rate."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    start, faces = time.perf_counter(), 0
    for path in paths:
        faces += len(detector(read_image(path), upsample))
    return time.perf_counter() - start, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "celeba-wild" / "images"
    parser.add_argument("folder", nargs="?", type=Path, default=default)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--upsample", type=int, default=1)
    args = parser.parse_args()
    paths = [image.path for image in find_images([args.folder])]
    if args.limit:
        paths = paths[: args.limit]
    FaceDetector(upsample=args.upsample).detect(read_image(paths[0]))  # load models outside the timing

    rows = []
    seconds, faces = bare_detection(paths, args.upsample)
    bare_rate = len(paths) / seconds
    rows.append(["bare dlib HOG detection (1 process)", f"{bare_rate:.1f}", f"{faces / seconds:.1f}", "100%"])
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as output:
            settings = AlignSettings(inputs=tuple(paths), output=Path(output) / "aligned", workers=workers, upsample=args.upsample)
            start = time.perf_counter()
            summary = align_photos(settings)
            seconds = time.perf_counter() - start
        rate = summary.photos / seconds
        rows.append(
            [f"diat align ({workers} worker{'s' if workers > 1 else ''})", f"{rate:.1f}", f"{summary.faces / seconds:.1f}", f"{100 * rate / bare_rate:.0f}%"]
        )
    print_table(
        f"diat align on {len(paths)} photos of {args.folder} (upsample {args.upsample})",
        ["what", "photos/s", "faces/s", "vs bare detection"],
        rows,
    )


if __name__ == "__main__":
    main()
