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


def _check_colour_blur(sigma: float | None) -> None:
    if sigma is not None and not 0.0 <= sigma <= 8.0:
        raise ConfigError(f"--colour-blur must be between 0 (off) and 8 pixels, got {sigma}")


def _check_colour_strength(scale: float | None) -> None:
    if scale is not None and not 0.0 <= scale <= 1.0:
        raise ConfigError(f"--colour-strength must be between 0 (brightness only) and 1 (all of the edit's colour), got {scale}")


def _check_strength(strength: float | None) -> None:
    if strength is not None and not 0.0 < strength <= 3.0:
        raise ConfigError(f"--strength must be above 0 and at most 3 (1: the model's own edit), got {strength}")


def _check_confine(confine: bool | None, attributes: tuple[str, ...]) -> None:
    """--confine keeps an edit near its region: refuse it up front for attributes that have none."""
    from diat_cli.attributes import resolve_attribute

    if not confine:
        return
    whole_face = [name for name in attributes if resolve_attribute(name).region is None]
    if whole_face:
        raise ConfigError(f"--confine keeps an edit near its region of the face (eyes, mouth), and {', '.join(whole_face)} changes the whole face")


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
    spectral_norm: bool = True  # on D's layers: keeps the GAN game (and D's features, DIAT-A's identity space) from blowing up
    fuse_mask: bool = False  # T blends its output with the input through a learned mask
    mask_weight: float = 0.1  # penalty on the mask's mean area (with fuse_mask)
    edit_tv_weight: float = 0.0  # total variation of the edit T(x) - x: against coloured specks
    edit_chroma_weight: float = 0.0  # change of chroma T(x) vs x: against smooth colour blotches
    edit_symmetry_weight: float = 0.0  # left-right asymmetry of the edit: against a lens over one eye
    identity_embedding_weight: float = 0.0  # squared descriptor distance T(x) to x (variant diat): what verification thresholds
    transform_channels: int = 32
    discriminator_channels: int = 64
    denoiser_steps: int = 300
    init: Path | None = None  # start T (and D) from an earlier run's weights instead of random ones
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
        if self.init is not None and self.resume:
            raise ConfigError("--init starts a new run and --resume continues one: give only one of them")
        if self.source is None and self.data is None:
            raise ConfigError("give an aligned folder (--data, with --labels for CelebA) or --source and --reference")
        if self.source is not None and self.data is not None:
            raise ConfigError("give either --data or --source/--reference, not both")
        for name in ("steps", "batch_size", "checkpoint_every", "grid_every", "log_every", "transform_channels", "discriminator_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--lr must be positive, got {self.learning_rate}")
        for name in ("adversarial_weight", "identity_weight", "smooth_weight", "gradient_penalty_weight", "mask_weight", "edit_tv_weight", "edit_chroma_weight", "edit_symmetry_weight", "identity_embedding_weight", "denoiser_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if self.identity_embedding_weight > 0 and self.variant != "diat":
            raise ConfigError("--identity-embedding-weight needs --variant diat: it uses the face-recognition network, which variant a does not load")
        if not 0 < self.validation_fraction < 0.5:
            raise ConfigError(f"validation fraction must be between 0 and 0.5, got {self.validation_fraction}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")

    @property
    def resolved_run_dir(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path("runs") / f"{self.attribute}-{self.variant}"


ENHANCE_INSIDE_LOSSES = ("identity", "pixel")


@dataclass(frozen=True)
class TrainEnhanceSettings:
    """`diat train-enhance`: stage 2, the enhancement network E behind a frozen transform network T.

    Data, labels, size and the validation slice default to the transform run's (its
    config.json and weights metadata); checkpoints, logs and grids go to <transform folder>/enhance/
    and the weights to enhance.safetensors beside the transform weights.
    """

    transform: Path  # transform.safetensors, or the run folder holding it
    attribute: str | None = None  # default: the transform's; must match it when given
    data: Path | None = None  # default: the aligned folder the transform was trained on
    labels: Path | None = None
    source: Path | None = None
    reference: Path | None = None
    size: int | None = None  # default: the transform's; E runs at T's size, so it must match
    run_dir: Path | None = None  # default <transform folder>/enhance
    output: Path | None = None  # default enhance.safetensors beside the transform weights
    steps: int = 2_000
    batch_size: int = 16
    learning_rate: float = 2e-4
    inside_loss: str = "identity"  # local attributes: "identity" (METHOD.md) or "pixel" (cheaper)
    perceptual_weight: float = 0.1  # beta, per identity-network layer (stages 1 and 2)
    mask_feather: float = 0.03  # sigma of the mask's soft edge, fraction of the side
    blur_sigma: float = 1.0  # global attributes: blur sigma in pixels at 64 px, scaled with the size
    enhance_channels: int = 32
    enhance_blocks: int = 4
    validation_fraction: float | None = None  # default: the transform run's
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
        if self.inside_loss not in ENHANCE_INSIDE_LOSSES:
            raise ConfigError(f"--inside-loss must be one of {', '.join(ENHANCE_INSIDE_LOSSES)}, got '{self.inside_loss}'")
        if self.size is not None and self.size not in ALLOWED_SIZES:
            raise ConfigError(f"--size must be one of {', '.join(map(str, ALLOWED_SIZES))}, got {self.size}")
        if (self.source is None) != (self.reference is None):
            raise ConfigError("--source and --reference go together: give both folders")
        if self.source is not None and self.data is not None:
            raise ConfigError("give either --data or --source/--reference, not both")
        for name in ("steps", "batch_size", "checkpoint_every", "grid_every", "log_every", "enhance_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}")
        if self.enhance_blocks < 0:
            raise ConfigError(f"--enhance-blocks must be 0 or more, got {self.enhance_blocks}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--lr must be positive, got {self.learning_rate}")
        for name in ("perceptual_weight", "mask_feather", "blur_sigma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if self.validation_fraction is not None and not 0 < self.validation_fraction < 0.5:
            raise ConfigError(f"validation fraction must be between 0 and 0.5, got {self.validation_fraction}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")


CLASSIFIER_SIZES = (64, 128)


@dataclass(frozen=True)
class TrainClassifierSettings:
    """`diat train-classifier`: the attribute classifier that `diat evaluate` judges edits with."""

    celeba: tuple[Path, ...] = ()  # aligned folders of CelebA faces (labels found beside the photos, or --labels)
    labels: Path | None = None  # list_attr_celeba.txt for the --celeba folders
    utkface: tuple[Path, ...] = ()  # aligned folders of UTKFace faces (age and gender from the file names)
    test: Path | None = None  # an aligned, labelled CelebA folder measured (all of it) after training
    test_labels: Path | None = None
    run_dir: Path | None = None  # default runs/classifier-<size>
    size: int = 64
    channels: int = 32
    steps: int = 6_000
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    validation_fraction: float = 0.05
    half: bool = False  # write the final weights in float16
    balance: bool = True  # weight each CelebA attribute's positives by sqrt(negatives / positives)
    init: Path | None = None  # start from these classifier weights (fine-tuning) instead of random ones
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    seed: int = 0
    checkpoint_every: int = 1_000
    log_every: int = 50
    resume: bool = False
    overwrite: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not self.celeba and not self.utkface:
            raise ConfigError("give at least one aligned folder of faces: --celeba DIR (CelebA) and/or --utkface DIR")
        if self.size not in CLASSIFIER_SIZES:
            raise ConfigError(f"--size must be one of {', '.join(map(str, CLASSIFIER_SIZES))}, got {self.size}")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be 2 or more (batch norm), got {self.batch_size}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--lr must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must not be negative, got {self.weight_decay}")
        if not 0 < self.validation_fraction < 0.5:
            raise ConfigError(f"--validation-fraction must be between 0 and 0.5, got {self.validation_fraction}")
        if self.labels is not None and not self.celeba:
            raise ConfigError("--labels describes --celeba folders; give one")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")

    @property
    def resolved_run_dir(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path("runs") / f"classifier-{self.size}"


@dataclass(frozen=True)
class EvaluateSettings:
    """`diat evaluate`: edit DATA's source-side faces and measure success, identity, locality, realism, speed."""

    attribute: str
    data: Path  # aligned folder (labels found beside the photos, or --labels) or photos
    weights: Path | None = None  # run folder or transform weights; default: bundled for the attribute
    classifier: Path | None = None  # classifier weights or run folder; default: bundled
    labels: Path | None = None  # list_attr_celeba.txt, or 'utkface'
    identities: Path | None = None  # identity_CelebA.txt; default: found beside the labels or photos
    reference: Path | None = None  # faces with the attribute (realism), when DATA has no labels
    report_dir: Path | None = None  # default evaluation/<attribute>
    limit: int = 500  # source-side (and reference-side) faces used, in the stable hash order
    held_out: bool = False  # only faces of the held-out slice (never seen by training)
    sample: int = 8  # faces in the report's before/after grid
    worst: int = 8  # worst cases by identity distance in the report
    batch_size: int = 32
    use_enhance: bool = True
    colour_blur: float | None = None  # sigma (model pixels) of the edit's chroma blur; None: the model's own, 0: off
    colour_strength: float | None = None  # share of the edit's colour change kept; None: the model's own (1 unless bundled otherwise)
    strength: float | None = None  # the change scaled by this; None: the model's own (1 unless bundled otherwise)
    confine: bool | None = None  # keep the edit near a local attribute's region; None: the model's own (off unless bundled on)
    detector: str = "hog"  # for photos
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("limit", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}")
        for name in ("sample", "worst"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be 0 or more, got {getattr(self, name)}")
        if self.detector not in DETECTORS:
            raise ConfigError(f"--detector must be one of {', '.join(DETECTORS)}, got '{self.detector}'")
        _check_colour_blur(self.colour_blur)
        _check_colour_strength(self.colour_strength)
        _check_strength(self.strength)
        _check_confine(self.confine, (self.attribute,))

    @property
    def resolved_report_dir(self) -> Path:
        from diat_cli.attributes import resolve_attribute

        return self.report_dir if self.report_dir is not None else Path("evaluation") / resolve_attribute(self.attribute).name


TRANSFER_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TransferSettings:
    """`diat transfer`: photos in, the same photos with every face edited out.

    One editor per attribute (bundled weights) or per --weights; with several, each writes to
    output/<attribute>/. Attribute names are resolved to their canonical form (aliases accepted).
    """

    inputs: tuple[Path, ...]
    output: Path
    attributes: tuple[str, ...] = ()  # bundled weights for each, or paired in order with `weights`
    weights: tuple[Path, ...] = ()  # run folders or transform weights files
    aligned: bool = False  # inputs are square crops from `diat align`, not photos
    detector: str = "hog"
    upsample: int = 1
    min_face: int = 32  # faces narrower than this (pixels of the photo) are left as they are
    largest_only: bool = False
    colour_match: bool = True  # keep each face's colour statistics (off for colour attributes)
    use_enhance: bool = True  # apply E when the weights have one
    colour_blur: float | None = None  # sigma (model pixels) of the edit's chroma blur; None: the model's own, 0: off
    colour_strength: float | None = None  # share of the edit's colour change kept; None: the model's own (1 unless bundled otherwise)
    strength: float | None = None  # the change scaled by this; None: the model's own (1 unless bundled otherwise)
    confine: bool | None = None  # keep the edit near a local attribute's region; None: the model's own (off unless bundled on)
    save_crops: bool = False  # aligned before/after crops in _crops/
    sheet: bool = False  # original | edited per photo in _sheets/
    skip_unchanged: bool = False  # photos without a usable face are not copied
    skip_existing: bool = False  # resume: photos in the output's manifest are not redone
    overwrite: bool = False
    output_inside_input: bool = False  # allow OUTPUT inside an input folder (its files are then not inputs)
    jpeg_quality: int | None = None  # None: reuse each JPEG's own quantisation tables
    device: str = "auto"
    batch_size: int = 16
    workers: int | None = None  # detection processes; None: decided from the cores, device and network size

    def __post_init__(self) -> None:
        from diat_cli.attributes import resolve_attribute

        if not self.inputs:
            raise ConfigError("give at least one photo or folder to edit")
        if not self.attributes and not self.weights:
            raise ConfigError("give --attr (bundled weights) or --weights (a run folder or weights file)")
        if self.attributes and self.weights and len(self.attributes) != len(self.weights):
            raise ConfigError(
                f"{len(self.attributes)} --attr and {len(self.weights)} --weights: give one --weights per --attr (paired in order), or none"
            )
        canonical = tuple(resolve_attribute(name).name for name in self.attributes)
        if len(set(canonical)) != len(canonical):
            raise ConfigError(f"an attribute is given twice: {', '.join(self.attributes)}")
        object.__setattr__(self, "attributes", canonical)
        if self.detector not in DETECTORS:
            raise ConfigError(f"--detector must be one of {', '.join(DETECTORS)}, got '{self.detector}'")
        if self.upsample < 0 or self.upsample > 4:
            raise ConfigError(f"--upsample must be between 0 and 4, got {self.upsample}")
        if self.min_face < 0:
            raise ConfigError(f"--min-face must be 0 or more, got {self.min_face}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be 1 or more, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be 1 or more, got {self.workers}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"--quality must be between 1 and 100, got {self.jpeg_quality}")
        if self.device not in TRANSFER_DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(TRANSFER_DEVICES)}, got '{self.device}'")
        if self.skip_existing and self.overwrite:
            raise ConfigError("--skip-existing and --overwrite contradict each other; pick one")
        _check_colour_blur(self.colour_blur)
        _check_colour_strength(self.colour_strength)
        _check_strength(self.strength)
        _check_confine(self.confine, self.attributes)
