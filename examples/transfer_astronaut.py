"""Edit a real photo offline: scikit-image's public-domain astronaut portrait (NASA, Eileen Collins).

Usage:
    python examples/transfer_astronaut.py                      # the first bundled attribute
    python examples/transfer_astronaut.py --attr old           # a bundled attribute
    python examples/transfer_astronaut.py --weights runs/old-a # your own training run

Writes FOLDER/astronaut.png (the input), FOLDER/edited/astronaut.png (the edited photo, same size)
and FOLDER/edited/_sheets/astronaut.png (original | edited). FOLDER defaults to ./astronaut.
Nothing is downloaded: the photo ships inside scikit-image, the weights inside diat.
--largest: a portrait has one face, and HOG detection finds a false one on her mission patch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attr", help="attribute with bundled weights (default: the first one bundled)")
    parser.add_argument("--weights", type=Path, help="a training run folder or transform weights file instead")
    parser.add_argument("--out", type=Path, default=Path("astronaut"), help="folder for the input and the results")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    try:
        from skimage import data
    except ImportError:
        print("this example needs scikit-image for its photo: pip install scikit-image", file=sys.stderr)
        return 2
    from PIL import Image

    attribute = args.attr
    if attribute is None and args.weights is None:
        from diat_cli.editing import bundled_attributes

        bundled = bundled_attributes()
        if not bundled:
            print("no bundled weights in this install; pass --weights RUN_FOLDER", file=sys.stderr)
            return 2
        attribute = bundled[0]

    args.out.mkdir(parents=True, exist_ok=True)
    photo = args.out / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    command = [sys.executable, "-m", "diat_cli", "transfer", str(photo), str(args.out / "edited"), "--sheet", "--largest", "--overwrite", "--device", args.device]
    if attribute:
        command += ["--attr", attribute]
    if args.weights:
        command += ["--weights", str(args.weights)]
    print("$ diat " + " ".join(command[3:]), flush=True)
    status = subprocess.call(command)
    if status == 0:
        print(f"edited photo: {args.out / 'edited' / 'astronaut.png'}\ncomparison:   {args.out / 'edited' / '_sheets' / 'astronaut.png'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
