"""The canonical template and its transforms, without any model files."""

from __future__ import annotations

import numpy as np
import pytest

from diat_cli.face.align import (
    alignment_matrix,
    eye_centres,
    invert_affine,
    similarity_matrix,
    template_eyes,
    transform_points,
    warp_to_crop,
)


def _landmarks(left_eye, right_eye, nose=(0.0, 0.0)):
    """dlib's order: the image-right eye's two corners first, then the image-left eye's, then the nose."""
    (lx, ly), (rx, ry) = left_eye, right_eye
    return np.array([[rx + 5, ry], [rx - 5, ry], [lx - 5, ly], [lx + 5, ly], nose], dtype=float)


def test_similarity_maps_both_points_exactly():
    source = np.array([[10.0, 40.0], [70.0, 20.0]])
    target = np.array([[50.0, 65.0], [78.0, 65.0]])
    matrix = similarity_matrix(source, target)
    np.testing.assert_allclose(transform_points(matrix, source), target, atol=1e-9)
    linear = matrix[:, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2) * (linear[0, 0] ** 2 + linear[1, 0] ** 2), atol=1e-9)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_alignment_puts_eyes_on_template_and_inverse_returns(size):
    landmarks = _landmarks((120.0, 210.0), (190.0, 180.0))
    matrix = alignment_matrix(landmarks, size)
    np.testing.assert_allclose(transform_points(matrix, eye_centres(landmarks)), template_eyes(size), atol=1e-9)
    back = transform_points(invert_affine(matrix), template_eyes(size))
    np.testing.assert_allclose(back, eye_centres(landmarks), atol=1e-9)


def test_eye_order_does_not_depend_on_landmark_order():
    landmarks = _landmarks((100.0, 100.0), (160.0, 100.0))
    swapped = landmarks[[2, 3, 0, 1, 4]]
    np.testing.assert_allclose(eye_centres(landmarks), eye_centres(swapped))
    assert eye_centres(landmarks)[0, 0] < eye_centres(landmarks)[1, 0]


def test_warp_samples_the_pixels_the_matrix_names():
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    photo = np.asarray(__import__("cv2").GaussianBlur(photo, (0, 0), 3))  # smooth, so bilinear sampling is exact enough
    matrix = alignment_matrix(_landmarks((170.0, 150.0), (230.0, 140.0)), 128)
    crop = warp_to_crop(photo, matrix, 128)
    inverse = invert_affine(matrix)
    for x, y in [(30, 40), (64, 64), (100, 90)]:
        sx, sy = transform_points(inverse, np.array([[x, y]]))[0]
        expected = photo[int(round(sy)), int(round(sx))].astype(int)
        assert np.abs(crop[y, x].astype(int) - expected).max() <= 6


def test_large_reduction_is_not_aliased():
    stripes = np.zeros((2000, 2000, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to mid grey when shrunk properly
    matrix = alignment_matrix(_landmarks((800.0, 1000.0), (1200.0, 1000.0)), 64)
    crop = warp_to_crop(stripes, matrix, 64).astype(float)
    assert abs(crop.mean() - 127.5) < 10 and crop.std() < 20
