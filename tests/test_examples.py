"""The README's first example: examples/transfer_astronaut.py, run with a small model built here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diat_cli.checkpoints import save_network
from diat_cli.imageio import read_image
from diat_cli.manifest import read_manifest
from diat_cli.nets import TransformNetwork

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transfer_astronaut.py"


def test_astronaut_example_edits_the_face_offline(tmp_path):
    data = pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    network = TransformNetwork(channels=8, residual_blocks=1)
    with torch.no_grad():
        network.to_rgb[1].weight.normal_(0.0, 0.02)
    weights = tmp_path / "old.transform.safetensors"
    save_network(weights, network, {"channels": 8, "residual_blocks": 1}, {"kind": "transform", "attribute": "old", "size": 64})

    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--weights", str(weights), "--out", str(tmp_path / "astronaut"), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    original = data.astronaut()
    edited = read_image(tmp_path / "astronaut" / "edited" / "astronaut.png")
    assert edited.shape == original.shape
    [face] = [record for record in read_manifest(tmp_path / "astronaut" / "edited") if record["status"] == "edited"]
    left, top, right, bottom = face["box"]
    assert np.abs(edited[top:bottom, left:right].astype(int) - original[top:bottom, left:right]).mean() > 3
    assert np.array_equal(edited[-60:], original[-60:])  # her suit, far below the face, is untouched
    assert (tmp_path / "astronaut" / "edited" / "_sheets" / "astronaut.png").is_file()
