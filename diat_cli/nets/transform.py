"""Stage 1's transform network T (Johnson et al.'s perceptual-loss architecture).

Resize-then-convolve up-sampling replaces transposed convolutions, which leave checkerboard
artefacts. By default T starts as the identity: its last convolution is zero and its output is
tanh(r + atanh(x)), so before training T(x) = x (to within 1e-3) and T learns the edit r in
tanh's pre-activation space; the output is still one tanh, inside [-1, 1], and no pixel
gets stuck the way it would behind a clamp.

With `fuse_mask=True` (the journal version of DIAT), T also predicts a soft mask m and returns
m * T_rgb(x) + (1 - m) * x: pixels the edit does not need keep their exact values, which is
what holds identity and colour for local attributes. The mask's area is penalised in training.
"""

from __future__ import annotations

import torch
from torch import nn

from diat_cli.errors import ConfigError

# Inputs are pulled this far inside [-1, 1] before atanh, so the skip stays finite.
SKIP_MARGIN = 1e-3


def tanh_residual(images: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """tanh(residual + atanh(images)): the images themselves (within 1e-3) when residual is 0.

    images: N x 3 x H x W in [-1, 1]; residual: same shape, unbounded. Output: float32 in
    [-1, 1] (float rounding can reach the ends for large residuals). Computed in float32
    so mixed precision does not saturate atanh.
    """
    limit = 1.0 - SKIP_MARGIN
    skip = torch.atanh(images.float().clamp(-limit, limit))
    return torch.tanh(residual.float() + skip)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Sequential:
    """Reflection padding then a convolution (no bias where instance norm follows)."""
    return nn.Sequential(
        nn.ReflectionPad2d(kernel // 2),
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, bias=bias),
    )


def _conv_norm_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        _conv(in_channels, out_channels, kernel, stride),
        nn.InstanceNorm2d(out_channels, affine=True),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm, added to the input (Johnson et al.)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_norm_relu(channels, channels, 3),
            _conv(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformNetwork(nn.Module):
    """T: face in, edited face out, same size.

    x: N x 3 x H x W in [-1, 1], H and W multiples of 4 and at least 8; output: the same shape
    in [-1, 1] (a tanh; only float rounding reaches the ends). `channels` is the first layer's
    width (the bottleneck has 4x). `input_skip=False` gives the plain network (tanh of the last
    convolution, random start), for uses where starting at the identity defeats the purpose,
    such as the denoiser's perceptual reconstructor g, which must not start perfect.
    """

    def __init__(self, channels: int = 32, residual_blocks: int = 5, input_skip: bool = True, fuse_mask: bool = False):
        super().__init__()
        if channels < 1 or residual_blocks < 0:
            raise ConfigError(
                f"TransformNetwork needs channels >= 1 and residual_blocks >= 0, got {channels} and {residual_blocks}"
            )
        if fuse_mask and not input_skip:
            raise ConfigError("TransformNetwork: fuse_mask needs input_skip (the mask blends T's output with its input)")
        self.input_skip = input_skip
        self.fuse_mask = fuse_mask
        wide = channels * 4
        self.encoder = nn.Sequential(
            _conv_norm_relu(3, channels, 9),
            _conv_norm_relu(channels, channels * 2, 3, stride=2),
            _conv_norm_relu(channels * 2, wide, 3, stride=2),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(wide) for _ in range(residual_blocks)])
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv_norm_relu(wide, channels * 2, 3),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv_norm_relu(channels * 2, channels, 3),
        )
        self.to_rgb = _conv(channels, 4 if fuse_mask else 3, 9, bias=True)  # 4th channel: the mask's logit
        if input_skip:
            last = self.to_rgb[1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, return_mask: bool = False):
        """Edited faces; with return_mask, also the mask N x 1 x H x W in (0, 1) (None without fuse_mask)."""
        height, width = x.shape[-2:]
        if x.dim() != 4 or x.shape[1] != 3 or height % 4 or width % 4 or min(height, width) < 8:
            raise ValueError(f"TransformNetwork expects N x 3 x H x W with H, W multiples of 4 (>= 8), got {tuple(x.shape)}")
        residual = self.to_rgb(self.decoder(self.residuals(self.encoder(x))))
        mask = None
        if not self.input_skip:
            out = torch.tanh(residual)
        elif self.fuse_mask:
            mask = torch.sigmoid(residual[:, 3:4].float())  # starts at 0.5, with T_rgb(x) = x
            out = mask * tanh_residual(x, residual[:, :3]) + (1.0 - mask) * x.float()
        else:
            out = tanh_residual(x, residual)
        return (out, mask) if return_mask else out
