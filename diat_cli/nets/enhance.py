"""Stage 2's face enhancement network E: sharpens T's blurry outputs.

A small residual network at full resolution (no down-sampling, so it cannot lose detail) that
adds a correction to its input, in tanh's pre-activation space like T (see `tanh_residual`):
an untrained E is the identity and its output stays in [-1, 1]. No normalisation: the
correction's size must follow the input's local contrast, which instance norm would erase.
"""

from __future__ import annotations

import torch
from torch import nn

from diat_cli.errors import ConfigError
from diat_cli.nets.transform import tanh_residual


class _PlainResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class EnhanceNetwork(nn.Module):
    """E: x N x 3 x H x W in [-1, 1] -> refined faces, same shape, in [-1, 1]."""

    def __init__(self, channels: int = 32, blocks: int = 4):
        super().__init__()
        if channels < 1 or blocks < 0:
            raise ConfigError(f"EnhanceNetwork needs channels >= 1 and blocks >= 0, got {channels} and {blocks}")
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(3, channels, 3),
            nn.ReLU(inplace=True),
            *[_PlainResidualBlock(channels) for _ in range(blocks)],
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, 3, 3),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"EnhanceNetwork expects N x 3 x H x W, got {tuple(x.shape)}")
        return tanh_residual(x, self.body(x))
