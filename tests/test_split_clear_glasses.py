"""tools/split_clear_glasses.py: dark lenses are told from clear ones and left out of the reference set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from diat_cli.data import split_folders
from diat_cli.face.align import TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE
from diat_cli.manifest import face_records

TOOL = Path(__file__).resolve().parents[1] / "tools" / "split_clear_glasses.py"
SIZE = 64


def _face(lens_level: int) -> np.ndarray:
    """A flat skin-coloured crop with squares of `lens_level` grey on both template eye centres."""
    pixels = np.full((SIZE, SIZE, 3), 180, dtype=np.uint8)
    y = int(TEMPLATE_LEFT_EYE[1] * SIZE)
    for x in (int(TEMPLATE_LEFT_EYE[0] * SIZE), int(TEMPLATE_RIGHT_EYE[0] * SIZE)):
        pixels[y - 4 : y + 5, x - 5 : x + 6] = lens_level
    return pixels


def test_split_keeps_clear_glasses_and_drops_sunglasses(tmp_path):
    aligned = tmp_path / "aligned"
    (aligned / "images").mkdir(parents=True)
    faces = {"000001.jpg": (-1, 170), "000002.jpg": (1, 150), "000003.jpg": (1, 20), "000004.jpg": (-1, 180)}
    manifest = []
    for name, (label, lens) in faces.items():
        crop = f"images/{Path(name).stem}_0.png"
        Image.fromarray(_face(lens)).save(aligned / crop)
        manifest.append({"source": str(tmp_path / "photos" / name), "relative": f"images/{name}", "crop": crop, "faces_in_photo": 1})
    (aligned / "manifest.jsonl").write_text("".join(json.dumps(record) + "\n" for record in manifest))
    labels = tmp_path / "list_attr_celeba.txt"
    labels.write_text(f"{len(faces)}\nEyeglasses Male\n" + "".join(f"{name} {label} 1\n" for name, (label, _) in faces.items()))
    before = sorted(path.read_bytes() for path in (aligned / "images").iterdir())

    out = tmp_path / "split"
    result = subprocess.run([sys.executable, str(TOOL), str(aligned), str(out), "--labels", str(labels)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (out / "source" / "images").iterdir()) == ["000001_0.png", "000004_0.png"]
    assert sorted(path.name for path in (out / "reference" / "images").iterdir()) == ["000002_0.png"]  # 000003 wears sunglasses
    split = split_folders(out / "source", out / "reference", validation_fraction=0.0, minimum_images=1)
    assert [path.name for path in split.train_reference] == ["000002_0.png"]  # the copies are an aligned folder again
    assert [record["relative"] for record in face_records(out / "source")] == ["images/000001.jpg", "images/000004.jpg"]
    assert "1 with dark lenses" in result.stdout
    assert (out / "reference-sheet.png").is_file()
    assert sorted(path.read_bytes() for path in (aligned / "images").iterdir()) == before

    again = subprocess.run([sys.executable, str(TOOL), str(aligned), str(out), "--labels", str(labels)], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr
