"""Stage 1's attribute discriminator D, which also serves as DIAT-A's identity network.

Five strided 4x4 convolutions (no batch norm, so WGAN-GP's per-sample gradient penalty is
valid), then one convolution that covers the whole last feature map and gives one logit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from diat_cli.errors import ConfigError

WIDTH_MULTIPLIERS = (1, 2, 4, 8, 8)  # conv1..conv5 width, as multiples of `channels`


class AttributeDiscriminator(nn.Module):
    """D: one logit per face, high for faces with the reference attribute.

    x: N x 3 x S x S in [-1, 1] with S = image_size (a multiple of 32: 64, 128, 256, ...).
    forward(x) -> logits N; forward(x, return_features=True) -> (logits N, [conv1..conv5
    feature maps after LeakyReLU]); conv k has channels * (1, 2, 4, 8, 8)[k-1] channels at
    S / 2^k px.
    """

    def __init__(self, channels: int = 64, image_size: int = 128, spectral_norm: bool = False):
        super().__init__()
        if channels < 1:
            raise ConfigError(f"AttributeDiscriminator needs channels >= 1, got {channels}")
        if image_size < 32 or image_size % 32:
            raise ConfigError(f"AttributeDiscriminator needs an image size that is a multiple of 32, got {image_size}")
        self.image_size = image_size
        wrap = apply_spectral_norm if spectral_norm else (lambda module: module)
        widths = [channels * m for m in WIDTH_MULTIPLIERS]
        self.blocks = nn.ModuleList()
        previous = 3
        for width in widths:
            self.blocks.append(
                nn.Sequential(wrap(nn.Conv2d(previous, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True))
            )
            previous = width
        final_size = image_size // 32
        self.output = wrap(nn.Conv2d(previous, 1, final_size))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"AttributeDiscriminator expects N x 3 x {self.image_size} x {self.image_size}, got {tuple(x.shape)}"
            )
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        logits = self.output(x).flatten()
        if return_features:
            return logits, features
        return logits
