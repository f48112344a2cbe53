"""manifest.jsonl: what `diat align` did to each photo, so later commands can find labels and paste back.

One JSON object per line. A face line has `crop` (path relative to the manifest's folder),
`source`, `relative`, `face_index`, `box`, `landmarks`, `score`, `matrix` (2 x 3, source to crop),
`size` and `source_size`. A photo without a usable face has a line with `crop` set to null.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diat_cli.imageio import write_text_atomic

MANIFEST_NAME = "manifest.jsonl"


def read_manifest(folder: str | Path) -> list[dict]:
    """All complete lines of a folder's manifest (a torn last line from a killed run is ignored)."""
    path = Path(folder) / MANIFEST_NAME
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def face_records(folder: str | Path) -> list[dict]:
    """Only the lines that describe a written crop."""
    return [record for record in read_manifest(folder) if record.get("crop")]


def encode_record(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def copy_faces(records: list[dict], aligned: str | Path, target: str | Path) -> None:
    """Copy some faces of an aligned folder, with their manifest lines, into a new aligned folder.

    The lines keep the original photos' names, so labels, identities and the validation slice
    find the copies as they found the originals. `target` must not exist yet.
    """
    aligned, target = Path(aligned), Path(target)
    target.mkdir(parents=True)
    for record in records:
        crop = target / record["crop"]
        crop.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(aligned / record["crop"], crop)
    write_text_atomic(target / MANIFEST_NAME, "".join(encode_record(record) for record in records))
