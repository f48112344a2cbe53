"""manifest.jsonl: what `diat align` did to each photo, so later commands can find labels and paste back.

One JSON object per line. A face line has `crop` (path relative to the manifest's folder),
`source`, `relative`, `face_index`, `box`, `landmarks`, `score`, `matrix` (2 x 3, source to crop),
`size` and `source_size`. A photo without a usable face has a line with `crop` set to null.
"""

from __future__ import annotations

import json
from pathlib import Path

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
