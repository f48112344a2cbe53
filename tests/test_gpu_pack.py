"""tools/gpu_pack.py: aligned folders carried to a GPU machine and back, and a run's transforms brought home."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from diat_cli.data import split_source_reference

TOOL = Path(__file__).resolve().parents[1] / "tools" / "gpu_pack.py"
SMILING = {"000001.jpg": 1, "000002.jpg": -1, "000003.jpg": 1, "000004.jpg": -1, "000005.jpg": 1}


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def _aligned(root: Path, name: str, photos: list[str]) -> Path:
    folder = root / name
    (folder / "images").mkdir(parents=True)
    records = []
    for name_ in photos:
        crop = f"images/{Path(name_).stem}_0.png"
        ramp = np.linspace(0, 120, 32)
        smooth = np.stack([ramp[:, None] + 0 * ramp, ramp[None, :] + 0 * ramp[:, None], np.full((32, 32), 40.0)], -1)
        Image.fromarray((smooth + 20 * int(Path(name_).stem)).astype(np.uint8)).save(folder / crop)  # smooth, as faces are
        records.append({"source": str(root / "photos" / name_), "relative": f"images/{name_}", "crop": crop, "faces_in_photo": 1, "size": 32})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_pack_and_unpack_give_back_the_folders_with_their_labels(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "list_attr_celeba.txt").write_text(
        f"{len(SMILING)}\nSmiling\n" + "".join(f"{n} {v}\n" for n, v in SMILING.items()))
    first = _aligned(tmp_path, "first", list(SMILING)[:4])
    second = _aligned(tmp_path, "second", list(SMILING)[1:])  # shares three faces with the first
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}

    packed = _run("pack", tmp_path / "pack", first, second)
    assert packed.returncode == 0, packed.stderr
    assert len(list((tmp_path / "pack" / "faces").glob("*.jpg"))) == 5  # each face stored once
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before  # inputs untouched

    unpacked = _run("unpack", tmp_path / "pack", tmp_path / "there")
    assert unpacked.returncode == 0, unpacked.stderr
    for folder in (first, second):
        copy = tmp_path / "there" / folder.name
        assert (copy / "manifest.jsonl").read_text() == (folder / "manifest.jsonl").read_text()
        for crop in (folder / "images").iterdir():
            original = np.asarray(Image.open(crop), dtype=float)
            restored = np.asarray(Image.open(copy / "images" / crop.name), dtype=float)
            assert np.abs(original - restored).mean() < 3  # JPEG at quality 95
    split = split_source_reference(tmp_path / "there" / "second", "smiling", tmp_path / "there" / "list_attr_celeba.txt",
                                   minimum_images=1, minimum_validation=0)
    assert len(split.train_source) + len(split.train_reference) + len(split.val_source) + len(split.val_reference) == 4


def test_pack_refuses_an_existing_folder(tmp_path):
    (tmp_path / "pack").mkdir()
    result = _run("pack", tmp_path / "pack", tmp_path)
    assert result.returncode != 0 and "exists" in result.stderr


def test_results_keep_the_last_transforms_in_fp16(tmp_path):
    run = tmp_path / "runs" / "female128"
    (run / "grids").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text("{}\n")
    Image.new("RGB", (8, 8)).save(run / "grids" / "step-0000500.png")
    for folder, step in (("snapshots", 250), ("snapshots", 500), ("checkpoints", 750), ("checkpoints", 1000)):
        (run / folder / f"step-{step:07d}").mkdir(parents=True)
        save_file({"w": torch.full((2, 2), float(step))}, run / folder / f"step-{step:07d}" / "transform.safetensors", {"steps": str(step)})

    result = _run("results", tmp_path / "runs", tmp_path / "out", "--keep", "3")
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "out" / "female128.tar") as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "back", filter="data")
    kept = sorted(n for n in names if n.endswith("transform.safetensors"))
    assert kept == [f"female128/snapshots/step-{s:07d}/transform.safetensors" for s in (500, 750, 1000)]
    assert {"female128/config.json", "female128/metrics.jsonl", "female128/grids/step-0000500.png"} <= names
    with safe_open(str(tmp_path / "back" / kept[-1]), "pt") as handle:
        assert handle.get_tensor("w").dtype == torch.float16 and handle.get_tensor("w")[0, 0].item() == 1000.0
        assert handle.metadata() == {"steps": "1000"}
