"""Face detection and 5-point landmarks with dlib, numpy arrays in and out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diat_cli.errors import ConfigError
from diat_cli.face.model_files import CNN_DETECTOR, FIVE_POINT_PREDICTOR, model_path

DETECTORS = ("hog", "cnn")


@dataclass(frozen=True)
class DetectedFace:
    """One face: box (left, top, right, bottom) in pixels, detector score, 5 x 2 landmarks (x, y)."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]


class FaceDetector:
    """dlib's HOG (default, fast) or MMOD CNN detector followed by the 5-point shape predictor.

    Models load on first use, so building a detector (or importing this module) is cheap.
    """

    def __init__(self, detector: str = "hog", upsample: int = 1):
        if detector not in DETECTORS:
            raise ConfigError(f"unknown detector '{detector}'; choose one of {', '.join(DETECTORS)}")
        if upsample < 0:
            raise ConfigError(f"upsample must be 0 or more, got {upsample}")
        self.detector_name = detector
        self.upsample = upsample
        self._detector = None
        self._predictor = None

    def _load(self) -> None:
        import dlib

        if self.detector_name == "cnn":
            self._detector = dlib.cnn_face_detection_model_v1(str(model_path(CNN_DETECTOR)))
        else:
            self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_path(FIVE_POINT_PREDICTOR)))

    def boxes(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes and scores in an H x W x 3 uint8 RGB image, best first."""
        if self._detector is None:
            self._load()
        if self.detector_name == "cnn":
            found = [(d.rect, float(d.confidence)) for d in self._detector(rgb, self.upsample)]
        else:
            rects, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
            found = list(zip(rects, (float(s) for s in scores)))
        found.sort(key=lambda item: -item[1])
        return [((r.left(), r.top(), r.right(), r.bottom()), score) for r, score in found]

    def landmarks(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """dlib's 5 landmarks (2 per eye corner pair, then the nose base) as a 5 x 2 float array."""
        import dlib

        if self._predictor is None:
            self._load()
        shape = self._predictor(rgb, dlib.rectangle(*box))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Every face in the image with its landmarks, best score first."""
        return [DetectedFace(box, score, self.landmarks(rgb, box)) for box, score in self.boxes(rgb)]
