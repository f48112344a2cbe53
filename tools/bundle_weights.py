"""Copy a trained transform (and its E, if any) into diat_cli/weights/ as fp16, with its evaluate numbers.

Usage: python tools/bundle_weights.py RUN_DIR ATTRIBUTE [--metrics REPORT/metrics.json] [--colour-blur SIGMA] [--colour-strength C] [--strength S] [--confine] [--no-enhance]
Writes diat_cli/weights/<ATTRIBUTE>.transform.safetensors (+ .enhance.safetensors). Local paths
are left out of the metadata; the evaluate numbers go in under "evaluate". --colour-blur,
--colour-strength, --strength and --confine store what transfer and evaluate then apply by default; the metrics must have been
measured with the same, so the shipped numbers are what users get. --no-enhance ships T alone
(and removes a bundled E of the attribute), for models whose E was measured to do harm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diat_cli.checkpoints import load_network, save_network
from diat_cli.editing import EDITOR_DEFAULTS
from diat_cli.errors import DiatError

WEIGHTS = Path(__file__).resolve().parents[1] / "diat_cli" / "weights"
LOCAL_KEYS = ("data_folder", "transform_file", "weights")


def bundle(source: Path, target: Path, evaluate: dict | None, colour_blur: float = 0.0, strength: float = 1.0, confine: bool = False,
           colour_strength: float = 1.0) -> None:
    network, header = load_network(source)
    metadata = {key: value for key, value in header.items() if key not in (*LOCAL_KEYS, "config", "schema", "class", "diat_version")}
    if isinstance(metadata.get("initialised_from"), dict):  # --init: keep which run and step, not where it lay
        metadata["initialised_from"] = {
            key: "/".join(Path(value).parts[-4:]) if isinstance(value, str) else value for key, value in metadata["initialised_from"].items()
        }
    if evaluate is not None:
        metadata["evaluate"] = evaluate
    for name, value in {"colour_blur": colour_blur, "colour_strength": colour_strength, "strength": strength, "confine": confine}.items():
        metadata.pop(name, None)
        if value != EDITOR_DEFAULTS[name]:
            metadata[name] = value
    save_network(target, network, header["config"], metadata, dtype=torch.float16)  # save_network writes class, schema, version


def read_evaluate(metrics: Path, colour_blur: float = 0.0, strength: float = 1.0, confine: bool = False, enhance: bool = True,
                  colour_strength: float = 1.0) -> dict:
    """The facts of an evaluate report worth shipping; refuses numbers measured with other editor settings."""
    numbers = json.loads(metrics.read_text())
    editor = numbers.get("editor", {})
    measured_enhance = editor["enhance"] if "enhance" in editor else " + " in str(editor.get("weights", ""))  # older reports: T + E named
    if measured_enhance != enhance:
        raise DiatError(f"{metrics}: measured {'with' if measured_enhance else 'without'} E, but bundled {'with' if enhance else 'without'} it; measure again")
    measured = {}
    for name, bundled_with in {"colour_blur": colour_blur, "colour_strength": colour_strength, "strength": strength, "confine": confine}.items():
        value = editor.get(name)
        measured[name] = EDITOR_DEFAULTS[name] if value is None else value
        if measured[name] != bundled_with:
            option = "--" + name.replace("_", "-")
            raise DiatError(f"{metrics}: measured with {option} {measured[name]}, but bundled with {bundled_with}; measure again")
    evaluate = {key: numbers[key] for key in ("attribute_success", "identity", "outside_region", "realism") if key in numbers}
    evaluate["identity"].pop("network", None)
    evaluate["data"] = {k: v for k, v in numbers["data"].items() if k in ("source_faces", "reference_faces", "held_out_only")}
    evaluate["data"]["folder"] = Path(numbers["data"]["folder"]).name
    evaluate.update(measured)
    evaluate["enhance"] = enhance
    return evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("attribute")
    parser.add_argument("--metrics", type=Path)
    parser.add_argument("--colour-blur", type=float, default=0.0, help="chroma blur (pixels) applied by default; 0: none")
    parser.add_argument("--colour-strength", type=float, default=1.0, help="share of the edit's colour change kept by default; 1: all")
    parser.add_argument("--strength", type=float, default=1.0, help="edit strength applied by default; 1: the networks' own")
    parser.add_argument("--confine", action="store_true", help="keep edits near the attribute's region by default (local attributes)")
    parser.add_argument("--no-enhance", dest="enhance", action="store_false", help="ship T alone, removing a bundled E of the attribute")
    args = parser.parse_args()
    if args.enhance and not (args.run / "enhance.safetensors").exists():
        raise SystemExit(f"error: {args.run}: no enhance.safetensors; train E (diat train-enhance) or pass --no-enhance")
    try:
        evaluate = read_evaluate(args.metrics, args.colour_blur, args.strength, args.confine, args.enhance, args.colour_strength) if args.metrics else None
    except DiatError as error:
        raise SystemExit(f"error: {error}") from None
    bundle(args.run / "transform.safetensors", WEIGHTS / f"{args.attribute}.transform.safetensors", evaluate, args.colour_blur, args.strength, args.confine, args.colour_strength)
    bundled_enhance = WEIGHTS / f"{args.attribute}.enhance.safetensors"
    if not args.enhance:
        bundled_enhance.unlink(missing_ok=True)
    else:
        bundle(args.run / "enhance.safetensors", bundled_enhance, None)
    print(f"bundled {args.run} as {args.attribute}")


if __name__ == "__main__":
    main()
