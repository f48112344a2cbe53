"""`diat train-classifier`: the attribute classifier that `diat evaluate` judges edits with.

Trains on aligned CelebA faces (all 40 attributes) and aligned UTKFace faces (age group and
gender from the file names) with the shared training loop, then measures accuracy per
attribute on the held-out slice (photo names whose hash falls under the validation fraction:
the same slice every diat command holds out) and, with --test, on a separate labelled folder.
Writes RUN_DIR/classifier.safetensors (metadata: the accuracies) and RUN_DIR/accuracy.json.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from diat_cli import __version__
from diat_cli.attributes import CELEBA_COLUMNS
from diat_cli.checkpoints import load_network, save_network
from diat_cli.data import (
    FaceImages,
    find_celeba_labels,
    hold_out,
    parse_utkface_name,
    read_celeba_attributes,
)
from diat_cli.errors import ConfigError
from diat_cli.imageio import find_images, write_text_atomic
from diat_cli.manifest import MANIFEST_NAME, face_records
from diat_cli.nets.classifier import AttributeClassifier
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.settings import TrainClassifierSettings
from diat_cli.train.classifier import (
    ClassifierLabels,
    ClassifierStage,
    LabelledBatches,
    accuracy_report,
    positive_weights,
    predict,
)
from diat_cli.train.loop import (
    LoopOptions,
    TrainingResult,
    latest_checkpoint,
    run_training,
)
from diat_cli.train.runtime import broadcast_parameters, seed_everything, setup_runtime

PREVIEW_FACES = 8
LICENSE_NOTE = "trained on CelebA and/or UTKFace: non-commercial research use only"


@dataclass(frozen=True)
class LabelledFaces:
    """Crop paths with their labels, split into training and held-out faces."""

    train_paths: tuple[Path, ...]
    train_labels: ClassifierLabels
    held_out_paths: tuple[Path, ...]
    held_out_labels: ClassifierLabels


@dataclass
class ClassifierTrainingResult:
    training: TrainingResult
    accuracy: dict[str, Any]  # {"held_out": accuracy_report, "test": accuracy_report or None}
    weights: Path


def _single_face_crops(folder: Path) -> list[tuple[str, Path]]:
    """(photo name, crop) of an aligned folder, photos with several faces left out (a label
    describes a photo); a folder without a manifest contributes every image in it."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    if not (folder / MANIFEST_NAME).is_file():
        return [(image.path.name, image.path) for image in find_images([folder])]
    records = face_records(folder)
    per_photo = Counter(record["source"] for record in records)
    return [
        (Path(record["relative"]).name, folder / record["crop"])
        for record in records
        if per_photo[record["source"]] == 1 and (record.get("faces_in_photo") or 1) == 1
    ]


def celeba_faces(folder: Path, labels_path: Path | None) -> tuple[list[tuple[str, Path]], torch.Tensor]:
    """(photo name, crop) pairs of a CelebA aligned folder and their N x 40 labels (+1 / -1, CELEBA_COLUMNS order)."""
    crops = _single_face_crops(folder)
    if labels_path is None:
        records = face_records(folder) if (folder / MANIFEST_NAME).is_file() else []
        labels_path = find_celeba_labels(records) if records else None
    if labels_path is None:
        raise ConfigError(f"no CelebA labels for {folder}: give --labels list_attr_celeba.txt")
    table = read_celeba_attributes(labels_path)
    missing = [column for column in CELEBA_COLUMNS if column not in table.columns]
    if missing:
        raise ConfigError(f"{labels_path}: lacks CelebA columns {', '.join(missing[:5])}")
    order = [table.columns.index(column) for column in CELEBA_COLUMNS]
    rows = {name: index for index, name in enumerate(table.files)}
    kept = [(name, path) for name, path in crops if name in rows]
    if not kept:
        raise ConfigError(f"the labels in {labels_path} match no face of {folder}; are these the labels of these photos?")
    values = torch.from_numpy(table.values[[rows[name] for name, _ in kept]][:, order].copy())
    return kept, values


def utkface_faces(folder: Path) -> tuple[list[tuple[str, Path]], list[int], list[int]]:
    """(photo name, crop) pairs of a UTKFace aligned folder, with ages and genders from the names."""
    kept, ages, genders = [], [], []
    for name, path in _single_face_crops(folder):
        label = parse_utkface_name(name)
        if label is not None:
            kept.append((name, path))
            ages.append(label.age)
            genders.append(label.gender)
    if not kept:
        raise ConfigError(f"{folder}: no face has a UTKFace file name (AGE_GENDER_RACE_DATE.jpg.chip.jpg)")
    return kept, ages, genders


def _split(items: list[tuple[str, Path]], labels: ClassifierLabels, fraction: float) -> tuple[list[Path], ClassifierLabels, list[Path], ClassifierLabels]:
    train, held = hold_out(items, fraction, minimum=0)
    index_of = {path: index for index, (_, path) in enumerate(items)}
    train_index = torch.tensor([index_of[path] for path in train], dtype=torch.long)
    held_index = torch.tensor([index_of[path] for path in held], dtype=torch.long)
    return train, labels[train_index], held, labels[held_index]


def load_training_faces(settings: TrainClassifierSettings) -> LabelledFaces:
    """Every --celeba and --utkface face with its labels, the held-out slice set apart."""
    train_paths, train_labels, held_paths, held_labels = [], [], [], []
    parts = []
    for folder in settings.celeba:
        items, values = celeba_faces(folder, settings.labels)
        parts.append((items, ClassifierLabels.from_celeba(values)))
    for folder in settings.utkface:
        items, ages, genders = utkface_faces(folder)
        parts.append((items, ClassifierLabels.from_utkface(ages, genders)))
    for items, labels in parts:
        train, train_part, held, held_part = _split(items, labels, settings.validation_fraction)
        train_paths += train
        held_paths += held
        train_labels.append(train_part)
        held_labels.append(held_part)
    if len(train_paths) < settings.batch_size:
        raise ConfigError(f"only {len(train_paths)} training faces: fewer than one batch of {settings.batch_size}")
    return LabelledFaces(
        tuple(train_paths), ClassifierLabels.concatenate(train_labels), tuple(held_paths), ClassifierLabels.concatenate(held_labels)
    )


def prepare_run_dir(settings: TrainClassifierSettings) -> Path:
    """Refuse to clobber an earlier run unless --resume or --overwrite says what to do with it."""
    run_dir = settings.resolved_run_dir
    has_run = (run_dir / "config.json").exists() or latest_checkpoint(run_dir) is not None
    if settings.resume:
        if latest_checkpoint(run_dir) is None:
            raise ConfigError(f"{run_dir}: no checkpoint to resume from")
        saved = json.loads((run_dir / "config.json").read_text())
        for key in ("size", "channels", "batch_size"):
            if saved.get(key) != getattr(settings, key):
                raise ConfigError(f"{run_dir}: --{key.replace('_', '-')} differs from the run being resumed ({saved.get(key)})")
    elif has_run and not settings.overwrite:
        raise ConfigError(f"{run_dir} already holds a training run; use --resume to continue it or --overwrite to start again")
    return run_dir


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [convert(item) for item in value]
        return value

    return {key: convert(value) for key, value in values.items()}


def _pixels(paths, size: int) -> torch.Tensor:
    return FaceImages(paths, size, flip=False, preload=True).pixels


def _load_initial_weights(network: AttributeClassifier, path: Path) -> None:
    """Copy a saved classifier's weights into `network` (--init); the width must match.

    The size may differ: the 64 and 128 px networks have the same layers (only the stem's
    stride differs), so a 128 px classifier can start from the 64 px one and fine-tune.
    """
    from diat_cli.classifier import find_classifier

    initial, metadata = load_network(find_classifier(path))
    if not isinstance(initial, AttributeClassifier):
        raise ConfigError(f"{path}: --init needs an attribute classifier, got {metadata.get('class')} {metadata.get('config')}")
    try:
        network.load_state_dict(initial.state_dict())
    except RuntimeError:
        raise ConfigError(f"{path}: --init weights have another width than --channels {network.heads.in_features // 8}") from None


def train_classifier(settings: TrainClassifierSettings, reporter: Reporter | None = None) -> ClassifierTrainingResult | None:
    """Train the classifier as settings say; returns None for --dry-run after writing config.json."""
    reporter = reporter or SilentReporter()
    run_dir = prepare_run_dir(settings)
    faces = load_training_faces(settings)
    test_items = celeba_faces(settings.test, settings.test_labels) if settings.test is not None else None
    runtime = setup_runtime(settings.device, settings.precision, settings.channels_last)
    counts = {
        "train_faces": len(faces.train_paths),
        "held_out_faces": len(faces.held_out_paths),
        "celeba_train_faces": int((faces.train_labels.celeba != 0).all(dim=1).sum()),
        "utkface_train_faces": int((faces.train_labels.age != -1).sum()),
        "test_faces": len(test_items[0]) if test_items else 0,
    }
    config = {
        **_json_ready(asdict(settings)),
        "run_dir": str(run_dir),
        "data_summary": counts,
        "runtime": {"device": str(runtime.device), "precision": runtime.precision, "world_size": runtime.world_size},
        "diat_version": __version__,
    }
    if runtime.is_main and not settings.resume:
        write_text_atomic(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    if settings.dry_run:
        return None

    seed_everything(settings.seed)
    reporter.start("Loading faces", None)
    train_pixels = _pixels(faces.train_paths, settings.size)
    held_pixels = _pixels(faces.held_out_paths, settings.size)
    reporter.finish()
    batches = LabelledBatches(train_pixels, faces.train_labels, settings.batch_size, settings.seed, runtime.rank, runtime.world_size)

    network_config = {"channels": settings.channels, "image_size": settings.size}
    network = AttributeClassifier(**network_config)
    if settings.init is not None:
        _load_initial_weights(network, settings.init)
    classifier = runtime.prepare(network)
    broadcast_parameters([classifier], runtime)
    pos_weight = positive_weights(faces.train_labels) if settings.balance else None
    stage = ClassifierStage(
        classifier, runtime, network_config, settings.steps, learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay, pos_weight=pos_weight,
    )
    preview = train_pixels[:PREVIEW_FACES].float().div(127.5).sub(1.0)
    options = LoopOptions(
        steps=settings.steps,
        checkpoint_every=settings.checkpoint_every,
        grid_every=settings.steps,
        log_every=settings.log_every,
        exported=(),
    )
    training = run_training(
        stage, batches, run_dir, options, runtime, preview, {}, resume=settings.resume, reporter=reporter, images_per_step=settings.batch_size
    )

    reporter.start("Measuring accuracy", None)
    accuracy: dict[str, Any] = {"held_out": accuracy_report(predict(classifier, held_pixels, runtime), faces.held_out_labels), "test": None}
    if test_items is not None:
        items, values = test_items
        test_pixels = _pixels([path for _, path in items], settings.size)
        accuracy["test"] = accuracy_report(predict(classifier, test_pixels, runtime), ClassifierLabels.from_celeba(values))
        accuracy["test"]["folder"] = str(settings.test)
    reporter.finish()

    weights = run_dir / "classifier.safetensors"
    if runtime.is_main:
        held = accuracy["held_out"]
        metadata = {
            "kind": "classifier",
            "size": settings.size,
            "version": __version__,
            "steps": training.steps,
            "celeba_faces": counts["celeba_train_faces"],
            "utkface_faces": counts["utkface_train_faces"],
            "data_folders": [Path(folder).name for folder in (*settings.celeba, *settings.utkface)],  # names only: no local paths in shipped files
            "balanced_loss": settings.balance,
            "initialised_from": Path(settings.init).name if settings.init else None,
            "held_out_mean_accuracy": held["celeba_mean"],
            "held_out_balanced_accuracy": held["celeba_balanced_mean"],
            "held_out_age_group_accuracy": (held["age_group"] or {}).get("accuracy"),
            "held_out_gender_accuracy": (held["gender"] or {}).get("accuracy"),
            "test_mean_accuracy": accuracy["test"]["celeba_mean"] if accuracy["test"] else None,
            "license": LICENSE_NOTE,
            "final_losses": {k: round(v, 5) for k, v in training.last_losses.items()},
        }
        save_network(weights, classifier, network_config, metadata, dtype=torch.float16 if settings.half else None)
        write_text_atomic(run_dir / "accuracy.json", json.dumps(accuracy, indent=2) + "\n")
    return ClassifierTrainingResult(training, accuracy, weights)
