"""Does E give the input back outside the attribute's region? PSNR there, T alone vs T then E.

Usage: OMP_NUM_THREADS=1 python benchmarks/enhance_psnr.py RUN_FOLDER [--data ALIGNED] [--labels FILE]

RUN_FOLDER holds transform.safetensors and enhance.safetensors (a local attribute's run, e.g.
runs/no-eyeglasses-a after `diat train-enhance`). The faces are the held-out source faces of
the transform run's split (data.py's validation slice: never seen by T or E); data folder and
labels default to the run's. For each face x, with m the attribute's region mask:

  outside PSNR  (1 - m)-weighted PSNR between x and the output: T(x), then E(T(x)) (higher: background kept)
  inside kept   m-weighted PSNR between T(x) and E(T(x)) (higher: E kept T's edit)
  inside change m-weighted PSNR between x and the output (lower: a bigger edit where it belongs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table  # noqa: E402

from diat_cli.checkpoints import load_network, read_metadata  # noqa: E402
from diat_cli.data import FaceImages  # noqa: E402
from diat_cli.editing import find_weights  # noqa: E402
from diat_cli.pipelines.train_enhance import attribute_mask, load_split, plan_run  # noqa: E402
from diat_cli.settings import TrainEnhanceSettings  # noqa: E402
from diat_cli.metrics import psnr_per_image as masked_psnr  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder (or transform weights) with enhance.safetensors beside")
    parser.add_argument("--data", type=Path, default=None, help="aligned labelled folder (default: the transform run's)")
    parser.add_argument("--labels", type=Path, default=None, help="CelebA attribute file (default: the run's / found beside the photos)")
    parser.add_argument("--enhance", type=Path, default=None, help="E's weights (default: enhance.safetensors beside T)")
    parser.add_argument("--faces", type=int, default=0, help="use at most this many held-out faces (0: all)")
    parser.add_argument("--batch", type=int, default=64)
    arguments = parser.parse_args()

    transform_path, enhance_path = find_weights(weights=arguments.run)
    enhance_path = arguments.enhance or enhance_path
    if enhance_path is None:
        sys.exit(f"{arguments.run}: no enhance.safetensors beside {transform_path.name}; run `diat train-enhance` first")
    trained_for = read_metadata(enhance_path)  # names the attribute and size even when T is a bare checkpoint
    plan = plan_run(
        TrainEnhanceSettings(
            transform=transform_path, attribute=trained_for.get("attribute"), size=trained_for.get("size"),
            data=arguments.data, labels=arguments.labels, overwrite=True,
        )
    )
    mask = attribute_mask(plan.attribute, plan.size)
    if mask is None:
        sys.exit(f"'{plan.attribute.name}' is a global attribute: it has no region to measure outside of")
    paths = load_split(plan).val_source
    paths = paths[: arguments.faces] if arguments.faces else paths
    transform, _ = load_network(transform_path)
    enhance, _ = load_network(enhance_path)

    columns = {"outside_t": [], "outside_te": [], "inside_kept": [], "change_t": [], "change_te": []}
    for start in range(0, len(paths), arguments.batch):
        faces = FaceImages(paths[start : start + arguments.batch], plan.size, flip=False, preload=True).pixels
        faces = faces.float().div(127.5).sub(1.0)
        with torch.no_grad():
            edited = transform(faces).clamp(-1, 1)
            enhanced = enhance(edited).clamp(-1, 1)
        columns["outside_t"].append(masked_psnr(edited, faces, 1 - mask))
        columns["outside_te"].append(masked_psnr(enhanced, faces, 1 - mask))
        columns["inside_kept"].append(masked_psnr(enhanced, edited, mask))
        columns["change_t"].append(masked_psnr(edited, faces, mask))
        columns["change_te"].append(masked_psnr(enhanced, faces, mask))
    values = {name: torch.cat(parts) for name, parts in columns.items()}
    gain = values["outside_te"] - values["outside_t"]

    def stat(tensor: torch.Tensor) -> str:
        finite = tensor[torch.isfinite(tensor)]
        return f"{finite.mean():.2f} (median {finite.median():.2f})"

    t_meta, e_meta = read_metadata(transform_path), trained_for
    print_table(
        f"E on '{plan.attribute.name}' ({plan.attribute.region} region), {len(paths)} held-out source faces at {plan.size} px; "
        f"T {t_meta.get('steps')} steps, E {e_meta.get('steps')} steps ({e_meta.get('loss', {}).get('inside', '?')} inside-loss); "
        f"{transform_path.parent}",
        ["measure (dB)", "T alone", "T then E"],
        [
            ["PSNR outside region, input vs output (higher: kept)", stat(values["outside_t"]), stat(values["outside_te"])],
            ["PSNR inside region, input vs output (lower: edited)", stat(values["change_t"]), stat(values["change_te"])],
            ["PSNR inside region, T(x) vs E(T(x)) (higher: E kept T's edit)", "-", stat(values["inside_kept"])],
        ],
    )
    print(f"\nE raised the outside PSNR on {int((gain > 0).sum())} of {len(gain)} faces; mean gain {gain.mean():+.2f} dB")


if __name__ == "__main__":
    main()
