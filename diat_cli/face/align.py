"""The canonical face crop: one template that training, transfer and evaluation share.

A similarity transform (rotation, uniform scale, translation) puts the two eye centres
on fixed template positions: eyes level, at a fixed distance, framed like CelebA's
aligned faces (hair, chin and some background visible).
"""

from __future__ import annotations

import cv2
import numpy as np

# Eye centres in the crop, as fractions of its side (image-left eye first).
TEMPLATE_LEFT_EYE = (0.3875, 0.51)
TEMPLATE_RIGHT_EYE = (0.6125, 0.51)

# Mean positions of dlib's 5 landmarks in a canonical crop, as fractions of its side, in dlib's
# order: image-right eye outer and inner corner, image-left eye outer and inner corner, base of
# the nose. Used to cut dlib's face chip out of a crop when no landmarks were kept. Measured
# on 4,983 faces of ../shared/data/celeba-test-crops (HOG detector, upsample 1, largest face):
# landmarks mapped through alignment_matrix into the crop and averaged. Spread (std) about
# 0.0035 for the eye corners and 0.025 for the nose.
TEMPLATE_LANDMARKS = (
    (0.6578, 0.5072),
    (0.5672, 0.5128),
    (0.3424, 0.5071),
    (0.4326, 0.5129),
    (0.4985, 0.6833),
)


def template_eyes(size: int) -> np.ndarray:
    """2 x 2 array of the template's eye centres (x, y) in pixels of a size x size crop."""
    return np.array([TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE], dtype=np.float64) * size


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres (image-left first) from dlib's 5 landmarks: two corners per eye, then the nose."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    first = landmarks[0:2].mean(axis=0)
    second = landmarks[2:4].mean(axis=0)
    return np.stack([first, second]) if first[0] <= second[0] else np.stack([second, first])


def similarity_matrix(source_points: np.ndarray, target_points: np.ndarray) -> np.ndarray:
    """2 x 3 matrix of the similarity that maps two source points exactly onto two target points."""
    (sx0, sy0), (sx1, sy1) = source_points
    (tx0, ty0), (tx1, ty1) = target_points
    source_vector = complex(sx1 - sx0, sy1 - sy0)
    target_vector = complex(tx1 - tx0, ty1 - ty0)
    if abs(source_vector) < 1e-9:
        raise ValueError("the two source points coincide")
    rotation_scale = target_vector / source_vector
    a, b = rotation_scale.real, rotation_scale.imag
    shift = complex(tx0, ty0) - rotation_scale * complex(sx0, sy0)
    return np.array([[a, -b, shift.real], [b, a, shift.imag]], dtype=np.float64)


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2 x 3 matrix from source-photo pixels to the size x size canonical crop."""
    return similarity_matrix(eye_centres(landmarks), template_eyes(size))


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2 x 3 affine matrix (crop back to source, for pasting edits back)."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine matrix to N x 2 points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix)[:, 2]


def warp_to_crop(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Cut the size x size crop that `matrix` defines out of an H x W x 3 uint8 image.

    Large reductions first shrink the photo with area averaging, so the crop is not aliased.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    image = rgb
    if scale < 0.5:
        shrink = 2.0 * scale  # leave a factor 2 for the warp's bilinear filter
        height, width = rgb.shape[:2]
        small_size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        image = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
        scale_x = small_size[0] / width
        scale_y = small_size[1] / height
        matrix = matrix @ np.diag([1.0 / scale_x, 1.0 / scale_y, 1.0])
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
