"""Shapes, ranges, sizes and the registry of DIAT's networks."""

from __future__ import annotations

import pytest
import torch

from diat_cli.errors import ConfigError
from diat_cli.nets import NETWORKS, AttributeDiscriminator, DenoiseNetwork, EnhanceNetwork, TransformNetwork, build_network


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def faces(size: int, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(batch, 3, size, size) * 2 - 1


@pytest.mark.parametrize("size", [64, 128])
def test_transform_keeps_shape_and_range(size):
    network = TransformNetwork(channels=8, residual_blocks=2, input_skip=False)
    with torch.no_grad():
        output = network(faces(size) * 5)  # out-of-range input still gives a bounded output
    assert output.shape == (2, 3, size, size)
    assert output.abs().max() < 1


def test_transform_starts_as_identity_and_stays_bounded():
    network = TransformNetwork(channels=8, residual_blocks=1)
    images = faces(32)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 1.0, -1.0
    with torch.no_grad():
        assert (network(images) - images).abs().max() <= 1.1e-3
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter))
        output = network(images)
    assert output.abs().max() <= 1  # tanh may round to exactly 1 in float32
    assert (output - images).abs().max() > 0.1


def test_masked_transform_changes_only_where_its_mask_is_open():
    network = TransformNetwork(channels=8, residual_blocks=1, fuse_mask=True)
    images = faces(32)
    with torch.no_grad():
        output, mask = network(images, return_mask=True)
        assert mask.shape == (2, 1, 32, 32) and torch.allclose(mask, torch.full_like(mask, 0.5))
        assert (output - images).abs().max() <= 1.1e-3  # identity at start, like the plain T
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter))
        last = network.to_rgb[1]
        last.bias[3] = -30.0  # close the mask everywhere: the output must be the input exactly
        last.weight[3] = 0.0
        closed = network(images)
        last.bias[3] = 30.0  # open it: the output is T's own image, which differs from the input
        opened, mask = network(images, return_mask=True)
    assert (closed - images).abs().max() < 1e-6
    assert mask.min() > 0.999 and (opened - images).abs().max() > 0.1 and opened.abs().max() <= 1
    with pytest.raises(ConfigError, match="fuse_mask"):
        TransformNetwork(channels=4, input_skip=False, fuse_mask=True)


def test_transform_parameter_count():
    assert 1_500_000 <= parameter_count(TransformNetwork()) <= 2_000_000


def test_transform_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiples of 4"):
        TransformNetwork(channels=4, residual_blocks=1)(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ConfigError):
        TransformNetwork(channels=0)


@pytest.mark.parametrize("size", [64, 128])
def test_discriminator_logits_and_features(size):
    network = AttributeDiscriminator(channels=8, image_size=size)
    with torch.no_grad():
        logits = network(faces(size, batch=3))
        logits_again, features = network(faces(size, batch=3), return_features=True)
    assert logits.shape == (3,)
    assert torch.equal(logits, logits_again)
    assert len(features) == 5
    for index, (feature, width) in enumerate(zip(features, (8, 16, 32, 64, 64)), start=1):
        assert feature.shape == (3, width, size >> index, size >> index)


def test_discriminator_works_at_256_and_with_spectral_norm():
    network = AttributeDiscriminator(channels=4, image_size=256, spectral_norm=True)
    with torch.no_grad():
        assert network(faces(256, batch=1)).shape == (1,)


def test_discriminator_parameter_count_and_errors():
    assert 6_000_000 <= parameter_count(AttributeDiscriminator(image_size=64)) <= 8_000_000
    assert 6_000_000 <= parameter_count(AttributeDiscriminator(image_size=128)) <= 8_000_000
    with pytest.raises(ConfigError, match="multiple of 32"):
        AttributeDiscriminator(image_size=100)
    with pytest.raises(ValueError, match="64 x 64"):
        AttributeDiscriminator(channels=4, image_size=64)(faces(128, batch=1))


def test_denoiser_is_residual_and_clamped():
    network = DenoiseNetwork(channels=8)
    images = faces(32)
    with torch.no_grad():
        assert torch.equal(network(images), images)  # untrained f leaves faces alone
        network.body[-1].weight.normal_(0, 1)
        output = network(images)
    assert output.shape == images.shape
    assert output.min() >= -1 and output.max() <= 1
    assert not torch.equal(output, images)
    assert parameter_count(DenoiseNetwork()) < 5_000


@pytest.mark.parametrize("size", [64, 128])
def test_enhance_starts_as_identity_and_stays_in_range(size):
    network = EnhanceNetwork(channels=8, blocks=2)
    images = faces(size)
    with torch.no_grad():
        assert (network(images) - images).abs().max() <= 1.1e-3
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter))
        output = network(images)
    assert output.shape == images.shape
    assert output.abs().max() <= 1


def test_registry_builds_every_network_and_round_trips_weights():
    assert set(NETWORKS) == {"TransformNetwork", "AttributeDiscriminator", "DenoiseNetwork", "EnhanceNetwork", "AttributeClassifier"}
    network = build_network("AttributeDiscriminator", channels=4, image_size=64, spectral_norm=True)
    again = build_network("AttributeDiscriminator", channels=4, image_size=64, spectral_norm=True)
    again.load_state_dict(network.state_dict())
    assert isinstance(build_network("TransformNetwork", channels=4, residual_blocks=1), TransformNetwork)


def test_registry_rejects_unknown_names_and_arguments():
    with pytest.raises(ConfigError, match="unknown network class 'Generator'.*TransformNetwork"):
        build_network("Generator")
    with pytest.raises(ConfigError, match="bad arguments for DenoiseNetwork"):
        build_network("DenoiseNetwork", width=3)


@pytest.fixture(scope="module")
def optimizer_imports():
    """Building the first torch optimiser in a process imports torch._dynamo (seconds); pay it in setup."""
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


def test_transform_overfits_one_image(optimizer_imports):
    torch.manual_seed(0)
    network = TransformNetwork(channels=8, residual_blocks=2)
    source = torch.rand(1, 3, 32, 32) * 2 - 1
    ramp = torch.tanh(torch.linspace(-2, 2, 32)).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    target = ramp * torch.tensor([1.0, -0.5, 0.3]).view(1, 3, 1, 1)  # a fixed image unlike the input
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = (network(source) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
