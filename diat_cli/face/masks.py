"""Soft region masks on the canonical crop, for stage 2's local-attribute enhancement.

Each region is a box placed from the template's eye centres (so it scales with the crop),
blurred with a Gaussian: the feathered box is computed in closed form (a box convolved with
a Gaussian is a product of two erf differences), so 64, 128 and 256 px masks sample one
continuous function and agree up to resampling.
"""

from __future__ import annotations

import math

import torch

from diat_cli.errors import ConfigError
from diat_cli.face.align import TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE

EYE_DISTANCE = TEMPLATE_RIGHT_EYE[0] - TEMPLATE_LEFT_EYE[0]  # fraction of the side
EYE_Y = (TEMPLATE_LEFT_EYE[1] + TEMPLATE_RIGHT_EYE[1]) / 2
CENTRE_X = (TEMPLATE_LEFT_EYE[0] + TEMPLATE_RIGHT_EYE[0]) / 2

# Boxes as (left, top, right, bottom) in eye distances, relative to the point between the eyes.
# Eyes: wide enough for spectacle frames (about 2.3 eye distances), from above the eyebrows
# to below the frames' lower rims. Mouth: in aligned faces (CelebA's aligned crops, ArcFace's
# template) the mouth centre lies 1.05-1.15 eye distances below the eyes and the mouth is
# about 0.85 eye distances wide, more when smiling; the box spans nose base to above the chin
# and holds a laughing open mouth (checked by eye on crops of celeba-wild photos).
REGION_BOXES = {
    "eyes": (-1.25, -0.55, 1.25, 0.45),
    "mouth": (-0.7, 0.75, 0.7, 1.55),
}
REGIONS = tuple(REGION_BOXES)
# Wider boxes that an edit may be confined to at run time (the editor's `confine`): they drop
# stray changes far from the region (a smudge on a bald forehead) but keep what the region's
# surroundings contribute (brows, temples, the nose under the frames), which the tight box
# above cuts: confining `no-eyeglasses` to it cost 10 points of attribute success. Eyes: half
# an eye distance wider each side, up to mid-forehead, down to the upper lip. Mouth: from
# under the eyes to below the chin, cheek to cheek.
NEIGHBOURHOOD_BOXES = {
    "eyes": (-1.75, -1.0, 1.75, 1.5),
    "mouth": (-1.3, 0.3, 1.3, 2.2),
}

# Bare skin, for measuring an edit's colour shift (metrics.skin_tone_shift): a patch on each
# cheek, beside the nose and below where glasses' rims sit, and one on the forehead between the
# brows and the usual hairline. Same units as above; placed by eye on aligned `celeba-wild` crops.
SKIN_BOXES = {
    "left cheek": (-0.85, 0.3, -0.45, 0.65),
    "right cheek": (0.45, 0.3, 0.85, 0.65),
    "forehead": (-0.5, -0.85, 0.5, -0.55),
}


def region_box(attribute_region: str, neighbourhood: bool = False) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a region's box (or its wider neighbourhood), as fractions of the crop's side."""
    if attribute_region not in REGION_BOXES:
        raise ConfigError(f"unknown attribute region '{attribute_region}'; choose one of {', '.join(REGIONS)}")
    return _as_fractions((NEIGHBOURHOOD_BOXES if neighbourhood else REGION_BOXES)[attribute_region])


def _as_fractions(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A box in eye distances from the point between the eyes, as fractions of the crop's side."""
    left, top, right, bottom = box
    return (
        CENTRE_X + left * EYE_DISTANCE,
        EYE_Y + top * EYE_DISTANCE,
        CENTRE_X + right * EYE_DISTANCE,
        EYE_Y + bottom * EYE_DISTANCE,
    )


def _feathered_interval(coordinates: torch.Tensor, start: float, end: float, feather: float) -> torch.Tensor:
    """The indicator of [start, end] convolved with a Gaussian of sigma `feather`."""
    if feather <= 0:
        return ((coordinates >= start) & (coordinates <= end)).to(coordinates.dtype)
    scale = 1.0 / (feather * math.sqrt(2.0))
    return 0.5 * (torch.erf((end - coordinates) * scale) - torch.erf((start - coordinates) * scale))


def region_mask(attribute_region: str, size: int, feather: float = 0.03, neighbourhood: bool = False) -> torch.Tensor:
    """Soft mask of a face region on the size x size canonical crop: 1 x 1 x size x size in [0, 1].

    attribute_region: "eyes" (a band over eyes and eyebrows, wide enough for glasses) or
    "mouth". feather: sigma of the Gaussian edge, as a fraction of the side (0 gives a hard box).
    neighbourhood: the region's wider box (NEIGHBOURHOOD_BOXES) instead of its own.
    Broadcasts against N x 1 x size x size.
    """
    if size < 1:
        raise ConfigError(f"mask size must be at least 1, got {size}")
    if feather < 0:
        raise ConfigError(f"mask feather must be 0 or more, got {feather}")
    mask = _box_mask(region_box(attribute_region, neighbourhood), size, feather)
    return mask.to(torch.float32).view(1, 1, size, size)


def _box_mask(box: tuple[float, float, float, float], size: int, feather: float) -> torch.Tensor:
    """size x size (float64) mask of a box given in fractions of the side, its edges feathered."""
    left, top, right, bottom = box
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # pixel centres, fractions of the side
    columns = _feathered_interval(centres, left, right, feather)
    rows = _feathered_interval(centres, top, bottom, feather)
    return (rows[:, None] * columns[None, :]).clamp(0.0, 1.0)


def skin_mask(size: int) -> torch.Tensor:
    """Hard mask (1 x 1 x size x size, 0 or 1) of the cheek and forehead patches of SKIN_BOXES."""
    if size < 1:
        raise ConfigError(f"mask size must be at least 1, got {size}")
    patches = [_box_mask(_as_fractions(box), size, 0.0) for box in SKIN_BOXES.values()]
    return torch.stack(patches).amax(dim=0).to(torch.float32).view(1, 1, size, size)
