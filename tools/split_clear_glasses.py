"""Split an aligned CelebA folder into faces without glasses and faces with clear (not dark) glasses.

Usage: python tools/split_clear_glasses.py ALIGNED OUT [--labels list_attr_celeba.txt] [--min-ratio 0.5]

CelebA's `Eyeglasses` label includes sunglasses (about a third of the labelled faces in
celeba-aligned-half), so a discriminator trained on it rewards dark lenses, and every
`eyeglasses` run drew dark smudges. This measures each labelled face's lens brightness (small
boxes on the template's eye centres) against its cheeks (a band below the eyes) and copies the
faces whose ratio is at least --min-ratio into OUT/reference, and the faces without glasses
into OUT/source, for `diat train-transform --source OUT/source --reference OUT/reference`.
Both are aligned folders with their own manifest (the input's lines), so photos keep their
names: the run holds out the same validation photos as a run on ALIGNED, and
`tools/pick_snapshot.py RUN --data OUT/source` measures on them.
A sheet of every face with glasses, darkest lenses first, is written to
OUT/reference-sheet.png to check the threshold by eye. Only photos with one aligned face are used; the crops are copied, the
input folder is not touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from diat_cli.data import find_celeba_labels, read_celeba_attributes
from diat_cli.face.align import TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE
from diat_cli.imageio import read_image, write_image
from diat_cli.manifest import copy_faces, face_records

SHEET_TILE = 64


def lens_to_cheek_ratio(rgb: np.ndarray) -> float:
    """Mean luminance in boxes on both eye centres over that of a band across the cheeks."""
    pixels = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    size = pixels.shape[0]
    eye_distance = (TEMPLATE_RIGHT_EYE[0] - TEMPLATE_LEFT_EYE[0]) * size
    eye_y = TEMPLATE_LEFT_EYE[1] * size
    half_w, half_h = 0.2 * eye_distance, 0.15 * eye_distance
    lenses = [
        pixels[int(eye_y - half_h) : int(eye_y + half_h) + 1, int(x * size - half_w) : int(x * size + half_w) + 1].mean()
        for x in (TEMPLATE_LEFT_EYE[0], TEMPLATE_RIGHT_EYE[0])
    ]
    centre = size / 2
    cheeks = pixels[int(eye_y + 0.6 * eye_distance) : int(eye_y + 0.9 * eye_distance), int(centre - 0.9 * eye_distance) : int(centre + 0.9 * eye_distance)]
    return float(np.mean(lenses) / max(cheeks.mean(), 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("aligned", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--min-ratio", type=float, default=0.5)
    args = parser.parse_args()

    records = [record for record in face_records(args.aligned) if (record.get("faces_in_photo") or 1) == 1]
    labels_path = args.labels or find_celeba_labels(records)
    if labels_path is None:
        raise SystemExit(f"no list_attr_celeba.txt found for {args.aligned}; give --labels")
    glasses = read_celeba_attributes(labels_path).column("Eyeglasses")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose a new folder")

    sides: dict[str, list[dict]] = {"source": [], "reference": []}
    dark = 0
    ratios: list[tuple[float, np.ndarray]] = []  # with a thumbnail for the sheet, so each crop is read once
    for record in records:
        value = glasses.get(Path(record["relative"]).name)
        if value is None:
            continue
        if value != 1:
            sides["source"].append(record)
            continue
        rgb = read_image(args.aligned / record["crop"])
        ratio = lens_to_cheek_ratio(rgb)
        ratios.append((ratio, np.asarray(Image.fromarray(rgb).resize((SHEET_TILE, SHEET_TILE)))))
        if ratio >= args.min_ratio:
            sides["reference"].append(record)
        else:
            dark += 1

    if not ratios:
        raise SystemExit(f"no face in {args.aligned} is labelled Eyeglasses")

    for side, side_records in sides.items():
        copy_faces(side_records, args.aligned, args.out / side)
    ratios.sort(key=lambda item: item[0])
    columns, tile = 20, SHEET_TILE
    sheet = np.zeros((-(-len(ratios) // columns) * tile, columns * tile, 3), dtype=np.uint8)
    for index, (_, thumbnail) in enumerate(ratios):
        top, left = index // columns * tile, index % columns * tile
        sheet[top : top + tile, left : left + tile] = thumbnail
    write_image(args.out / "reference-sheet.png", sheet)
    print(f"{len(sides['source']):,} faces without glasses -> {args.out / 'source'}; {len(sides['reference']):,} with clear glasses -> "
          f"{args.out / 'reference'}; {dark:,} with dark lenses (ratio < {args.min_ratio}) left out")


if __name__ == "__main__":
    main()
