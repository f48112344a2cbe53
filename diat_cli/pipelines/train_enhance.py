"""`diat train-enhance`: stage 2 behind a trained transform network, callable from Python.

Everything that defines the faces E sees comes from the transform run by default: the
attribute, the training size, the aligned folder and labels (or the source/reference folders)
and the validation fraction, so E is trained on T's training faces and the held-out faces
stay held out. Files go to <transform folder>/enhance/ (config.json, metrics.jsonl, grids/,
checkpoints/), and E's weights to enhance.safetensors beside transform.safetensors, where
`load_editor` (transfer, evaluate) picks them up.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from diat_cli import __version__
from diat_cli.attributes import Attribute, resolve_attribute
from diat_cli.checkpoints import load_network, read_metadata, save_network
from diat_cli.data import (
    VALIDATION_FRACTION,
    AttributeSplit,
    FaceImages,
    split_folders,
    split_source_reference,
)
from diat_cli.editing import ENHANCE_FILE, TRANSFORM_FILE
from diat_cli.errors import ConfigError
from diat_cli.face.masks import region_mask
from diat_cli.imageio import write_text_atomic
from diat_cli.nets.enhance import EnhanceNetwork
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.settings import TrainEnhanceSettings
from diat_cli.train.batches import StepBatches
from diat_cli.train.enhance import EnhanceStage, LowIdentityFeatures, default_blur_sigma
from diat_cli.train.loop import (
    LoopOptions,
    TrainingResult,
    latest_checkpoint,
    run_training,
)
from diat_cli.train.runtime import broadcast_parameters, seed_everything, setup_runtime

PREVIEW_FACES = 8
UTKFACE_LABELS = "utkface"
RUN_FOLDER = "enhance"  # E's sub-folder of the transform run: its checkpoints never mix with T's
RESUME_KEYS = ("transform", "transform_steps", "attribute", "size", "batch_size", "inside_loss", "enhance_channels", "enhance_blocks")


@dataclass(frozen=True)
class EnhancePlan:
    """What a train-enhance run will do, resolved from its settings and the transform run."""

    transform_path: Path
    transform_metadata: dict[str, Any]
    attribute: Attribute
    size: int
    data: Path | None
    labels: str | None
    source: Path | None
    reference: Path | None
    validation_fraction: float
    run_dir: Path
    output: Path

    @property
    def mode(self) -> str:
        """"local" for attributes with a region (mask), "global" otherwise (blur)."""
        return "global" if self.attribute.region is None else "local"


def transform_weights_path(path: str | os.PathLike) -> Path:
    """The transform weights a --transform value names: the file itself, or transform.safetensors in a run folder."""
    path = Path(path)
    if path.is_dir():
        weights = path / TRANSFORM_FILE
        if not weights.is_file():
            raise ConfigError(f"{path}: no {TRANSFORM_FILE} in this folder (has the transform run finished?)")
        return weights
    if not path.is_file():
        raise ConfigError(f"--transform {path}: no such weights file or run folder")
    return path


def enhance_weights_path(transform_path: Path) -> Path:
    """Where E goes by default: enhance.safetensors beside transform.safetensors (X.transform.* -> X.enhance.*)."""
    name = transform_path.name
    if "transform" in name:
        return transform_path.with_name(name.replace("transform", "enhance"))
    return transform_path.with_name(ENHANCE_FILE)


def resolve_recorded_path(value: str | None, transform_dir: Path, recorded_run_dir: str | None) -> Path | None:
    """A folder recorded in the transform run's config.json, found from here.

    Relative paths were relative to the folder the transform was trained from; that folder is
    found from the recorded run folder when it was relative too (runs/x -> two levels above
    the run), otherwise the current folder and the run folder's ancestors are tried.
    """
    if not value:
        return None
    recorded = Path(value)
    if recorded.is_absolute():
        return recorded if recorded.exists() else None
    candidates = [Path.cwd() / recorded]
    transform_dir = transform_dir.resolve()
    if recorded_run_dir and not Path(recorded_run_dir).is_absolute():
        depth = len(Path(recorded_run_dir).parts)
        if depth <= len(transform_dir.parents):
            candidates.insert(0, (transform_dir.parents[depth - 1] if depth else transform_dir) / recorded)
    candidates += [folder / recorded for folder in transform_dir.parents]
    return next((candidate for candidate in candidates if candidate.exists()), None)


def plan_run(settings: TrainEnhanceSettings) -> EnhancePlan:
    """Resolve the transform, attribute, size, data and folders; ConfigError for anything inconsistent."""
    transform_path = transform_weights_path(settings.transform)
    metadata = read_metadata(transform_path)
    if metadata.get("kind", "transform") != "transform" or metadata.get("class") != "TransformNetwork":
        raise ConfigError(f"{transform_path}: holds a {metadata.get('kind') or metadata.get('class')} network, not a transform network")
    recorded_attribute = metadata.get("attribute")
    if settings.attribute is not None:
        attribute = resolve_attribute(settings.attribute)
        if recorded_attribute is not None and resolve_attribute(recorded_attribute).name != attribute.name:
            raise ConfigError(f"{transform_path} was trained for '{recorded_attribute}', not '{attribute.name}'")
    elif recorded_attribute is not None:
        attribute = resolve_attribute(recorded_attribute)
    else:
        raise ConfigError(f"{transform_path} does not say which attribute it edits; give --attr")
    size = int(metadata.get("size") or settings.size or 0)
    if settings.size is not None and settings.size != size:
        raise ConfigError(f"--size {settings.size}: E runs on T's output at T's size, and {transform_path.name} works at {size} px")
    if not size:
        raise ConfigError(f"{transform_path} does not record its training size; give --size")

    config_path = transform_path.parent / "config.json"
    recorded: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    data, labels, source, reference = settings.data, settings.labels, settings.source, settings.reference
    if data is None and source is None:
        where = (transform_path.parent, recorded.get("run_dir"))
        if recorded.get("source") and recorded.get("reference"):
            source, reference = resolve_recorded_path(recorded["source"], *where), resolve_recorded_path(recorded["reference"], *where)
            missing = [name for name, found in (("source", source), ("reference", reference)) if found is None]
            if missing:
                raise ConfigError(f"cannot find the transform run's {' and '.join(missing)} folder ({recorded[missing[0]]}); give --source and --reference")
        else:
            value = recorded.get("data") or metadata.get("data_folder")
            data = resolve_recorded_path(value, *where)
            if data is None:
                found = f"cannot find the transform run's data folder ({value})" if value else f"{transform_path} does not record its data folder"
                raise ConfigError(f"{found}; give --data (and --labels)")
            if labels is None and recorded.get("labels"):
                labels = recorded["labels"]
                if str(labels).lower() != UTKFACE_LABELS:
                    labels = resolve_recorded_path(str(labels), *where) or labels
    fraction = settings.validation_fraction or recorded.get("validation_fraction") or VALIDATION_FRACTION

    run_dir = settings.run_dir if settings.run_dir is not None else transform_path.parent / RUN_FOLDER
    output = settings.output if settings.output is not None else enhance_weights_path(transform_path)
    return EnhancePlan(
        transform_path, metadata, attribute, size, data, None if labels is None else str(labels), source, reference, float(fraction), run_dir, output
    )


def attribute_mask(attribute: str | Attribute, size: int, feather: float = 0.03) -> torch.Tensor | None:
    """The soft region mask E's local loss uses (1 x 1 x size x size), or None for a global attribute."""
    attribute = resolve_attribute(attribute) if isinstance(attribute, str) else attribute
    return None if attribute.region is None else region_mask(attribute.region, size, feather)


def load_split(plan: EnhancePlan) -> AttributeSplit:
    """The transform run's source/reference faces, with the same validation slice held out."""
    if plan.source is not None:
        return split_folders(plan.source, plan.reference, validation_fraction=plan.validation_fraction)
    utkface = plan.labels is not None and plan.labels.lower() == UTKFACE_LABELS
    return split_source_reference(
        plan.data,
        plan.attribute,
        labels_path=None if utkface or plan.labels is None else plan.labels,
        utkface=utkface,
        validation_fraction=plan.validation_fraction,
    )


def _run_config(settings: TrainEnhanceSettings, plan: EnhancePlan) -> dict[str, Any]:
    values = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()}
    return {
        **values,
        "transform": str(plan.transform_path.resolve()),
        "transform_steps": plan.transform_metadata.get("steps"),
        "attribute": plan.attribute.name,
        "region": plan.attribute.region,
        "mode": plan.mode,
        "size": plan.size,
        "data": None if plan.data is None else str(plan.data),
        "labels": plan.labels,
        "source": None if plan.source is None else str(plan.source),
        "reference": None if plan.reference is None else str(plan.reference),
        "validation_fraction": plan.validation_fraction,
        "run_dir": str(plan.run_dir),
        "output": str(plan.output),
        "diat_version": __version__,
    }


def prepare_run_dir(settings: TrainEnhanceSettings, plan: EnhancePlan, config: dict[str, Any]) -> None:
    """Refuse to clobber an earlier E run or weights unless --resume or --overwrite says what to do."""
    run_dir = plan.run_dir
    if settings.resume:
        if latest_checkpoint(run_dir) is None:
            raise ConfigError(f"{run_dir}: no checkpoint to resume from")
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        for key in RESUME_KEYS:
            if saved.get(key) != config[key]:
                raise ConfigError(f"{run_dir}: {key.replace('_', ' ')} differs from the run being resumed ({saved.get(key)} there, {config[key]} now)")
        return
    if settings.overwrite:
        return
    if (run_dir / "config.json").exists() or latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds an enhancement run; use --resume to continue it or --overwrite to start again")
    if plan.output.exists():
        raise ConfigError(f"{plan.output} already exists; use --overwrite to replace it")


def train_enhance(settings: TrainEnhanceSettings, reporter: Reporter | None = None) -> TrainingResult | None:
    """Train E behind the frozen T as settings say; returns None for --dry-run after writing config.json."""
    reporter = reporter or SilentReporter()
    plan = plan_run(settings)
    config = _run_config(settings, plan)
    prepare_run_dir(settings, plan, config)
    split = load_split(plan)
    runtime = setup_runtime(settings.device, settings.precision, settings.channels_last)
    config["data_summary"] = split.summary()
    config["runtime"] = {"device": str(runtime.device), "precision": runtime.precision, "world_size": runtime.world_size}
    if runtime.is_main and not settings.resume:
        write_text_atomic(plan.run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    if settings.dry_run:
        return None

    seed_everything(settings.seed)
    reporter.start("Loading faces", None)
    # Local: E learns on T's inputs (source faces). Global: on every real face, sharp targets of both kinds.
    paths = split.train_source if plan.mode == "local" else split.train_source + split.train_reference
    faces = FaceImages(paths, plan.size, preload=True).pixels
    preview = FaceImages(split.val_source[:PREVIEW_FACES], plan.size, flip=False, preload=True).pixels
    reporter.finish()
    if len(faces) < settings.batch_size * runtime.world_size:
        raise ConfigError(f"only {len(faces)} faces for training: fewer than one batch of {settings.batch_size * runtime.world_size}")
    batches = StepBatches(faces, settings.batch_size, settings.seed, runtime.rank, runtime.world_size)

    transform, _ = load_network(plan.transform_path, runtime.device)
    transform = runtime.prepare(transform).eval()
    enhance_config = {"channels": settings.enhance_channels, "blocks": settings.enhance_blocks}
    enhance = runtime.prepare(EnhanceNetwork(**enhance_config))
    broadcast_parameters([enhance], runtime)

    mask, identity_features = None, None
    if plan.mode == "local":
        mask = attribute_mask(plan.attribute, plan.size, settings.mask_feather)
        if settings.inside_loss == "identity":
            from diat_cli.face.identity import load_identity_network

            identity_features = LowIdentityFeatures(runtime.prepare(load_identity_network()))
    blur_sigma = default_blur_sigma(plan.size, settings.blur_sigma)
    if settings.compile:
        enhance = torch.compile(enhance, dynamic=False)
        transform = torch.compile(transform, dynamic=False)

    stage = EnhanceStage(
        enhance,
        transform,
        runtime,
        enhance_config,
        mask=mask,
        inside_loss=settings.inside_loss,
        perceptual_weight=settings.perceptual_weight,
        blur_sigma=blur_sigma,
        learning_rate=settings.learning_rate,
        identity_features=identity_features,
        seed=settings.seed,
    )
    options = LoopOptions(
        steps=settings.steps, checkpoint_every=settings.checkpoint_every, grid_every=settings.grid_every, log_every=settings.log_every
    )
    result = run_training(
        stage,
        batches,
        plan.run_dir,
        options,
        runtime,
        preview.float().div(127.5).sub(1.0),
        {},
        resume=settings.resume,
        reporter=reporter,
        images_per_step=settings.batch_size,
    )
    if runtime.is_main:
        metadata = {
            "kind": "enhance",
            "attribute": plan.attribute.name,
            "mode": plan.mode,
            "region": plan.attribute.region,
            "size": plan.size,
            "variant": plan.transform_metadata.get("variant"),
            "version": __version__,
            "transform_file": plan.transform_path.name,
            "transform_steps": plan.transform_metadata.get("steps"),
            "data": split.summary(),
            "data_folder": str(plan.data or plan.source),
            "loss": (
                {"inside": settings.inside_loss, "perceptual_weight": settings.perceptual_weight if settings.inside_loss == "identity" else 0.0,
                 "mask_feather": settings.mask_feather}
                if plan.mode == "local"
                else {"blur_sigma": blur_sigma, "blur_range": [0.5 * blur_sigma, 1.5 * blur_sigma]}
            ),
            "steps": result.steps,
            "final_losses": {name: round(value, 5) for name, value in result.last_losses.items()},
        }
        save_network(plan.output, enhance, enhance_config, metadata)
    return result
