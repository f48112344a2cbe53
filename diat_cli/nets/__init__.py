"""Architectures only; `build_network` rebuilds one by class name for the checkpoint loader.

The registry is closed: a checkpoint names its class and constructor arguments in JSON, and
only classes listed here can be built, so loading weights never runs pickled code.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from diat_cli.errors import ConfigError
from diat_cli.nets.classifier import AttributeClassifier
from diat_cli.nets.denoise import DenoiseNetwork
from diat_cli.nets.discriminator import AttributeDiscriminator
from diat_cli.nets.enhance import EnhanceNetwork
from diat_cli.nets.transform import TransformNetwork

NETWORKS: dict[str, type[nn.Module]] = {
    "TransformNetwork": TransformNetwork,
    "AttributeDiscriminator": AttributeDiscriminator,
    "DenoiseNetwork": DenoiseNetwork,
    "EnhanceNetwork": EnhanceNetwork,
    "AttributeClassifier": AttributeClassifier,
}


def build_network(class_name: str, **kwargs: Any) -> nn.Module:
    """A fresh network of a registered class; ConfigError for an unknown name or argument."""
    network_class = NETWORKS.get(class_name)
    if network_class is None:
        raise ConfigError(f"unknown network class '{class_name}'; known: {', '.join(sorted(NETWORKS))}")
    try:
        inspect.signature(network_class).bind(**kwargs)
    except TypeError as error:
        raise ConfigError(f"bad arguments for {class_name}: {error}") from None
    return network_class(**kwargs)


__all__ = ["NETWORKS", "build_network", "AttributeClassifier", "AttributeDiscriminator", "DenoiseNetwork", "EnhanceNetwork", "TransformNetwork"]
