"""Measure every saved transform of a training run on its own held-out validation faces.

Usage: python tools/pick_snapshot.py RUN_DIR [--data ALIGNED] [--limit 300] [--all-faces] [--confine]

GAN training oscillates, so the last step is not always the best. This edits the source-side
faces of the run's held-out validation slice (never trained on; the evaluation set stays
untouched) with each snapshot, checkpoint and the final weights, and prints attribute success
(the bundled classifier), the mean dlib identity distance and their difference, the score the
bundled models were chosen by (highest success minus distance: an edit that works and keeps
the person), so a model can be chosen without looking at the test faces. Copy the chosen file into a folder with the run's config.json to
train E behind it and evaluate it.

--all-faces: every source-side face of --data, for a folder no run trained on (celeba-wild
aligned by `diat align`) that widens a small held-out slice. --confine: edit as `--confine`
does, for models that ship confined.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from diat_cli.attributes import resolve_attribute
from diat_cli.classifier import attribute_probability, load_classifier
from diat_cli.editing import load_editor
from diat_cli.face.identity import load_identity_network
from diat_cli.metrics import attribute_success
from diat_cli.pipelines.evaluate import (
    _bytes,
    _stack,
    _unit,
    collect_faces,
    identity_outputs,
)
from diat_cli.pipelines.train_enhance import resolve_recorded_path
from diat_cli.progress import SilentReporter
from diat_cli.settings import EvaluateSettings
from diat_cli.train.loop import saved_networks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, help="the aligned folder the run trained on (default: from its config.json)")
    parser.add_argument("--labels", type=Path, help="CelebA labels of --data (default: found beside its photos)")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--all-faces", action="store_true", help="every source-side face of --data, not only its held-out slice")
    parser.add_argument("--confine", action="store_true", help="keep each edit near the attribute's region, as --confine does")
    args = parser.parse_args()

    config = json.loads((args.run / "config.json").read_text())
    data = args.data or resolve_recorded_path(config.get("data"), args.run, config.get("run_dir"))
    if data is None:
        raise SystemExit(f"{args.run}: its training data folder was not found; give --data")
    attribute = resolve_attribute(config["attribute"])
    if args.all_faces and not args.data:
        raise SystemExit("--all-faces is for a --data folder the run never trained on")
    settings = EvaluateSettings(attribute=attribute.name, data=data, limit=args.limit, held_out=not args.all_faces,
                                # the run's own labels belong to its own data folder, not to another --data
                                labels=args.labels if args.data else config.get("labels"))
    sides = collect_faces(settings, attribute, int(config["size"]), SilentReporter())
    pixels = _stack(sides.source, int(config["size"]))
    landmarks = np.stack([face.landmarks_at(int(config["size"])) for face in sides.source])
    classifier, identity = load_classifier(None, "cpu", int(config["size"])), load_identity_network()
    device = torch.device("cpu")
    source_descriptors, _ = identity_outputs(identity, pixels, landmarks, device, 32)
    floor = attribute_success(attribute_probability(classifier(_unit(pixels)), attribute))

    which = f"faces of {data}" if args.all_faces else "held-out validation faces"
    table = Table(title=f"{args.run}: {len(pixels)} {which}, success floor {floor:.1%}" + (", confined" if args.confine else ""))
    for column in ("step", "attribute success", "identity distance (mean)", "score (success - distance)"):
        table.add_column(column, justify="right")
    rows = []
    for step, weights in saved_networks(args.run):
        editor = load_editor(attribute.name, weights, device, use_enhance=False, confine=args.confine)
        edited = torch.cat([_bytes(editor(_unit(pixels[i : i + 64]))) for i in range(0, len(pixels), 64)])
        success = attribute_success(attribute_probability(classifier(_unit(edited)), attribute))
        edited_descriptors, _ = identity_outputs(identity, edited, landmarks, device, 32)
        distance = np.linalg.norm(edited_descriptors - source_descriptors, axis=1).mean()
        rows.append((step, success, distance, success - distance))
    best = max(rows, key=lambda row: row[3])
    for step, success, distance, score in rows:
        table.add_row(str(step), f"{success:.1%}", f"{distance:.3f}", f"{score:.3f}" + (" best" if step == best[0] else ""))
    Console().print(table)


if __name__ == "__main__":
    main()
