"""DIAT's losses: adversarial (GAN and WGAN-GP), perceptual identity, smoothness, enhancement.

Plain functions of tensors and numbers, so each can be tested alone; the training stages
combine them with their weights.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


# --- adversarial -----------------------------------------------------------------------------
def discriminator_loss_gan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's side of min_T max_D E[log D(a)] + E[log(1 - D(T(x)))], as a loss to minimise.

    Logits: N (any shape), unbounded. softplus(-l) = -log sigmoid(l), stable for any logit.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_gan(fake_logits: torch.Tensor) -> torch.Tensor:
    """T's non-saturating loss -E[log D(T(x))]: strong gradients even while D wins."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The critic's Wasserstein loss E[D(T(x))] - E[D(a)] (add `gradient_penalty`)."""
    return fake_logits.mean() - real_logits.mean()


def generator_loss_wgan(fake_logits: torch.Tensor) -> torch.Tensor:
    """T's Wasserstein loss -E[D(T(x))]."""
    return -fake_logits.mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad D(x_hat)||_2 - 1)^2].

    x_hat mixes each real and fake image with a uniform random weight. real, fake: N x ...
    of the same shape; the discriminator must treat samples independently (no batch norm).
    Built with create_graph=True, so backward reaches D's parameters.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty needs real and fake of one shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    real = real.detach()
    fake = fake.detach().to(real.dtype)
    mix = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    mixed = (mix * real + (1.0 - mix) * fake).requires_grad_(True)
    logits = discriminator(mixed)
    (gradients,) = torch.autograd.grad(logits.sum(), mixed, create_graph=True)
    norms = torch.sqrt(gradients.flatten(1).pow(2).sum(dim=1) + 1e-12)  # eps: finite gradient at 0
    return weight * (norms - 1.0).pow(2).mean()


# --- identity and smoothness -----------------------------------------------------------------
def perceptual_loss(
    features_a: Sequence[torch.Tensor], features_b: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """DIAT's identity loss: sum_l w_l / (2 C_l H_l W_l) ||phi_l(a) - phi_l(b)||^2, batch mean.

    features_a, features_b: lists of N x C_l x H_l x W_l tensors (any N x ... shape works;
    the normaliser is each sample's element count); weights: one number per layer.
    Zero for identical features.
    """
    if not (len(features_a) == len(features_b) == len(weights)):
        raise ValueError(
            f"perceptual_loss needs as many weights as layers, got {len(features_a)}, {len(features_b)}, {len(weights)}"
        )
    if len(features_a) == 0:
        raise ValueError("perceptual_loss needs at least one layer")
    total = None
    for a, b, weight in zip(features_a, features_b, weights):
        if a.shape != b.shape:
            raise ValueError(f"perceptual_loss: feature shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")
        # mean over all elements = batch mean of ||.||^2 / (C H W), since every sample has C H W elements
        term = weight * 0.5 * (a - b).pow(2).mean()
        total = term if total is None else total + term
    return total


def smoothness_loss(denoiser: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """DIAT's perceptual regulariser ||f(T(x)) - T(x)||^2 (mean over elements).

    image: T(x), N x 3 x H x W in [-1, 1]. f runs with detached parameters, so gradients reach
    the image (and T) only; f's parameters never get a gradient, whatever their requires_grad.
    """
    parameters = {name: parameter.detach() for name, parameter in denoiser.named_parameters()}
    cleaned = functional_call(denoiser, parameters, (image,))
    return (cleaned - image).pow(2).mean()


def edit_total_variation(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels of the edit T(x) - x (L1 total variation).

    Penalises the edit only, not the face's own texture: an edit that shifts a whole region
    (grey hair, fuller lips) costs little at its border, while the scattered coloured specks an
    adversarially trained T leaves in hair and background cost at every pixel. Both: N x 3 x H x W.
    """
    edit = edited.float() - original.float()
    vertical = (edit[:, :, 1:, :] - edit[:, :, :-1, :]).abs().mean()
    horizontal = (edit[:, :, :, 1:] - edit[:, :, :, :-1]).abs().mean()
    return vertical + horizontal


# ITU-R BT.601 RGB -> YCbCr without the offsets, which cancel in the differences it is used on.
RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCBCR_TO_RGB = torch.linalg.inv(RGB_TO_YCBCR)


def rgb_to_ycbcr(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W RGB (or an RGB difference) -> Y, Cb, Cr, without offsets."""
    return torch.einsum("ij,njhw->nihw", RGB_TO_YCBCR.to(images.device, images.dtype), images)


def ycbcr_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """The inverse of rgb_to_ycbcr."""
    return torch.einsum("ij,njhw->nihw", YCBCR_TO_RGB.to(images.device, images.dtype), images)


def edit_chroma_change(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Mean absolute change of the chroma (YCbCr's Cb and Cr) of T(x) against x.

    Ageing and gender edits are mostly light and shadow (wrinkles, stubble, hair); the failures
    seen in variant-diat runs were smooth colour blotches (a purple patch round an eye, a red
    forehead) that total variation does not charge, because they have no edges. Brightness
    changes are free here; a hue change costs at every pixel it covers. Both: N x 3 x H x W, RGB.
    """
    edit = rgb_to_ycbcr(edited.float() - original.float())
    return edit[:, 1].abs().mean() + edit[:, 2].abs().mean()


def edit_asymmetry(edited: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between the edit T(x) - x and its mirror image (left-right).

    In the canonical crop the eyes sit symmetric about the vertical centre line, so glasses,
    make-up and wrinkles are mirror-symmetric edits. The eyeglasses runs' typical failure was one
    dark lens over one eye, a black eye more than glasses: this charges it (on both sides), while
    a pair of frames costs only as much as the face is turned. Both: N x 3 x H x W.
    """
    edit = edited.float() - original.float()
    return (edit - edit.flip(-1)).abs().mean()


# --- enhancement (stage 2) -------------------------------------------------------------------
def masked_reconstruction_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Stage 2's outside-the-region term (1 - m) * ||E(T(x)) - x||^2, normalised by its area.

    output, target: N x C x H x W; mask: N x 1 x H x W or 1 x 1 x H x W in [0, 1], 1 inside
    the attribute's region. The mean squared error over pixels outside the region (weighted
    by 1 - m), so its size does not depend on how large the region is.
    """
    if output.shape != target.shape:
        raise ValueError(f"masked_reconstruction_loss: shapes differ, {tuple(output.shape)} and {tuple(target.shape)}")
    outside = (1.0 - mask).expand(output.shape)
    return (outside * (output - target).pow(2)).sum() / outside.sum().clamp_min(1e-8)


def gaussian_kernel(sigma: float, radius: int | None = None, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of the given sigma (pixels), radius ceil(3 sigma) by default."""
    radius = max(1, math.ceil(3.0 * sigma)) if radius is None else radius
    positions = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (positions / sigma) ** 2)
    return kernel / kernel.sum()


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """The degradation B that E learns to undo for global attributes: a Gaussian blur.

    images: N x C x H x W; sigma in pixels (scale it with the image size); reflected borders,
    so the mean colour is kept. sigma <= 0 returns the images unchanged.
    """
    if sigma <= 0:
        return images
    channels, height, width = images.shape[1:]
    radius = min(max(1, math.ceil(3.0 * sigma)), height - 1, width - 1)
    kernel = gaussian_kernel(sigma, radius, dtype=images.dtype, device=images.device)
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    blurred = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(blurred, vertical, groups=channels)
