"""One frozen dataclass of settings per command; defaults live here once.

Each validates itself on construction and raises ConfigError, which the CLI turns into a
usage error (exit status 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from diat_cli.errors import ConfigError
from diat_cli.face.detect import DETECTORS

ALLOWED_SIZES = (64, 128, 256)


@dataclass(frozen=True)
class AlignSettings:
    """`diat align`: photos in, canonical crops plus manifest.jsonl out."""

    inputs: tuple[Path, ...]
    output: Path
    size: int = 128
    detector: str = "hog"
    upsample: int = 1
    largest_only: bool = False
    min_face: int = 0  # faces narrower than this (pixels of the photo) are skipped
    skip_existing: bool = False
    overwrite: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one photo or folder to align")
        if self.size < 16 or self.size > 1024:
            raise ConfigError(f"--size must be between 16 and 1024, got {self.size}")
        if self.detector not in DETECTORS:
            raise ConfigError(f"--detector must be one of {', '.join(DETECTORS)}, got '{self.detector}'")
        if self.upsample < 0 or self.upsample > 4:
            raise ConfigError(f"--upsample must be between 0 and 4, got {self.upsample}")
        if self.min_face < 0:
            raise ConfigError(f"--min-face must be 0 or more, got {self.min_face}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be 1 or more, got {self.workers}")
        if self.skip_existing and self.overwrite:
            raise ConfigError("--skip-existing and --overwrite contradict each other; pick one")
