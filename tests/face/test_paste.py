"""Pasting edited crops back: mask, colour matching and the inverse warp, on synthetic photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from diat_cli.face.align import alignment_matrix, invert_affine, template_eyes, transform_points, warp_to_crop
from diat_cli.face.paste import head_mask, match_colour, paste_edit, paste_region


def _photo(height=360, width=480, seed=0):
    """A textured photo: smooth colour blobs plus fine noise, uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 215, (height // 24, width // 24, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def _landmarks(centre=(240.0, 170.0), eye_distance=60.0, angle_degrees=12.0):
    """dlib-style 5 landmarks of a face at `centre` (the point between the eyes), tilted."""
    angle = np.deg2rad(angle_degrees)
    axis = np.array([np.cos(angle), np.sin(angle)])
    down = np.array([-np.sin(angle), np.cos(angle)])
    centre = np.asarray(centre)
    right_eye, left_eye = centre + axis * eye_distance / 2, centre - axis * eye_distance / 2
    return np.stack(
        [right_eye + axis * 8, right_eye - axis * 8, left_eye - axis * 8, left_eye + axis * 8, centre + down * eye_distance * 0.8]
    )


def _face_setup(size=64, **face):
    photo = _photo()
    matrix = alignment_matrix(_landmarks(**face), size)
    return photo, matrix, warp_to_crop(photo, matrix, size)


def test_head_mask_is_one_on_the_face_zero_on_the_border_and_scale_free():
    for size in (64, 128, 256):
        mask = head_mask(size)
        assert mask.shape == (size, size) and mask.dtype == np.float32
        assert mask.min() == 0.0 and mask.max() == 1.0
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert np.all(border == 0.0)
        for x, y in template_eyes(size):
            assert mask[int(y), int(x)] == 1.0
        assert mask[int(0.75 * size), size // 2] == 1.0  # mouth
    small = cv2.resize(head_mask(256), (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(small - head_mask(64)).max() < 0.08


def test_match_colour_gives_the_original_statistics():
    rng = np.random.default_rng(1)
    original = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    weights = head_mask(32)
    assert np.allclose(match_colour(original, original, weights), original, atol=1e-3)
    edited = original * 0.7 + np.array([40.0, -10.0, 5.0])
    matched = match_colour(edited, original, weights)
    w = weights[..., None] / weights.sum()
    for image in (matched,):
        mean = (image * w).sum(axis=(0, 1))
        std = np.sqrt((((image - mean) ** 2) * w).sum(axis=(0, 1)))
        mean_o = (original * w).sum(axis=(0, 1))
        std_o = np.sqrt((((original - mean_o) ** 2) * w).sum(axis=(0, 1)))
        assert np.allclose(mean, mean_o, atol=0.05) and np.allclose(std, std_o, atol=0.05)
    assert np.allclose(matched, original, atol=0.05)  # an affine change per channel is undone exactly


@pytest.mark.parametrize("size,eye_distance", [(64, 60.0), (64, 200.0), (256, 20.0)])
def test_an_unchanged_crop_leaves_the_photo_bit_for_bit(size, eye_distance):
    photo, matrix, crop = _face_setup(size, eye_distance=eye_distance)
    pasted = photo.copy()
    change = paste_edit(pasted, crop, crop.astype(np.float32), matrix)
    assert change == 0.0 and np.array_equal(pasted, photo)


@pytest.mark.parametrize("eye_distance", [30.0, 60.0, 150.0])  # face smaller, similar and larger than the crop
def test_an_edit_lands_on_the_face_and_nowhere_else(eye_distance):
    size = 64
    photo, matrix, crop = _face_setup(size, eye_distance=eye_distance)
    edited = crop.astype(np.float32)
    edited[30:46, 24:40] -= 60.0  # a dark patch on the nose and mouth
    pasted = photo.copy()
    paste_edit(pasted, crop, edited, matrix, colour_match=False)
    difference = np.abs(pasted.astype(int) - photo.astype(int)).max(axis=2)
    # the patch's centre, mapped back into the photo, is darker by about the patch's depth
    x, y = transform_points(invert_affine(matrix), np.array([[31.5, 37.5]]))[0].round().astype(int)
    assert photo[y, x].astype(int).mean() - pasted[y, x].astype(int).mean() > 45
    # nothing changes outside the region the mask can reach
    left, top, right, bottom = paste_region(matrix, size, photo.shape, head_mask(size))
    outside = np.ones_like(difference, dtype=bool)
    outside[top:bottom, left:right] = False
    assert not outside.any() or difference[outside].max() == 0
    assert (difference > 0).mean() < 0.6  # most of the photo is untouched
    # and inside it, only around the patch: far corners of the crop stay put
    for corner in ([4, 4], [60, 4], [4, 60], [60, 60]):
        cx, cy = transform_points(invert_affine(matrix), np.array([corner], dtype=float))[0].round().astype(int)
        if 0 <= cx < photo.shape[1] and 0 <= cy < photo.shape[0]:
            assert difference[cy, cx] == 0


def test_colour_matching_removes_a_tint_and_keeps_a_local_change():
    photo, matrix, crop = _face_setup(64, eye_distance=60.0)
    tinted = crop.astype(np.float32) + np.array([30.0, 0.0, -25.0])
    plain, matched = photo.copy(), photo.copy()
    paste_edit(plain, crop, tinted, matrix, colour_match=False)
    paste_edit(matched, crop, tinted, matrix, colour_match=True)
    x, y = transform_points(invert_affine(matrix), template_eyes(64).mean(axis=0, keepdims=True))[0].round().astype(int)
    window = (slice(y - 10, y + 10), slice(x - 10, x + 10))
    shift_plain = (plain[window].astype(float) - photo[window]).mean(axis=(0, 1))
    shift_matched = (matched[window].astype(float) - photo[window]).mean(axis=(0, 1))
    assert shift_plain[0] > 25 and shift_plain[2] < -20
    assert np.abs(shift_matched).max() < 1.0
    local = crop.astype(np.float32)
    local[30:46, 24:40] -= 60.0
    kept = photo.copy()
    paste_edit(kept, crop, local, matrix, colour_match=True)
    cx, cy = transform_points(invert_affine(matrix), np.array([[31.5, 37.5]]))[0].round().astype(int)
    assert photo[cy, cx].astype(int).mean() - kept[cy, cx].astype(int).mean() > 30


def test_the_edge_of_a_paste_has_no_seam():
    photo, matrix, crop = _face_setup(64, eye_distance=120.0)  # face larger than the crop: the edge is spread out
    flat = np.full_like(photo, 128)
    crop = warp_to_crop(flat, matrix, 64)
    brighter = crop.astype(np.float32) + 50.0
    pasted = flat.copy()
    paste_edit(pasted, crop, brighter, matrix, colour_match=False)
    change = pasted.astype(float).mean(axis=2) - 128
    assert change.max() >= 49
    # the change fades out: no step between neighbouring pixels is more than a few levels
    assert np.abs(np.diff(change, axis=0)).max() <= 4 and np.abs(np.diff(change, axis=1)).max() <= 4


def test_a_face_outside_the_photo_pastes_nothing():
    photo = _photo()
    matrix = alignment_matrix(_landmarks(centre=(-400.0, -400.0)), 64)
    assert paste_region(matrix, 64, photo.shape, head_mask(64)) is None
    pasted = photo.copy()
    assert paste_edit(pasted, np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255.0), matrix) == 0.0
    assert np.array_equal(pasted, photo)


def test_mismatched_sizes_are_refused():
    photo, matrix, crop = _face_setup(64)
    with pytest.raises(ValueError, match="same square size"):
        paste_edit(photo, crop, np.zeros((32, 32, 3), np.float32), matrix)
