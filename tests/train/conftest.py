"""A tiny source/reference pair of folders that any training test can use in seconds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def _faces(folder, count, brightness, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        base = np.full((32, 32, 3), brightness, np.float64)
        image = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"face{index:03d}.png")


@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory):
    """Dark "source" faces and bright "reference" faces, 40 each, plain folders of 32 px crops."""
    root = tmp_path_factory.mktemp("tiny_sets")
    _faces(root / "source", 40, 70, seed=1)
    _faces(root / "reference", 40, 180, seed=2)
    return root / "source", root / "reference"
