"""Region masks on the canonical crop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diat_cli.errors import ConfigError
from diat_cli.face.align import TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE
from diat_cli.face.masks import region_mask


def at(mask: torch.Tensor, point: tuple[float, float]) -> float:
    size = mask.shape[-1]
    return mask[0, 0, int(point[1] * size), int(point[0] * size)].item()


@pytest.mark.parametrize("size", [64, 128, 256])
def test_eyes_mask_covers_the_eyes_and_not_the_corners(size):
    mask = region_mask("eyes", size)
    assert mask.shape == (1, 1, size, size)
    assert mask.min() >= 0 and mask.max() <= 1
    assert at(mask, TEMPLATE_LEFT_EYE) > 0.99 and at(mask, TEMPLATE_RIGHT_EYE) > 0.99
    for corner in (mask[0, 0, 0, 0], mask[0, 0, 0, -1], mask[0, 0, -1, 0], mask[0, 0, -1, -1]):
        assert corner < 1e-3
    assert at(mask, (0.5, 0.75)) < 0.01  # the mouth is not in the eyes band


def test_mouth_mask_sits_below_the_eyes():
    mask = region_mask("mouth", 128)
    assert at(mask, (0.5, 0.76)) > 0.99
    assert at(mask, TEMPLATE_LEFT_EYE) < 0.01 and mask[0, 0, 0, 0] < 1e-3


@pytest.mark.parametrize("region", ["eyes", "mouth"])
def test_mask_geometry_scales_with_size(region):
    reference = region_mask(region, 64)
    for size in (128, 256):
        resized = F.interpolate(region_mask(region, size), size=64, mode="area")
        assert (resized - reference).abs().max() < 0.03


def test_feather_zero_gives_a_hard_mask():
    mask = region_mask("eyes", 64, feather=0)
    assert set(mask.unique().tolist()) == {0.0, 1.0}


def test_bad_region_or_settings_raise():
    with pytest.raises(ConfigError, match="unknown attribute region 'nose'"):
        region_mask("nose", 64)
    with pytest.raises(ConfigError):
        region_mask("eyes", 64, feather=-1)


@pytest.mark.parametrize("size", [64, 128])
def test_skin_patches_avoid_eyes_mouth_and_nose_and_mirror_each_other(size):
    from diat_cli.face.masks import skin_mask

    mask = skin_mask(size)
    assert mask.shape == (1, 1, size, size) and set(mask.unique().tolist()) == {0.0, 1.0}
    for point in (TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE, (0.5, 0.76), (0.5, 0.6)):  # eyes, mouth, nose
        assert at(mask, point) == 0
    assert at(mask, (0.5, 0.36)) == 1  # forehead, above the brows
    assert at(mask, (0.34, 0.6)) == 1 and at(mask, (0.66, 0.6)) == 1  # both cheeks
    assert torch.equal(mask, mask.flip(-1))
    assert 0.02 < mask.mean().item() < 0.05  # a few per cent of the crop, at any size
