"""Copy a trained transform (and its E, if any) into diat_cli/weights/ as fp16, with its evaluate numbers.

Usage: python tools/bundle_weights.py RUN_DIR ATTRIBUTE [--metrics REPORT/metrics.json]
Writes diat_cli/weights/<ATTRIBUTE>.transform.safetensors (+ .enhance.safetensors). Local paths
are left out of the metadata; the evaluate numbers go in under "evaluate".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diat_cli.checkpoints import load_network, save_network

WEIGHTS = Path(__file__).resolve().parents[1] / "diat_cli" / "weights"
LOCAL_KEYS = ("data_folder", "transform_file", "weights")


def bundle(source: Path, target: Path, evaluate: dict | None) -> None:
    network, header = load_network(source)
    metadata = {key: value for key, value in header.items() if key not in (*LOCAL_KEYS, "config", "schema", "class", "diat_version")}
    if isinstance(metadata.get("initialised_from"), dict):  # --init: keep which run and step, not where it lay
        metadata["initialised_from"] = {
            key: "/".join(Path(value).parts[-4:]) if isinstance(value, str) else value for key, value in metadata["initialised_from"].items()
        }
    if evaluate is not None:
        metadata["evaluate"] = evaluate
    save_network(target, network, header["config"], metadata, dtype=torch.float16)  # save_network writes class, schema, version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("attribute")
    parser.add_argument("--metrics", type=Path)
    args = parser.parse_args()
    evaluate = None
    if args.metrics:
        numbers = json.loads(args.metrics.read_text())
        evaluate = {key: numbers[key] for key in ("attribute_success", "identity", "outside_region", "realism") if key in numbers}
        evaluate["identity"].pop("network", None)
        evaluate["data"] = {k: v for k, v in numbers["data"].items() if k in ("source_faces", "reference_faces", "held_out_only")}
        evaluate["data"]["folder"] = Path(numbers["data"]["folder"]).name
    bundle(args.run / "transform.safetensors", WEIGHTS / f"{args.attribute}.transform.safetensors", evaluate)
    if (args.run / "enhance.safetensors").exists():
        bundle(args.run / "enhance.safetensors", WEIGHTS / f"{args.attribute}.enhance.safetensors", None)
    print(f"bundled {args.run} as {args.attribute}")


if __name__ == "__main__":
    main()
