"""`diat evaluate`: edit the source-side faces of a data set and measure what the edit did.

DATA is an aligned folder written by `diat align` (labels found beside the original photos,
or given), or photos (aligned here in memory, as `diat align` would). With labels, the
*source side* is the faces without the attribute (they get edited) and the *reference side*
the faces with it (real examples for the realism scores). Without labels every face is edited,
and the reference side comes from `--reference` or is absent.

Faces are taken in the order of `data.validation_position` of their photo names, so the first
ones are exactly the held-out slice that no diat training run sees, and `--limit N` picks the
same faces on every run. What is measured is described in metrics.py and in the report.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from diat_cli.attributes import Attribute, resolve_attribute
from diat_cli.data import (
    CELEBA_IDENTITIES_NAME,
    VALIDATION_FRACTION,
    find_celeba_labels,
    load_face,
    parse_utkface_name,
    read_celeba_attributes,
    read_celeba_identities,
    validation_position,
)
from diat_cli.errors import ConfigError, DiatError, ImageReadError
from diat_cli.face.align import alignment_matrix, transform_points, warp_to_crop
from diat_cli.face.identity import SAME_PERSON_THRESHOLD, face_chips, template_landmarks
from diat_cli.imageio import find_images, read_image, write_text_atomic
from diat_cli.manifest import MANIFEST_NAME, face_records
from diat_cli.metrics import (
    attribute_success,
    frechet_distance,
    identity_distances,
    kernel_distance,
    masked_psnr,
    masked_ssim,
    rank1_accuracy,
    share_below,
    skin_tone_shift,
    skin_tone_summary,
    verification_rate,
)
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.report import FacePair, write_report
from diat_cli.settings import EvaluateSettings

UTKFACE_LABELS = "utkface"
PARTNERS_PER_FACE = 3  # other photos of the same person compared with each edit (verification)
REALISM_FEATURES = "dlib ResNet stage-4 features, 256-D"
IDENTITY_NETWORK = "dlib face-recognition ResNet (dlib_face_recognition_resnet_model_v1)"


class EditorLike(Protocol):
    """What evaluate needs of an editor (diat_cli.editing.Editor satisfies it)."""

    size: int

    def __call__(self, crops: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Face:
    """One face of DATA: where its pixels come from and how to label it."""

    name: str  # the original photo's file name: labels, identities and the hash order use it
    shown: str  # how the report names it (crop path, or photo#k)
    crop: Path | None = None  # a crop file of an aligned folder ...
    pixels: np.ndarray | None = None  # ... or the crop itself (photos aligned in memory)
    landmarks: np.ndarray | None = None  # 5 x 2 dlib landmarks in pixels of a crop of side crop_size
    crop_size: int | None = None
    photo: str = ""  # the photo it was cut from (faces of one photo share it)

    def load(self, size: int) -> np.ndarray:
        """size x size x 3 uint8."""
        if self.pixels is not None:
            if self.pixels.shape[0] == size:
                return self.pixels
            from PIL import Image

            return np.asarray(Image.fromarray(self.pixels).resize((size, size), Image.Resampling.BICUBIC))
        return load_face(self.crop, size)

    def landmarks_at(self, size: int) -> np.ndarray:
        """The 5 landmarks in pixels of a size x size crop (the template's when none were kept)."""
        if self.landmarks is None or not self.crop_size:
            return template_landmarks(size).numpy()
        return np.asarray(self.landmarks, dtype=np.float64) * (size / self.crop_size)


@dataclass
class DataSides:
    source: list[Face]
    reference: list[Face]
    everyone: list[Face]  # every usable face of DATA (for other photos of the same person)
    kind: str
    labels: str | None
    identities: dict[str, int] | None


# ---------------------------------------------------------------------------------------- data


def _aligned_faces(folder: Path) -> list[Face]:
    faces = []
    for record in face_records(folder):
        landmarks, matrix = record.get("landmarks"), record.get("matrix")
        points = transform_points(np.asarray(matrix), np.asarray(landmarks)) if landmarks and matrix else None
        faces.append(
            Face(
                name=Path(record["relative"]).name,
                shown=record["crop"],
                crop=folder / record["crop"],
                landmarks=points,
                crop_size=record.get("size"),
                photo=record.get("source", record["relative"]),
            )
        )
    if not faces:
        raise ConfigError(f"{folder}/{MANIFEST_NAME} lists no face crops")
    return faces


def _photo_faces(inputs: list[Path], size: int, detector_name: str, reporter: Reporter) -> list[Face]:
    """Detect and align every face of the photos in memory, as `diat align --size size` would."""
    from diat_cli.face.detect import FaceDetector

    images = find_images(inputs)
    if not images:
        raise ConfigError(f"{', '.join(map(str, inputs))}: no images found")
    detector = FaceDetector(detector_name, upsample=1)
    faces = []
    reporter.start("Finding faces", len(images))
    try:
        for image in images:
            try:
                rgb = read_image(image.path)
            except ImageReadError as error:
                reporter.problem(str(error))
                reporter.advance()
                continue
            found = sorted(detector.detect(rgb), key=lambda face: (face.box[0], face.box[1]))
            for index, detected in enumerate(found):
                matrix = alignment_matrix(detected.landmarks, size)
                faces.append(
                    Face(
                        name=image.path.name,
                        shown=f"{image.relative.as_posix()}#{index}",
                        pixels=warp_to_crop(rgb, matrix, size),
                        landmarks=transform_points(matrix, detected.landmarks),
                        crop_size=size,
                        photo=str(image.path.resolve()),
                    )
                )
            reporter.advance()
    finally:
        reporter.finish()
    if not faces:
        raise DiatError(f"no face found in {', '.join(map(str, inputs))}")
    return faces


def _read_faces(path: Path, size: int, detector: str, reporter: Reporter) -> tuple[list[Face], str]:
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        return _aligned_faces(path), "aligned folder"
    return _photo_faces([path], size, detector, reporter), "photos, aligned in memory"


def _labeller(settings: EvaluateSettings, attribute: Attribute, faces: list[Face]) -> tuple[Callable[[str], str | None] | None, str | None]:
    """A function photo name -> 'source' / 'reference' / None (unlabelled or in neither set), and where labels came from."""
    if settings.labels is not None and str(settings.labels).lower() == UTKFACE_LABELS:
        if attribute.utkface is None:
            raise ConfigError(f"'{attribute.name}' has no UTKFace labels; UTKFace labels only age and gender (old, young, female, male)")

        def utkface_side(name: str) -> str | None:
            label = parse_utkface_name(name)
            return None if label is None else attribute.utkface_side(label.age, label.gender)

        return utkface_side, "UTKFace file names"
    explicit = settings.labels is not None
    labels_path = Path(settings.labels) if explicit else find_celeba_labels([{"source": faces[0].photo}])
    if labels_path is None:
        return None, None
    values = read_celeba_attributes(labels_path).column(attribute.celeba_column)
    if not any(face.name in values for face in faces):
        if explicit:
            raise ConfigError(f"the labels in {labels_path} match no face of {settings.data}; are these the labels of these photos?")
        return None, None

    def celeba_side(name: str) -> str | None:
        value = values.get(name)
        return None if value is None else attribute.celeba_side(value)

    return celeba_side, str(labels_path)


def _identities(settings: EvaluateSettings, labels: str | None, faces: list[Face]) -> dict[str, int] | None:
    if settings.identities is not None:
        return read_celeba_identities(settings.identities)
    candidates = []
    if labels is not None and labels != "UTKFace file names":
        candidates.append(Path(labels).parent / CELEBA_IDENTITIES_NAME)
    photo = Path(faces[0].photo)
    candidates += [photo.parent / CELEBA_IDENTITIES_NAME, photo.parent.parent / CELEBA_IDENTITIES_NAME]
    for candidate in candidates:
        if candidate.is_file():
            identities = read_celeba_identities(candidate)
            return identities if any(face.name in identities for face in faces) else None
    return None


def _hash_order(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda face: (validation_position(face.name), face.shown))


def collect_faces(settings: EvaluateSettings, attribute: Attribute, size: int, reporter: Reporter) -> DataSides:
    """The source-side faces to edit, the reference-side faces, and every face with its labels."""
    faces, kind = _read_faces(settings.data, size, settings.detector, reporter)
    side_of, labels = _labeller(settings, attribute, faces)
    faces_per_photo = Counter(face.photo for face in faces)
    if side_of is None:
        source, reference = faces, []
        kind += ", no labels: every face is edited"
    else:
        # A label describes a photo: with several faces in it there is no telling which one it describes.
        single = [face for face in faces if faces_per_photo[face.photo] == 1]
        source = [face for face in single if side_of(face.name) == "source"]
        reference = [face for face in single if side_of(face.name) == "reference"]
        kind += f", labels from {labels}"
        if not source:
            raise DiatError(f"{settings.data}: no source-side faces (faces without '{attribute.name}') to edit")
    if settings.reference is not None:
        reference, _ = _read_faces(settings.reference, size, settings.detector, reporter)
    if settings.held_out:
        source = [face for face in source if validation_position(face.name) < VALIDATION_FRACTION]
        if not source:
            raise DiatError(f"{settings.data}: none of the source-side faces is in the held-out slice; leave out --held-out")
    source = _hash_order(source)[: settings.limit]
    reference = _hash_order(reference)[: settings.limit]
    identities = _identities(settings, labels, faces)
    everyone = [face for face in faces if faces_per_photo[face.photo] == 1]
    return DataSides(source, reference, everyone, kind, labels, identities)


def _partners(sides: DataSides) -> list[Face]:
    """Up to PARTNERS_PER_FACE other photos of each edited person, in hash order."""
    if not sides.identities:
        return []
    by_person: dict[int, list[Face]] = defaultdict(list)
    for face in _hash_order(sides.everyone):
        person = sides.identities.get(face.name)
        if person is not None:
            by_person[person].append(face)
    chosen: dict[str, Face] = {}
    for face in sides.source:
        person = sides.identities.get(face.name)
        if person is None:
            continue
        others = [other for other in by_person[person] if other.name != face.name][:PARTNERS_PER_FACE]
        for other in others:
            chosen.setdefault(other.shown, other)
    return list(chosen.values())


def evaluated_people(settings: EvaluateSettings, size: int) -> set[int]:
    """The CelebA identities of every face `evaluate` reads with these settings.

    That is the edited faces, the other photos each edit is verified against, and the reference
    faces of the realism scores: a model measured on DATA must be trained on everyone else
    (tools/split_held_out_people.py) for its numbers to be about people it never saw.
    """
    sides = collect_faces(settings, resolve_attribute(settings.attribute), size, SilentReporter())
    if not sides.identities:
        raise DiatError(f"{settings.data}: no identities ({CELEBA_IDENTITIES_NAME}) beside the photos or labels, so people cannot be told apart")
    faces = sides.source + sides.reference + _partners(sides)
    return {sides.identities[face.name] for face in faces if face.name in sides.identities}


# ---------------------------------------------------------------------------------------- networks


def _stack(faces: list[Face], size: int) -> torch.Tensor:
    """N x 3 x size x size uint8."""
    if not faces:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.stack([torch.from_numpy(np.ascontiguousarray(face.load(size))).permute(2, 0, 1) for face in faces])


def _unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float().div(127.5).sub(1.0)


def _bytes(images: torch.Tensor) -> torch.Tensor:
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


@torch.no_grad()
def identity_outputs(network: torch.nn.Module, pixels: torch.Tensor, landmarks: np.ndarray, device: torch.device, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N x 128 descriptors, N x 256 pooled stage-4 features) of uint8 crops N x 3 x S x S.

    landmarks: N x 5 x 2 dlib landmarks in crop pixels; the chips are cut like dlib cuts them.
    """
    descriptors, features = [], []
    for start in range(0, len(pixels), batch_size):
        crops = _unit(pixels[start : start + batch_size])
        chips = face_chips(crops, landmarks[start : start + batch_size]).to(device)
        output, stages = network(chips, return_features=True)
        descriptors.append(output.double().cpu().numpy())
        features.append(stages[3].mean(dim=(2, 3)).double().cpu().numpy())
    if not descriptors:
        return np.empty((0, 128)), np.empty((0, 256))
    return np.concatenate(descriptors), np.concatenate(features)


def _device(name: str) -> torch.device:
    from diat_cli.train.runtime import DEVICES

    if name not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def _finite(value: Any) -> Any:
    """NaN and infinities become None, so metrics.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------- evaluate


def evaluate(
    settings: EvaluateSettings,
    reporter: Reporter | None = None,
    *,
    editor: EditorLike | None = None,
    classifier: Any = None,
    identity_network: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Edit DATA's source-side faces, measure the edits, write metrics.json and report.html.

    editor, classifier, identity_network: already loaded ones (tests, library use); by default
    the editor comes from settings.weights or the attribute's bundled weights, the classifier
    from settings.classifier or the bundled one, and the identity network is dlib's.
    Returns the metrics (as written to metrics.json).
    """
    from diat_cli.classifier import (
        attribute_probability,
        decision_text,
        load_classifier,
        utkface_probability,
    )

    reporter = reporter or SilentReporter()
    attribute = resolve_attribute(settings.attribute)
    device = _device(settings.device)
    editor_description = "given in code"
    if editor is None:
        from diat_cli.editing import find_weights, load_editor

        transform_path, enhance_path = find_weights(attribute.name, settings.weights)
        editor = load_editor(
            attribute.name, settings.weights, device, use_enhance=settings.use_enhance, colour_blur=settings.colour_blur, colour_strength=settings.colour_strength, strength=settings.strength,
            confine=settings.confine,
        )
        editor_description = str(transform_path) + (f" + {enhance_path}" if enhance_path and settings.use_enhance else "")
    size = int(editor.size)
    if classifier is None:
        classifier = load_classifier(settings.classifier, device, size)
    if identity_network is None:
        from diat_cli.face.identity import load_identity_network

        identity_network = load_identity_network(device=device)
    report_dir = settings.resolved_report_dir

    sides = collect_faces(settings, attribute, size, reporter)
    partners = _partners(sides)
    reporter.start("Loading faces", None)
    source_pixels = _stack(sides.source, size)
    reference_pixels = _stack(sides.reference, size)
    partner_pixels = _stack(partners, size)
    reporter.finish()

    # Edit.
    edited_batches = []
    reporter.start(f"Editing ({attribute.name})", len(sides.source))
    edit_seconds = 0.0
    for start in range(0, len(source_pixels), settings.batch_size):
        batch = _unit(source_pixels[start : start + settings.batch_size])
        began = time.perf_counter()
        edited = editor(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        edit_seconds += time.perf_counter() - began
        edited_batches.append(_bytes(edited))
        reporter.advance(len(batch))
    reporter.finish()
    edited_pixels = torch.cat(edited_batches)
    source_unit, edited_unit = _unit(source_pixels), _unit(edited_pixels)  # for the classifier and the pixel metrics

    # Attribute success.
    reporter.start("Classifying", None)
    source_logits, edited_logits = classifier(source_unit), classifier(edited_unit)
    reporter.finish()
    success = {
        "edited": attribute_success(attribute_probability(edited_logits, attribute)),
        "unedited": attribute_success(attribute_probability(source_logits, attribute)),
        "utkface_edited": None,
        "utkface_unedited": None,
    }
    if attribute.utkface is not None and getattr(classifier, "has_utkface_heads", False):
        success["utkface_edited"] = attribute_success(utkface_probability(edited_logits, attribute))
        success["utkface_unedited"] = attribute_success(utkface_probability(source_logits, attribute))

    # Identity.
    reporter.start("Identity network", None)
    source_landmarks = np.stack([face.landmarks_at(size) for face in sides.source])
    source_descriptors, _ = identity_outputs(identity_network, source_pixels, source_landmarks, device, settings.batch_size)
    edited_descriptors, edited_features = identity_outputs(identity_network, edited_pixels, source_landmarks, device, settings.batch_size)
    distances = identity_distances(source_descriptors, edited_descriptors)
    identity: dict[str, Any] = {
        "network": IDENTITY_NETWORK,
        "threshold": SAME_PERSON_THRESHOLD,
        "faces": len(sides.source),
        "mean_distance": float(distances.mean()),
        "median_distance": float(np.median(distances)),
        "share_kept": share_below(distances),
        "rank1": rank1_accuracy(edited_descriptors, source_descriptors),
        "verification_edited": None,
        "verification_unedited": None,
        "verification_pairs": 0,
    }
    if partners:
        partner_landmarks = np.stack([face.landmarks_at(size) for face in partners])
        partner_descriptors, _ = identity_outputs(identity_network, partner_pixels, partner_landmarks, device, settings.batch_size)
        people = [sides.identities.get(face.name, -1) for face in sides.source]
        partner_people = [sides.identities.get(face.name, -2) for face in partners]
        names, partner_names = [face.name for face in sides.source], [face.name for face in partners]
        rate, pairs = verification_rate(edited_descriptors, partner_descriptors, people, partner_people, names, partner_names)
        baseline, _ = verification_rate(source_descriptors, partner_descriptors, people, partner_people, names, partner_names)
        identity.update(verification_edited=rate, verification_unedited=baseline, verification_pairs=pairs)

    # Realism.
    realism: dict[str, Any]
    if len(sides.reference) >= 2 and len(sides.source) >= 2:
        reference_landmarks = np.stack([face.landmarks_at(size) for face in sides.reference])
        _, reference_features = identity_outputs(identity_network, reference_pixels, reference_landmarks, device, settings.batch_size)
        kid, kid_std = kernel_distance(edited_features, reference_features)
        realism = {
            "features": REALISM_FEATURES,
            "frechet_distance": frechet_distance(edited_features, reference_features),
            "kernel_distance": kid,
            "kernel_distance_std": kid_std,
            "edited_faces": len(edited_features),
            "reference_faces": len(reference_features),
        }
    else:
        realism = {"skipped": "fewer than 2 reference-side (real, with the attribute) faces: give labelled DATA or --reference"}
    reporter.finish()

    # Change outside the attribute's region.
    outside = None
    if attribute.region is not None:
        from diat_cli.face.masks import region_mask

        weight = 1.0 - region_mask(attribute.region, size)
        outside = {
            "region": attribute.region,
            "psnr_db": masked_psnr(source_unit, edited_unit, weight),
            "ssim": masked_ssim(source_unit, edited_unit, weight),
        }

    # Colour shift of bare skin, and whether it falls harder on dark skin or light.
    from diat_cli.face.masks import skin_mask

    skin_tone = skin_tone_summary(skin_tone_shift(source_unit, edited_unit, skin_mask(size), settings.batch_size))

    worst_order = np.argsort(-distances, kind="stable")[: settings.worst]
    metrics = _finite(
        {
            "attribute": attribute.name,
            "editor": {"weights": editor_description, "size": size, "colour_blur": getattr(editor, "colour_blur", None), "colour_strength": getattr(editor, "colour_strength", None), "strength": getattr(editor, "strength", None),
                       "confine": getattr(editor, "confine_to", None) is not None, "enhance": getattr(editor, "enhance", None) is not None},
            "classifier": {
                "weights": str(getattr(classifier, "path", None) or "given in code"),
                "decision": decision_text(attribute),
                "held_out_accuracy": getattr(classifier, "metadata", {}).get("held_out_mean_accuracy"),
            },
            "data": {
                "folder": str(settings.data),
                "kind": sides.kind,
                "labels": sides.labels,
                "identities": bool(sides.identities),
                "source_faces": len(sides.source),
                "reference_faces": len(sides.reference),
                "partner_faces": len(partners),
                "held_out_only": settings.held_out,
            },
            "attribute_success": success,
            "identity": identity,
            "outside_region": outside,
            "skin_tone": skin_tone,
            "realism": realism,
            "speed": {
                "faces_per_second": len(sides.source) / edit_seconds if edit_seconds > 0 else None,
                "device": str(device),
                "batch_size": settings.batch_size,
            },
            "worst": [{"face": sides.source[i].shown, "identity_distance": float(distances[i])} for i in worst_order],
        }
    )

    def pair(index: int, caption: str) -> FacePair:
        return FacePair(source_pixels[index].permute(1, 2, 0).numpy(), edited_pixels[index].permute(1, 2, 0).numpy(), caption)

    sample = [pair(i, f"{sides.source[i].shown}: d={distances[i]:.2f}") for i in range(min(settings.sample, len(sides.source)))]
    worst = [pair(int(i), f"{sides.source[i].shown}: d={distances[i]:.2f}") for i in worst_order]
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_report(report_dir / "report.html", metrics, sample, worst)
    return metrics
