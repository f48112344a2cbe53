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


VARIANTS = ("diat", "a")
GAN_LOSSES = ("gan", "wgan-gp")


@dataclass(frozen=True)
class TrainTransformSettings:
    """`diat train-transform`: stage 1, the transform network T against the discriminator D."""

    attribute: str
    data: Path | None = None  # folder written by `diat align`
    labels: Path | None = None  # CelebA list_attr_celeba.txt; UTKFace labels come from file names
    source: Path | None = None  # or: faces without the attribute ...
    reference: Path | None = None  # ... and faces with it, as two folders
    run_dir: Path | None = None  # default runs/<attribute>-<variant>
    variant: str = "a"
    size: int = 128
    steps: int = 10_000
    batch_size: int = 16
    learning_rate: float = 2e-4
    gan: str = "gan"
    adversarial_weight: float = 1.0
    identity_weight: float = 10.0
    smooth_weight: float = 1.0
    gradient_penalty_weight: float = 10.0
    transform_channels: int = 32
    discriminator_channels: int = 64
    denoiser_steps: int = 300
    validation_fraction: float = 0.05
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    grid_every: int = 250
    log_every: int = 10
    resume: bool = False
    overwrite: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"--variant must be one of {', '.join(VARIANTS)}, got '{self.variant}'")
        if self.gan not in GAN_LOSSES:
            raise ConfigError(f"--gan must be one of {', '.join(GAN_LOSSES)}, got '{self.gan}'")
        if self.size not in ALLOWED_SIZES:
            raise ConfigError(f"--size must be one of {', '.join(map(str, ALLOWED_SIZES))}, got {self.size}")
        if (self.source is None) != (self.reference is None):
            raise ConfigError("--source and --reference go together: give both folders")
        if self.source is None and self.data is None:
            raise ConfigError("give an aligned folder (--data, with --labels for CelebA) or --source and --reference")
        if self.source is not None and self.data is not None:
            raise ConfigError("give either --data or --source/--reference, not both")
        for name in ("steps", "batch_size", "checkpoint_every", "grid_every", "log_every", "transform_channels", "discriminator_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--lr must be positive, got {self.learning_rate}")
        for name in ("adversarial_weight", "identity_weight", "smooth_weight", "gradient_penalty_weight", "denoiser_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if not 0 < self.validation_fraction < 0.5:
            raise ConfigError(f"validation fraction must be between 0 and 0.5, got {self.validation_fraction}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")

    @property
    def resolved_run_dir(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path("runs") / f"{self.attribute}-{self.variant}"
