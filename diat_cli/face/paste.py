"""Pasting an edited face crop back into its photo: feathered mask, colour matching, inverse warp.

The editor sees the face as the canonical crop that `alignment_matrix` cuts out at the network's
size (64-256 px). A face in a photo is often larger than that, so pasting the edited crop itself
would replace the photo's face by an upscaled, blurred copy. Instead only the *change* is pasted:

    delta = mask * (colour_matched(edited) - crop)        (at the network's size)
    photo += inverse_warp(delta)                          (bicubic, to the photo's resolution)

Where the network changed nothing, the photo keeps every one of its own pixels (skin texture,
hair, sharp edges at full resolution); where it did change something, the change arrives
smoothly upsampled. This is also why pixels outside the mask are bit-for-bit unchanged: the
delta there is exactly zero.

- The mask is a feathered ellipse around the template head (forehead, hair line, cheeks, chin),
  placed from the template's eye positions, so it has the same place on 64, 128 and 256 px
  crops. It is 1 inside 70% of its radii and falls to exactly 0 at the ellipse with a smooth
  step, well inside the crop, so the crop's borders (reflected padding) never reach the photo.
- Colour matching (Reinhard-style): the edited crop's per-channel mean and standard deviation
  inside the mask are set to the original crop's, so a tint or brightness drift of the network
  does not show as a discoloured face next to an untouched neck and background. Local changes
  (texture, shapes, glasses, mouth) survive because they barely move the face-wide statistics.
  Turn it off for attributes that are colours (hair colour, pale skin, make-up).
"""

from __future__ import annotations

import cv2
import numpy as np

from diat_cli.face.align import TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE, invert_affine, transform_points

_EYE_DISTANCE = TEMPLATE_RIGHT_EYE[0] - TEMPLATE_LEFT_EYE[0]  # fraction of the crop's side
_EYE_X = (TEMPLATE_LEFT_EYE[0] + TEMPLATE_RIGHT_EYE[0]) / 2
_EYE_Y = (TEMPLATE_LEFT_EYE[1] + TEMPLATE_RIGHT_EYE[1]) / 2

# The head ellipse, in eye distances from the point between the eyes: centre slightly below the
# eyes, reaching up over the forehead into the hair and down to the chin, sideways to the ears.
# With the template (eyes 0.225 of the side apart, at 51% of the height) it spans x 0.17-0.83
# and y 0.15-0.94 of the crop.
HEAD_CENTRE_BELOW_EYES = 0.15
HEAD_HALF_WIDTH = 1.45
HEAD_HALF_HEIGHT = 1.75
FEATHER = 0.3  # the outer 30% of the radii fade from 1 to 0

MAX_GAIN = 2.0  # colour matching never scales a channel's contrast by more than this (or 1/this)


def head_mask(size: int, feather: float = FEATHER) -> np.ndarray:
    """Feathered head mask on the size x size canonical crop: size x size float32 in [0, 1].

    1 inside (1 - feather) of the ellipse's radii, a smooth step down to exactly 0 at the
    ellipse, 0 outside it (and so on the crop's border).
    """
    if size < 1:
        raise ValueError(f"mask size must be at least 1, got {size}")
    if not 0 < feather <= 1:
        raise ValueError(f"feather must be in (0, 1], got {feather}")
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    dx = (centres[None, :] - _EYE_X) / (HEAD_HALF_WIDTH * _EYE_DISTANCE)
    dy = (centres[:, None] - (_EYE_Y + HEAD_CENTRE_BELOW_EYES * _EYE_DISTANCE)) / (HEAD_HALF_HEIGHT * _EYE_DISTANCE)
    radius = np.sqrt(dx * dx + dy * dy)
    t = np.clip((1.0 - radius) / feather, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep: no kink at either end


def match_colour(edited: np.ndarray, original: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Give `edited` the per-channel mean and standard deviation that `original` has under `weights`.

    edited, original: S x S x 3 in [0, 255] (any dtype); weights: S x S, non-negative.
    Returns S x S x 3 float32 (not clipped). The contrast gain is limited to [1/2, 2] so a
    nearly flat channel cannot blow up.
    """
    edited = edited.astype(np.float32)
    original = original.astype(np.float32)
    w = weights.astype(np.float32)[..., None]
    total = float(w.sum())
    if total <= 0:
        return edited
    mean_edited = (edited * w).sum(axis=(0, 1)) / total
    mean_original = (original * w).sum(axis=(0, 1)) / total
    std_edited = np.sqrt(((edited - mean_edited) ** 2 * w).sum(axis=(0, 1)) / total)
    std_original = np.sqrt(((original - mean_original) ** 2 * w).sum(axis=(0, 1)) / total)
    gain = np.clip(std_original / np.maximum(std_edited, 1e-3), 1.0 / MAX_GAIN, MAX_GAIN)
    return (edited - mean_edited) * gain + mean_original


def _scale(matrix: np.ndarray) -> float:
    """Crop pixels per photo pixel of a similarity (or any affine) matrix."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:, :2]))))


def paste_region(matrix: np.ndarray, size: int, image_shape: tuple[int, ...], mask: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the photo pixels a pasted crop can touch, or None if none.

    The mask's non-zero part (the whole crop without a mask) mapped back through `matrix`,
    plus 2 pixels for the interpolation kernel, clipped to the image.
    """
    if mask is not None:
        rows, columns = np.nonzero(mask > 0)
        if len(rows) == 0:
            return None
        x0, x1, y0, y1 = columns.min(), columns.max() + 1, rows.min(), rows.max() + 1
    else:
        x0, y0, x1, y1 = 0, 0, size, size
    corners = transform_points(invert_affine(matrix), np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64) - 0.5)
    height, width = image_shape[:2]
    left = max(0, int(np.floor(corners[:, 0].min())) - 2)
    top = max(0, int(np.floor(corners[:, 1].min())) - 2)
    right = min(width, int(np.ceil(corners[:, 0].max())) + 3)
    bottom = min(height, int(np.ceil(corners[:, 1].max())) + 3)
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def warp_from_crop(values: np.ndarray, matrix: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """Resample an S x S x C float32 crop-space array onto a region of the photo.

    matrix maps photo pixels to crop pixels; region is (left, top, right, bottom) in the photo.
    Bicubic; zero outside the crop. When the face is much smaller in the photo than in the crop,
    the array is first shrunk with area averaging so the result is not aliased.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    values = np.ascontiguousarray(values, dtype=np.float32)
    scale = _scale(matrix)
    if scale > 2.0:
        size = values.shape[0]
        small = max(1, int(np.ceil(size * 2.0 / scale)))
        values = cv2.resize(values, (small, small), interpolation=cv2.INTER_AREA)
        # pixel-centre-preserving resize: x_small = (x + 0.5) * r - 0.5
        ratio = small / size
        matrix = np.array([[ratio, 0.0, 0.5 * ratio - 0.5], [0.0, ratio, 0.5 * ratio - 0.5]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    left, top, right, bottom = region
    # photo pixel (u + left, v + top) -> crop pixel: shift the matrix's origin to the region's corner
    shifted = matrix.copy()
    shifted[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.array([left, top], dtype=np.float64)
    warped = cv2.warpAffine(
        values,
        shifted,
        (right - left, bottom - top),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return warped.reshape(bottom - top, right - left, -1)


def paste_edit(
    photo: np.ndarray,
    crop: np.ndarray,
    edited: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray | None = None,
    colour_match: bool = True,
) -> float:
    """Add an edited face crop's change to `photo`, in place; returns the mean absolute change.

    photo: H x W x 3 uint8, modified in place. crop: S x S x 3, the network's input, cut from
    `photo` by `warp_to_crop(photo, matrix, S)`. edited: S x S x 3 in [0, 255] (float or
    uint8), the network's output. matrix: 2 x 3, photo pixels to crop pixels. mask: S x S in
    [0, 1], default `head_mask(S)`. The returned number is the mean |change| in 0-255 levels
    over the pasted photo pixels where the mask is at least one half (0 when nothing changed).
    Pixels where the warped mask is 0 are left exactly as they were.
    """
    size = crop.shape[0]
    if crop.shape[:2] != (size, size) or edited.shape[:2] != (size, size):
        raise ValueError(f"crop and edited must be the same square size, got {crop.shape} and {edited.shape}")
    mask = head_mask(size) if mask is None else np.asarray(mask, dtype=np.float32)
    region = paste_region(matrix, size, photo.shape, mask)
    if region is None:
        return 0.0
    original = crop.astype(np.float32)
    target = match_colour(edited, original, mask) if colour_match else edited.astype(np.float32)
    delta = (target - original) * mask[..., None]
    stacked = np.concatenate([delta, mask[..., None]], axis=-1)  # warp change and mask together
    warped = warp_from_crop(stacked, matrix, region)
    left, top, right, bottom = region
    window = photo[top:bottom, left:right]
    pasted = np.clip(np.rint(window.astype(np.float32) + warped[..., :3]), 0, 255).astype(np.uint8)
    inside = warped[..., 3] >= 0.5
    change = float(np.abs(pasted.astype(np.int16) - window.astype(np.int16))[inside].mean()) if inside.any() else 0.0
    window[...] = pasted
    return change
