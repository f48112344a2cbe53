"""`diat train-transform`: data, networks and the loop for stage 1, callable from Python."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from diat_cli import __version__
from diat_cli.attributes import attribute_names, kebab_case, resolve_attribute
from diat_cli.checkpoints import load_network, read_metadata, save_network
from diat_cli.data import AttributeSplit, FaceImages, split_folders, split_source_reference
from diat_cli.errors import ConfigError
from diat_cli.imageio import write_text_atomic
from diat_cli.nets.discriminator import AttributeDiscriminator
from diat_cli.nets.transform import TransformNetwork
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.settings import TrainTransformSettings
from diat_cli.train.batches import StepBatches
from diat_cli.train.denoiser import DENOISER_CONFIG, train_denoiser
from diat_cli.train.loop import LoopOptions, TrainingResult, latest_checkpoint, run_training
from diat_cli.train.runtime import Runtime, broadcast_parameters, seed_everything, setup_runtime
from diat_cli.train.transform import IdentityFeatures, TransformStage

PREVIEW_FACES = 8
UTKFACE_LABELS = "utkface"
RESUME_DEFAULTS = {"fuse_mask": False, "spectral_norm": False}  # settings added after some runs were written
FLAG_NAMES = {"fuse_mask": "mask", "spectral_norm": "spectral-norm"}  # settings whose command-line flag has another name


def attribute_name(settings: TrainTransformSettings) -> str:
    """The canonical name of a known attribute; with two hand-sorted folders any name will do (a custom attribute)."""
    try:
        return resolve_attribute(settings.attribute).name
    except ConfigError as unknown:
        if settings.source is None:  # labelled data: only known attributes have labels
            raise
        name = kebab_case(settings.attribute)
        if difflib.get_close_matches(name, attribute_names(include_aliases=True), n=1, cutoff=0.85):
            raise unknown from None  # most likely a typo of a known attribute, not a new one
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ConfigError(f"--attr '{settings.attribute}': a custom attribute's name may use only letters, digits and dashes") from None
        return name


def load_split(settings: TrainTransformSettings) -> AttributeSplit:
    """Source and reference faces, with the validation slice held out."""
    if settings.source is not None:
        return split_folders(settings.source, settings.reference, validation_fraction=settings.validation_fraction)
    utkface = settings.labels is not None and str(settings.labels).lower() == UTKFACE_LABELS
    return split_source_reference(
        settings.data,
        settings.attribute,
        labels_path=None if utkface else settings.labels,
        utkface=utkface,
        validation_fraction=settings.validation_fraction,
    )


def prepare_run_dir(settings: TrainTransformSettings) -> Path:
    """Refuse to clobber an earlier run unless --resume or --overwrite says what to do with it."""
    run_dir = settings.resolved_run_dir
    has_run = (run_dir / "config.json").exists() or latest_checkpoint(run_dir) is not None
    if settings.resume:
        if latest_checkpoint(run_dir) is None:
            raise ConfigError(f"{run_dir}: no checkpoint to resume from")
        saved = json.loads((run_dir / "config.json").read_text())
        for key in ("attribute", "variant", "size", "batch_size", "gan", "fuse_mask", "spectral_norm", "transform_channels", "discriminator_channels"):
            if saved.get(key, RESUME_DEFAULTS.get(key)) != _json_ready(asdict(settings))[key]:
                flag = FLAG_NAMES.get(key, key.replace("_", "-"))
                raise ConfigError(f"{run_dir}: --{flag} differs from the run being resumed ({saved.get(key)})")
    elif has_run and not settings.overwrite:
        raise ConfigError(f"{run_dir} already holds a training run; use --resume to continue it or --overwrite to start again")
    return run_dir


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}


def train_transform(settings: TrainTransformSettings, reporter: Reporter | None = None) -> TrainingResult | None:
    """Train T (and D) as settings say; returns None for --dry-run after writing config.json."""
    reporter = reporter or SilentReporter()
    attribute = attribute_name(settings)
    run_dir = prepare_run_dir(settings)
    initial_files = _initial_weight_files(settings.init) if settings.init is not None else None  # a typo fails before config.json
    split = load_split(settings)
    runtime = setup_runtime(settings.device, settings.precision, settings.channels_last)
    config = {**_json_ready(asdict(settings)), "attribute": attribute, "run_dir": str(run_dir), "data_summary": split.summary(),
              "runtime": {"device": str(runtime.device), "precision": runtime.precision, "world_size": runtime.world_size},
              "diat_version": __version__, "initialised_from": _start_record(settings, run_dir, initial_files)}
    if runtime.is_main and not settings.resume:
        write_text_atomic(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    if settings.dry_run:
        return None

    seed_everything(settings.seed)
    reporter.start("Loading faces", None)
    source = FaceImages(split.train_source, settings.size, preload=True).pixels
    reference = FaceImages(split.train_reference, settings.size, preload=True).pixels
    preview = FaceImages(split.val_source[:PREVIEW_FACES], settings.size, flip=False, preload=True).pixels
    reporter.finish()
    for name, images in (("source", source), ("reference", reference)):
        if len(images) < settings.batch_size * runtime.world_size:
            raise ConfigError(f"only {len(images)} {name} faces for training: fewer than one batch of {settings.batch_size * runtime.world_size}")
    source_batches = StepBatches(source, settings.batch_size, settings.seed, runtime.rank, runtime.world_size)
    reference_batches = StepBatches(reference, settings.batch_size, settings.seed + 1, runtime.rank, runtime.world_size)

    transform_config = {"channels": settings.transform_channels}
    if settings.fuse_mask:
        transform_config["fuse_mask"] = True
    discriminator_config = {"channels": settings.discriminator_channels, "image_size": settings.size}
    if settings.spectral_norm:
        discriminator_config["spectral_norm"] = True
    transform = TransformNetwork(**transform_config)
    discriminator = AttributeDiscriminator(**discriminator_config)
    if initial_files is not None:
        load_initial_weights(transform, discriminator, *initial_files)
    transform = runtime.prepare(transform)
    discriminator = runtime.prepare(discriminator)
    broadcast_parameters([transform, discriminator], runtime)

    identity_features, denoiser = None, None
    if settings.variant == "diat":
        from diat_cli.face.identity import load_identity_network

        identity_features = IdentityFeatures(runtime.prepare(load_identity_network()))
        denoiser = _cached_denoiser(run_dir, settings, runtime, source_batches, identity_features, reporter)

    if settings.compile:
        transform = torch.compile(transform, dynamic=False)
        discriminator = torch.compile(discriminator, dynamic=False)

    stage = TransformStage(
        transform,
        discriminator,
        runtime,
        {"transform": transform_config, "discriminator": discriminator_config},
        variant=settings.variant,
        gan=settings.gan,
        learning_rate=settings.learning_rate,
        adversarial_weight=settings.adversarial_weight,
        identity_weight=settings.identity_weight,
        smooth_weight=settings.smooth_weight,
        gradient_penalty_weight=settings.gradient_penalty_weight,
        mask_weight=settings.mask_weight,
        edit_tv_weight=settings.edit_tv_weight,
        edit_chroma_weight=settings.edit_chroma_weight,
        edit_symmetry_weight=settings.edit_symmetry_weight,
        identity_embedding_weight=settings.identity_embedding_weight,
        identity_features=identity_features,
        denoiser=denoiser,
    )
    metadata = {
        "kind": "transform",
        "attribute": attribute,
        "variant": settings.variant,
        "size": settings.size,
        "version": __version__,
        "data": config["data_summary"],
        "data_folder": str(settings.data or settings.source),
        "loss_weights": {
            "adversarial": settings.adversarial_weight,
            "identity": settings.identity_weight,
            "smooth": settings.smooth_weight if settings.variant == "diat" else 0.0,
            "gradient_penalty": settings.gradient_penalty_weight if settings.gan == "wgan-gp" else 0.0,
            "mask": settings.mask_weight if settings.fuse_mask else 0.0,
            "edit_tv": settings.edit_tv_weight,
            "edit_chroma": settings.edit_chroma_weight,
            "edit_symmetry": settings.edit_symmetry_weight,
            "identity_embedding": settings.identity_embedding_weight,
        },
        "fuse_mask": settings.fuse_mask,
        "spectral_norm": settings.spectral_norm,
        "gan": settings.gan,
        "initialised_from": config["initialised_from"],
    }
    options = LoopOptions(
        steps=settings.steps,
        checkpoint_every=settings.checkpoint_every,
        grid_every=settings.grid_every,
        log_every=settings.log_every,
        exported=("transform",),
    )
    return run_training(
        stage,
        lambda step: (source_batches(step), reference_batches(step)),
        run_dir,
        options,
        runtime,
        to_unit(preview),
        metadata,
        resume=settings.resume,
        reporter=reporter,
        images_per_step=settings.batch_size,
    )


def _initial_weight_files(init: Path) -> tuple[Path, Path | None]:
    """Where --init's T and D weights are: a weights file, a snapshot/checkpoint folder or a run folder."""
    init = Path(init)
    if init.is_file():
        sibling = init.parent / "discriminator.safetensors"
        return init, sibling if sibling.is_file() else None
    if not init.is_dir():
        # The newest steps of a run sit in checkpoints/, not snapshots/: point there rather than just fail.
        checkpoint_twin = init.parent.parent / "checkpoints" / init.name
        hint = f" (did you mean {checkpoint_twin}?)" if init.parent.name == "snapshots" and checkpoint_twin.is_dir() else ""
        raise ConfigError(
            f"{init}: --init needs a run folder, a snapshots/ or checkpoints/ step folder or a transform.safetensors, and this does not exist{hint}"
        )
    if not (init / "transform.safetensors").is_file():
        raise ConfigError(f"{init}: no transform.safetensors in this folder to start from")
    if (init / "discriminator.safetensors").is_file():
        return init / "transform.safetensors", init / "discriminator.safetensors"
    checkpoint = latest_checkpoint(init)  # a finished run keeps D only in its checkpoints
    discriminator = checkpoint[0] / "discriminator.safetensors" if checkpoint else None
    return init / "transform.safetensors", discriminator if discriminator and discriminator.is_file() else None


def _start_record(settings: TrainTransformSettings, run_dir: Path, initial_files: tuple[Path, Path | None] | None) -> dict[str, Any] | None:
    """What --init started from, for config.json and the final metadata; a resumed run keeps its first record."""
    if settings.resume:
        return json.loads((run_dir / "config.json").read_text()).get("initialised_from")
    if initial_files is None:
        return None
    transform_file, discriminator_file = initial_files
    return {
        "transform": str(transform_file),
        "discriminator": str(discriminator_file) if discriminator_file else None,
        "steps": read_metadata(transform_file).get("steps"),
    }


def load_initial_weights(
    transform: torch.nn.Module, discriminator: torch.nn.Module, transform_file: Path, discriminator_file: Path | None
) -> None:
    """Copy an earlier run's T (and D, when found) into the new networks for --init.

    Starting D from the trained one matters: a random D would give T meaningless
    gradients until it caught up, undoing the fine-tuning's starting point.
    """
    for network, path in ((transform, transform_file), (discriminator, discriminator_file)):
        if path is None:
            continue
        initial, metadata = load_network(path)
        if type(initial) is not type(network):
            raise ConfigError(f"{path}: --init needs {type(network).__name__} weights, got {metadata.get('class')}")
        try:
            network.load_state_dict(initial.state_dict())
        except RuntimeError:
            raise ConfigError(
                f"{path}: --init weights were trained with other settings ({metadata.get('config')}); "
                "use the same --transform-channels, --discriminator-channels, --mask, --spectral-norm and --size"
            ) from None


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float().div(127.5).sub(1.0)


def _cached_denoiser(run_dir, settings, runtime: Runtime, batches, identity_features, reporter):
    """Train the DIAT smoothness network f once per run and keep it in the run folder."""
    path = run_dir / "denoiser.safetensors"
    if path.exists():
        denoiser, _ = load_network(path, runtime.device)
        denoiser = runtime.prepare(denoiser)
    else:
        denoiser = train_denoiser(batches, identity_features, runtime, settings.denoiser_steps, reporter=reporter)
        if runtime.is_main:
            save_network(path, denoiser, DENOISER_CONFIG, {"kind": "denoiser", "steps": settings.denoiser_steps, "size": settings.size})
    for parameter in denoiser.parameters():
        parameter.requires_grad_(False)
    return denoiser.eval()
