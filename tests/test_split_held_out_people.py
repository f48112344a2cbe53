"""tools/split_held_out_people.py: a training folder without any person the evaluation reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from diat_cli.data import split_source_reference, validation_position
from diat_cli.manifest import face_records

TOOL = Path(__file__).resolve().parents[1] / "tools" / "split_held_out_people.py"
# photo -> (person, Smiling label)
FACES = {
    "000001.jpg": (1, -1), "000002.jpg": (1, 1), "000003.jpg": (2, -1), "000004.jpg": (2, -1),
    "000005.jpg": (3, 1), "000006.jpg": (3, -1), "000007.jpg": (4, 1), "000008.jpg": (4, -1),
}


def _aligned_folder(root: Path, with_identities: bool = True) -> Path:
    photos, aligned = root / "photos", root / "aligned"
    photos.mkdir()
    (aligned / "images").mkdir(parents=True)
    manifest = []
    for index, name in enumerate(FACES):
        crop = f"images/{Path(name).stem}_0.png"
        Image.fromarray(np.full((16, 16, 3), 10 * index, dtype=np.uint8)).save(aligned / crop)
        manifest.append({"source": str(photos / name), "relative": f"images/{name}", "crop": crop, "faces_in_photo": 1, "size": 16})
    (aligned / "manifest.jsonl").write_text("".join(json.dumps(record) + "\n" for record in manifest))
    (photos / "list_attr_celeba.txt").write_text(
        f"{len(FACES)}\nSmiling Male\n" + "".join(f"{name} {smiling} 1\n" for name, (_, smiling) in FACES.items())
    )
    if with_identities:
        (photos / "identity_CelebA.txt").write_text("".join(f"{name} {person}\n" for name, (person, _) in FACES.items()))
    return aligned


def _first_in_hash_order(names: list[str]) -> str:
    return min(names, key=validation_position)


def test_split_leaves_out_everyone_the_evaluation_reads(tmp_path):
    aligned = _aligned_folder(tmp_path)
    before = sorted(path.read_bytes() for path in (aligned / "images").iterdir())
    # evaluate --attr smiling --limit 1 edits the first non-smiling face in hash order, verifies it
    # against that person's other photos and compares with the first smiling face.
    edited = _first_in_hash_order([name for name, (_, smiling) in FACES.items() if smiling == -1])
    reference = _first_in_hash_order([name for name, (_, smiling) in FACES.items() if smiling == 1])
    evaluated = {FACES[edited][0], FACES[reference][0]}
    expected = sorted(f"images/{name}" for name, (person, _) in FACES.items() if person not in evaluated)

    out = tmp_path / "train"
    result = subprocess.run([sys.executable, str(TOOL), str(aligned), str(out), "--attr", "smiling", "--limit", "1"], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert sorted(record["relative"] for record in face_records(out)) == expected
    assert sorted(path.name for path in (out / "images").iterdir()) == sorted(Path(r).stem + "_0.png" for r in expected)
    assert f"{len(evaluated)} people left out" in result.stdout
    split = split_source_reference(out, "smiling", validation_fraction=0.0, minimum_images=1)  # labels still found
    assert len(split.train_source) + len(split.train_reference) == len(expected)
    assert sorted(path.read_bytes() for path in (aligned / "images").iterdir()) == before

    again = subprocess.run([sys.executable, str(TOOL), str(aligned), str(out), "--attr", "smiling"], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr


def test_split_needs_identities(tmp_path):
    aligned = _aligned_folder(tmp_path, with_identities=False)
    result = subprocess.run([sys.executable, str(TOOL), str(aligned), str(tmp_path / "train"), "--attr", "smiling"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "identity_CelebA.txt" in result.stderr and not (tmp_path / "train").exists()
