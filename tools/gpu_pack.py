"""Carry aligned training folders to a lent GPU machine, and bring the trained transforms back.

Usage:
  python tools/gpu_pack.py pack PACK ALIGNED [ALIGNED ...] [--quality 95]
  python tools/gpu_pack.py unpack PACK DEST
  python tools/gpu_pack.py results RUNS OUT [--keep 4]

The device tool carries at most 64 MiB and returns at most 16 MiB a file, while an aligned
128 px folder of ~2,500 PNG crops is ~70 MB. `pack` stores each crop once (folders often share
faces) as JPEG at quality 95 (~7 KB a face), with each folder's manifest and the CelebA label
files; `unpack` writes the PNG folders back (so training reads JPEG-rounded pixels, said where
such a run is reported). `results` keeps, per run, config.json, metrics.jsonl, the last grid and
the transforms of its last KEEP saved steps in fp16, as one RUN.tar, for tools/pick_snapshot.py here.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from diat_cli.data import find_beside_photos
from diat_cli.manifest import MANIFEST_NAME, face_records
from diat_cli.train.loop import saved_networks

LABEL_FILES = ("list_attr_celeba.txt", "identity_CelebA.txt")


def pack(pack_dir: Path, folders: list[Path], quality: int) -> None:
    if pack_dir.exists():
        raise SystemExit(f"{pack_dir} exists; remove it first")
    (pack_dir / "faces").mkdir(parents=True)
    crops: dict[str, Path] = {}
    for folder in folders:
        (pack_dir / folder.name).mkdir()
        shutil.copyfile(folder / MANIFEST_NAME, pack_dir / folder.name / MANIFEST_NAME)
        records = face_records(folder)
        crops.update((Path(record["crop"]).stem, folder / record["crop"]) for record in records)
        for name in LABEL_FILES:
            labels = find_beside_photos(records, name)
            if labels is not None and not (pack_dir / name).exists():
                shutil.copyfile(labels, pack_dir / name)

    def encode(item: tuple[str, Path]) -> None:
        stem, path = item
        Image.open(path).convert("RGB").save(pack_dir / "faces" / f"{stem}.jpg", quality=quality)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(encode, crops.items()))
    size = sum(p.stat().st_size for p in pack_dir.rglob("*") if p.is_file())
    print(f"{len(crops):,} faces of {len(folders)} folders -> {pack_dir} ({size / 2**20:.1f} MiB)")


def unpack(pack_dir: Path, dest: Path) -> None:
    jobs = []
    for manifest in sorted(pack_dir.glob(f"*/{MANIFEST_NAME}")):
        folder = dest / manifest.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest, folder / MANIFEST_NAME)
        for record in face_records(manifest.parent):
            crop = record["crop"]
            (folder / crop).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((pack_dir / "faces" / f"{Path(crop).stem}.jpg", folder / crop))
    for name in LABEL_FILES:
        if (pack_dir / name).is_file():
            shutil.copyfile(pack_dir / name, dest / name)

    def decode(job: tuple[Path, Path]) -> None:
        Image.open(job[0]).convert("RGB").save(job[1])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(decode, jobs))
    print(f"{len(jobs):,} crops -> {dest}")


def _fp16_bytes(path: Path) -> bytes:
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    return save(tensors, metadata=metadata)


def results(runs: Path, out: Path, keep: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for run in sorted(p for p in runs.iterdir() if (p / "config.json").is_file()):
        kept = saved_networks(run)[-keep:]
        grids = sorted((run / "grids").glob("*.png"))
        with tarfile.open(out / f"{run.name}.tar", "w") as tar:
            for name in ("config.json", "metrics.jsonl", "denoiser.safetensors"):
                if (run / name).is_file():
                    tar.add(run / name, f"{run.name}/{name}")
            if grids:
                tar.add(grids[-1], f"{run.name}/grids/{grids[-1].name}")
            for step, weights in kept:
                data = _fp16_bytes(weights)
                info = tarfile.TarInfo(f"{run.name}/snapshots/step-{step:07d}/transform.safetensors")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        print(f"{run.name}: kept steps {[step for step, _ in kept]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack")
    p.add_argument("pack_dir", type=Path)
    p.add_argument("folders", type=Path, nargs="+")
    p.add_argument("--quality", type=int, default=95)
    u = commands.add_parser("unpack")
    u.add_argument("pack_dir", type=Path)
    u.add_argument("dest", type=Path)
    r = commands.add_parser("results")
    r.add_argument("runs", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--keep", type=int, default=4)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.pack_dir, args.folders, args.quality)
    elif args.command == "unpack":
        unpack(args.pack_dir, args.dest)
    else:
        results(args.runs, args.out, args.keep)


if __name__ == "__main__":
    main()
