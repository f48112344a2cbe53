"""Weights as safetensors with JSON metadata; resumable training state without pickles.

A network file holds the state dict plus, under the metadata key "diat", a JSON object with
the network's class (from a closed registry), its constructor arguments, and what it was
trained for (attribute, variant, size, steps, version, ...). Loading never runs code from a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from diat_cli import __version__
from diat_cli.errors import DiatError
from diat_cli.imageio import DEFAULT_FILE_MODE, temporary_beside

METADATA_KEY = "diat"
SCHEMA_VERSION = 1


def _atomic_target(path: Path):
    descriptor, temporary = temporary_beside(path)
    os.close(descriptor)
    return Path(temporary)


def save_network(
    path: str | os.PathLike,
    network: torch.nn.Module,
    config: dict[str, Any],
    metadata: dict[str, Any],
    dtype: torch.dtype | None = None,
) -> None:
    """Write `network`'s weights and metadata atomically.

    config: the constructor arguments that rebuild the network (JSON-serialisable).
    metadata: what it is for (attribute, variant, size, steps, ...). dtype: e.g. torch.float16 to ship small.
    """
    path = Path(path)
    module = network.module if hasattr(network, "module") else network  # unwrap DistributedDataParallel
    module = getattr(module, "_orig_mod", module)  # unwrap torch.compile
    tensors = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.clone()
    header = {
        "schema": SCHEMA_VERSION,
        "class": type(module).__name__,
        "config": config,
        "diat_version": __version__,
        **metadata,
    }
    temporary = _atomic_target(path)
    try:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(header)})
        os.chmod(temporary, DEFAULT_FILE_MODE)  # safetensors writes 0600 files
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a weights file, without loading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise DiatError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as error:
        raise DiatError(f"{path}: not a safetensors weights file ({error})") from None
    if raw is None:
        raise DiatError(f"{path}: safetensors file without diat metadata")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise DiatError(f"{path}: damaged metadata ({error})") from None


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a network from a weights file: (module in eval mode, float32, metadata)."""
    from diat_cli.nets import build_network

    metadata = read_metadata(path)
    network = build_network(metadata["class"], **metadata.get("config", {}))
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise DiatError(f"{path}: cannot read weights ({error})") from None
    tensors = {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in tensors.items()}
    try:
        network.load_state_dict(tensors)
    except RuntimeError as error:
        raise DiatError(f"{path}: weights do not fit {metadata['class']} ({str(error).splitlines()[0]})") from None
    return network.to(device).eval(), metadata


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Optimiser, scaler and RNG state for --resume, written atomically (torch format, tensors and plain types only)."""
    path = Path(path)
    temporary = _atomic_target(path)
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read training state with weights_only=True, which refuses arbitrary pickled objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or unsafe files
        raise DiatError(f"{path}: cannot read training state ({str(error).splitlines()[0]})") from None
