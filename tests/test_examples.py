"""The README's first example: examples/transfer_astronaut.py, run with a small model built here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diat_cli.checkpoints import read_metadata, save_network
from diat_cli.imageio import read_image
from diat_cli.manifest import read_manifest
from diat_cli.nets import TransformNetwork

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transfer_astronaut.py"


def _run_astronaut_example(tmp_path, *options):
    """Run examples/transfer_astronaut.py; returns (original, edited photo, the edited face's manifest record)."""
    data = pytest.importorskip("skimage.data")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *options, "--out", str(tmp_path / "astronaut"), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    original = data.astronaut()
    edited = read_image(tmp_path / "astronaut" / "edited" / "astronaut.png")
    assert edited.shape == original.shape
    [face] = [record for record in read_manifest(tmp_path / "astronaut" / "edited") if record["status"] == "edited"]
    return original, edited, face


def test_astronaut_example_edits_the_face_offline(tmp_path):
    pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    network = TransformNetwork(channels=8, residual_blocks=1)
    with torch.no_grad():
        network.to_rgb[1].weight.normal_(0.0, 0.02)
    weights = tmp_path / "old.transform.safetensors"
    save_network(weights, network, {"channels": 8, "residual_blocks": 1}, {"kind": "transform", "attribute": "old", "size": 64})

    original, edited, face = _run_astronaut_example(tmp_path, "--weights", str(weights))
    left, top, right, bottom = face["box"]
    assert np.abs(edited[top:bottom, left:right].astype(int) - original[top:bottom, left:right]).mean() > 3
    assert np.array_equal(edited[-60:], original[-60:])  # her suit, far below the face, is untouched
    assert (tmp_path / "astronaut" / "edited" / "_sheets" / "astronaut.png").is_file()


def test_readme_first_command_ages_the_astronaut_with_the_bundled_old_model(tmp_path):
    """Exactly what the README runs first (`--attr old`): bundled weights, no training, nothing downloaded."""
    original, edited, face = _run_astronaut_example(tmp_path, "--attr", "old")
    assert face["weights"] == "bundled:old"
    left, top, right, bottom = face["box"]
    assert np.abs(edited[top:bottom, left:right].astype(int) - original[top:bottom, left:right]).mean() > 1  # the face changed
    assert np.array_equal(edited[-60:], original[-60:])  # her suit did not


def test_bundled_smiling_model_changes_the_astronauts_mouth(tmp_path):
    original, edited, face = _run_astronaut_example(tmp_path, "--attr", "smiling")
    assert face["weights"] == "bundled:smiling"
    left, top, right, bottom = face["box"]
    mouth = (slice(top + (bottom - top) * 2 // 3, bottom), slice(left, right))
    assert np.abs(edited[mouth].astype(int) - original[mouth]).mean() > 1  # the smile changed
    assert np.array_equal(edited[-60:], original[-60:])


# --- the shell examples: each run as a user would, on a tiny setting ---------------------------
EXAMPLES = EXAMPLE.parent


def _bash(script, *args, cwd):
    """Run examples/<script> with bash, the installed `diat` on PATH; returns the completed process."""
    return subprocess.run(
        ["bash", str(EXAMPLES / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )


@pytest.fixture(scope="module")
def astronaut_photos(tmp_path_factory):
    """Photos with one real face each: the astronaut, mirrored and at several brightnesses."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    root = tmp_path_factory.mktemp("astronaut_photos")
    photo = data.astronaut()
    for side, gains in (("plain", np.linspace(0.75, 1.1, 10)), ("bright", np.linspace(1.2, 1.45, 10))):  # training needs 16+ a side
        (root / side).mkdir()
        for index, gain in enumerate(gains):
            for flip in (False, True):
                image = np.clip(photo.astype(np.float64) * gain, 0, 255).astype(np.uint8)
                image = image[:, ::-1] if flip else image
                Image.fromarray(np.ascontiguousarray(image)).save(root / side / f"photo{index}{'m' if flip else ''}.jpg")
    return root


def _tiny_transform(path):
    torch.manual_seed(0)
    network = TransformNetwork(channels=8, residual_blocks=1)
    with torch.no_grad():
        network.to_rgb[1].weight.normal_(0.0, 0.02)
    save_network(path, network, {"channels": 8, "residual_blocks": 1}, {"kind": "transform", "attribute": "old", "size": 64})
    return path


def test_align_example_finds_the_faces(astronaut_photos, tmp_path):
    result = _bash("align_photos.sh", astronaut_photos / "plain", tmp_path / "aligned", "--largest", "--size", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    crops = sorted((tmp_path / "aligned").glob("*.png"))
    assert len(crops) == 20 and read_image(crops[0]).shape == (64, 64, 3)
    assert "20 face crop(s)" in result.stdout


def test_train_custom_attribute_example_trains_and_previews(astronaut_photos, tmp_path):
    result = _bash(
        "train_custom_attribute.sh", astronaut_photos / "plain", astronaut_photos / "bright", tmp_path / "run",
        "--size", "64", "--steps", "2", "--batch-size", "2", "--transform-channels", "4", "--discriminator-channels", "4",
        "--device", "cpu", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metadata = read_metadata(tmp_path / "run" / "transform.safetensors")
    assert metadata["attribute"] == "custom" and metadata["steps"] == 2 and metadata["fuse_mask"] is True
    previews = sorted((tmp_path / "run" / "preview").glob("*.png"))
    assert len(previews) == 8 and read_image(previews[0]).shape == (128, 128, 3)


def test_transfer_bundled_example_edits_with_every_bundled_model(astronaut_photos, tmp_path):
    from diat_cli.editing import bundled_attributes

    attributes = bundled_attributes()
    if not attributes:
        pytest.skip("no bundled models in this checkout")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(astronaut_photos / "plain" / "photo2.jpg", photos / "astronaut.jpg")
    result = _bash("transfer_bundled.sh", photos, tmp_path / "edited", "--largest", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    original = read_image(photos / "astronaut.jpg")
    for attribute in attributes:
        edited = read_image(tmp_path / "edited" / attribute / "astronaut.jpg")
        assert edited.shape == original.shape
        assert (tmp_path / "edited" / attribute / "_sheets" / "astronaut.jpg").is_file()


def test_evaluate_example_writes_numbers_and_report(astronaut_photos, tmp_path):
    weights = _tiny_transform(tmp_path / "old.transform.safetensors")
    result = _bash(
        "evaluate_model.sh", "old", astronaut_photos / "plain", tmp_path / "report",
        "--weights", weights, "--reference", astronaut_photos / "bright", "--device", "cpu", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["identity"]["faces"] >= 20  # every photo's face (HOG also finds her mission patch)
    assert "<table" in (tmp_path / "report" / "report.html").read_text()
