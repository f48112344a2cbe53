"""DIAT's losses, tested the way kornia tests its losses: zero cases, gradients, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diat_cli.losses import (
    blur,
    discriminator_loss_gan,
    discriminator_loss_wgan,
    edit_asymmetry,
    edit_chroma_change,
    edit_total_variation,
    generator_loss_gan,
    generator_loss_wgan,
    gradient_penalty,
    masked_reconstruction_loss,
    perceptual_loss,
    smoothness_loss,
)
from diat_cli.nets import AttributeDiscriminator, DenoiseNetwork


def test_perceptual_loss_is_zero_for_identical_features():
    features = [torch.randn(2, 4, 5, 5), torch.randn(2, 8, 3, 3)]
    assert perceptual_loss(features, [f.clone() for f in features], [1.0, 2.0]).item() == 0.0


def test_perceptual_loss_matches_the_paper_normalisation():
    a = [torch.zeros(2, 2, 3, 3)]
    b = [torch.ones(2, 2, 3, 3) * 2]
    # per sample: w / (2 C H W) * ||a - b||^2 = 3 / 36 * (18 * 4) = 6, batch mean 6
    assert perceptual_loss(a, b, [3.0]).item() == pytest.approx(6.0)


def test_perceptual_loss_rejects_mismatches():
    with pytest.raises(ValueError, match="as many weights"):
        perceptual_loss([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 2, 2)], [1.0, 1.0])
    with pytest.raises(ValueError, match="shapes differ"):
        perceptual_loss([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 3, 3)], [1.0])


def test_perceptual_loss_gradcheck():
    shapes = [(2, 2, 3, 3), (2, 3), (2, 2, 3, 3), (2, 3)]  # a conv map and a vector, for a and for b
    inputs = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in shapes]
    assert torch.autograd.gradcheck(lambda a0, a1, b0, b1: perceptual_loss([a0, a1], [b0, b1], [0.5, 2.0]), inputs)


def test_masked_reconstruction_loss_ignores_the_region_and_is_area_normalised():
    target = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1.0  # top half is the attribute's region
    output = target.clone()
    output[..., :2, :] = 5.0  # any change inside the region is free
    assert masked_reconstruction_loss(output, target, mask).item() == 0.0
    output[..., 2:, :] = 1.0
    assert masked_reconstruction_loss(output, target, mask).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        masked_reconstruction_loss(output, torch.zeros(1, 3, 2, 2), mask)


def test_masked_reconstruction_loss_gradcheck():
    output = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, 3, 3, dtype=torch.float64).mul(0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(masked_reconstruction_loss, (output, target, mask))


def test_gan_losses_fall_as_the_discriminator_separates():
    real_close, fake_close = torch.tensor([0.1, -0.1]), torch.tensor([0.0, 0.1])
    real_apart, fake_apart = torch.tensor([4.0, 5.0]), torch.tensor([-4.0, -5.0])
    assert discriminator_loss_gan(real_apart, fake_apart) < discriminator_loss_gan(real_close, fake_close)
    assert discriminator_loss_wgan(real_apart, fake_apart) < discriminator_loss_wgan(real_close, fake_close)
    # the transform's losses rise when D rejects its faces, and fall when it fools D
    assert generator_loss_gan(fake_apart) > generator_loss_gan(fake_close) > generator_loss_gan(-fake_apart)
    assert generator_loss_wgan(fake_apart) > generator_loss_wgan(fake_close) > generator_loss_wgan(-fake_apart)


def test_gan_losses_are_stable_for_extreme_logits():
    huge = torch.tensor([1e4, -1e4], requires_grad=True)
    loss = discriminator_loss_gan(huge, -huge) + generator_loss_gan(huge)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(huge.grad).all()


class LinearCritic(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        torch.manual_seed(1)
        direction = torch.randn(3 * 4 * 4)
        self.weight = nn.Parameter(direction / direction.norm() * scale)

    def forward(self, x):
        return x.flatten(1) @ self.weight


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic():
    real, fake = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    assert gradient_penalty(LinearCritic(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-8)
    assert gradient_penalty(LinearCritic(3.0), real, fake, weight=10).item() == pytest.approx(40.0, rel=1e-4)


def test_gradient_penalty_reaches_the_discriminator_parameters():
    discriminator = AttributeDiscriminator(channels=4, image_size=64)
    real, fake = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    penalty = gradient_penalty(discriminator, real, fake)
    assert penalty.item() > 0
    penalty.backward()
    # every weight gets a gradient; the last bias cannot, since it does not change D's input gradient
    weights = [p for name, p in discriminator.named_parameters() if name != "output.bias"]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in weights)
    assert discriminator.blocks[0][0].weight.grad.abs().sum() > 0


def test_smoothness_loss_trains_the_image_not_the_denoiser():
    denoiser = DenoiseNetwork(channels=4)
    with torch.no_grad():
        denoiser.body[-1].weight.normal_(0, 0.1)
    image = (torch.rand(1, 3, 8, 8) * 1.6 - 0.8).requires_grad_(True)
    loss = smoothness_loss(denoiser, image)
    assert loss.item() > 0
    loss.backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in denoiser.parameters())
    assert all(p.requires_grad for p in denoiser.parameters())  # f's own flags are left alone


def test_blur_keeps_constants_and_smooths_edges():
    constant = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(blur(constant, 2.0), constant, atol=1e-6)
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    blurred = blur(edge, 1.5)
    assert blurred.shape == edge.shape
    assert 0 < blurred[0, 0, 0, 7] < 0.5 < blurred[0, 0, 0, 8] < 1
    assert torch.equal(blur(edge, 0), edge)
    assert blur(torch.rand(2, 3, 8, 8), 10.0).shape == (2, 3, 8, 8)  # radius limited by the image


def test_edit_total_variation_charges_speckled_edits_not_smooth_ones():
    torch.manual_seed(0)
    face = torch.rand(2, 3, 16, 16) * 2 - 1
    assert edit_total_variation(face, face).item() == 0.0
    assert edit_total_variation(face + 0.3, face).item() == pytest.approx(0.0, abs=1e-6)  # a uniform shift is free
    ramp = torch.linspace(0, 0.3, 16).view(1, 1, 1, 16)
    specks = torch.zeros(1, 1, 16, 16)
    specks[..., ::2, ::2] = 0.3
    smooth_cost = edit_total_variation(face + ramp, face).item()
    speck_cost = edit_total_variation(face + specks, face).item()
    assert smooth_cost == pytest.approx(0.02, rel=1e-4)  # each horizontal neighbour pair differs by 0.3 / 15
    assert speck_cost > 10 * smooth_cost
    edited = (face + specks).requires_grad_(True)
    edit_total_variation(edited, face).backward()
    assert edited.grad.abs().sum() > 0


def test_edit_chroma_change_charges_colour_not_brightness():
    torch.manual_seed(0)
    face = torch.rand(2, 3, 16, 16) * 1.6 - 0.8
    assert edit_chroma_change(face, face).item() == 0.0
    assert edit_chroma_change(face - 0.2, face).item() == pytest.approx(0.0, abs=1e-5)  # grey shadow: free
    purple = torch.tensor([0.2, -0.2, 0.2]).view(1, 3, 1, 1)
    cost = edit_chroma_change(face + purple, face).item()
    # Cb = -0.1687*0.2 + 0.3313*0.2 + 0.5*0.2 = 0.1325, Cr = 0.5*0.2 + 0.4187*0.2 - 0.0813*0.2 = 0.1675
    assert cost == pytest.approx(0.3, abs=1e-4)
    patch = torch.zeros(1, 3, 16, 16)
    patch[..., :4, :4] = purple
    assert edit_chroma_change(face + patch, face).item() == pytest.approx(cost / 16, rel=1e-4)  # cost grows with the area
    edited = (face + purple).requires_grad_(True)
    edit_chroma_change(edited, face).backward()
    assert edited.grad.abs().sum() > 0


def test_edit_asymmetry_charges_one_lens_not_a_pair():
    face = torch.rand(1, 3, 16, 16)
    assert edit_asymmetry(face, face).item() == 0.0
    pair = face.clone()
    pair[..., 6:9, 2:6] -= 0.5  # a dark lens over each eye, mirror images of each other
    pair[..., 6:9, 10:14] -= 0.5
    assert edit_asymmetry(pair, face).item() == pytest.approx(0.0, abs=1e-6)
    one = face.clone()
    one[..., 6:9, 2:6] -= 0.5  # the same lens over one eye only
    # |e - mirror(e)| is 0.5 on the lens and on its mirror image: 2 * 12 pixels of 256, every channel
    assert edit_asymmetry(one, face).item() == pytest.approx(0.5 * 24 / 256, rel=1e-5)
    edited = one.clone().requires_grad_(True)
    edit_asymmetry(edited, face).backward()
    assert edited.grad.abs().sum() > 0
