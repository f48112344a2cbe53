"""Weights files: safetensors with metadata, rebuilt from a closed registry, never unpickled."""

from __future__ import annotations

import pickle

import pytest
import torch

from diat_cli.checkpoints import load_network, load_training_state, read_metadata, save_network, save_training_state
from diat_cli.errors import DiatError
from diat_cli.nets.transform import TransformNetwork


def test_round_trip_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(0)
    network = TransformNetwork(channels=8)
    save_network(tmp_path / "t.safetensors", network, {"channels": 8}, {"attribute": "no-eyeglasses", "steps": 12})
    loaded, metadata = load_network(tmp_path / "t.safetensors")
    assert metadata["class"] == "TransformNetwork" and metadata["attribute"] == "no-eyeglasses" and metadata["steps"] == 12
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    network.eval()
    torch.testing.assert_close(loaded(x), network(x))
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # written atomically, nothing left over


def test_fp16_export_is_half_the_size_and_loads_as_float32(tmp_path):
    network = TransformNetwork(channels=8)
    save_network(tmp_path / "full.safetensors", network, {"channels": 8}, {})
    save_network(tmp_path / "half.safetensors", network, {"channels": 8}, {}, dtype=torch.float16)
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    loaded, _ = load_network(tmp_path / "half.safetensors")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_unknown_class_and_damaged_files_are_refused(tmp_path):
    network = TransformNetwork(channels=8)
    save_network(tmp_path / "t.safetensors", network, {"channels": 8}, {})
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(DiatError, match="cut.safetensors"):
        load_network(tmp_path / "cut.safetensors")
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DiatError, match="not a safetensors weights file"):
        read_metadata(tmp_path / "pickle.safetensors")
    with pytest.raises(DiatError, match="no such weights file"):
        read_metadata(tmp_path / "missing.safetensors")


class Sneaky:
    """Any class: unpickling it would run code, so weights_only loading must refuse it."""


def test_training_state_refuses_arbitrary_objects(tmp_path):
    save_training_state(tmp_path / "ok.pt", {"step": 3, "weights": torch.ones(2)})
    assert load_training_state(tmp_path / "ok.pt")["step"] == 3

    torch.save({"object": Sneaky()}, tmp_path / "bad.pt")
    with pytest.raises(DiatError, match="cannot read training state"):
        load_training_state(tmp_path / "bad.pt")
