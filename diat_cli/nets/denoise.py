"""DIAT's perceptual regulariser f: a tiny denoiser that removes perceptual-loss artefacts.

f(x) = clamp(x + conv(relu(conv(x))), -1, 1), as in the paper (two 3x3 convolutions). The
second convolution starts at zero, so an untrained f leaves every face unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from diat_cli.errors import ConfigError


class DenoiseNetwork(nn.Module):
    """f: x N x 3 x H x W in [-1, 1] -> same shape in [-1, 1]."""

    def __init__(self, channels: int = 32):
        super().__init__()
        if channels < 1:
            raise ConfigError(f"DenoiseNetwork needs channels >= 1, got {channels}")
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(3, channels, 3),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, 3, 3),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.body(x)).clamp(-1.0, 1.0)
