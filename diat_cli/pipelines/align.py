"""`diat align`: detect every face in a set of photos and write canonical crops plus a manifest."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diat_cli.errors import ConfigError, ImageReadError
from diat_cli.face.align import alignment_matrix, warp_to_crop
from diat_cli.face.detect import DetectedFace, FaceDetector
from diat_cli.imageio import ImageFile, find_images, read_image, write_image, write_text_atomic
from diat_cli.manifest import MANIFEST_NAME, encode_record, read_manifest
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.settings import AlignSettings


@dataclass
class AlignSummary:
    photos: int = 0  # photos read this run
    faces: int = 0  # crops written this run
    photos_without_face: int = 0
    small_faces_skipped: int = 0
    skipped_existing: int = 0  # photos already in the manifest (--skip-existing)
    failures: list[str] = field(default_factory=list)  # one line per unreadable file

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


@dataclass(frozen=True)
class _Job:
    image: ImageFile
    crop_stem: Path  # crop path without "_k.png", relative to the output folder


def check_output_location(inputs: tuple[Path, ...], output: Path) -> None:
    """Refuse an output folder inside an input folder: a rerun would read its own crops."""
    resolved_output = output.resolve()
    for entry in inputs:
        entry = entry.resolve()
        if entry.is_dir() and (resolved_output == entry or entry in resolved_output.parents):
            raise ConfigError(f"output folder {output} is inside input folder {entry}; choose another place")


def plan_jobs(images: list[ImageFile]) -> list[_Job]:
    """Crop name stems mirroring the input tree, disambiguated when two photos share a stem."""
    stems = [image.relative.with_suffix("") for image in images]
    counts = Counter(stems)
    named = [
        image.relative.parent / image.relative.name.replace(".", "_") if counts[stem] > 1 else stem
        for image, stem in zip(images, stems)
    ]
    # Photos named one by one from different folders can share a whole name (a/x.jpg, b/x.jpg):
    # number the later ones, skipping numbers another photo already uses.
    taken = set(named)
    seen: set[Path] = set()
    jobs = []
    for image, stem in zip(images, named):
        if stem in seen:
            number = 2
            while stem.parent / f"{stem.name}-{number}" in taken:
                number += 1
            stem = stem.parent / f"{stem.name}-{number}"
            taken.add(stem)
        seen.add(stem)
        jobs.append(_Job(image, stem))
    return jobs


@dataclass(frozen=True)
class FoundFaces:
    """The faces of one photo that a command will use, and the ones it had to leave out."""

    kept: list[DetectedFace]  # left to right (then top to bottom), so face k is predictable
    too_small: list[DetectedFace]  # narrower than min_face
    min_face: int = 0

    @property
    def note(self) -> str | None:
        """Why no face is kept, or None when some are."""
        if self.kept:
            return None
        return "no face found" if not self.too_small else f"faces smaller than {self.min_face} px only"


def find_faces(detector: FaceDetector, rgb: np.ndarray, min_face: int = 0, largest_only: bool = False) -> FoundFaces:
    """Detect faces in an H x W x 3 uint8 photo and keep those `diat align` and `diat transfer` use.

    Faces narrower than min_face pixels are left out; largest_only keeps only the widest one.
    """
    faces = detector.detect(rgb)
    kept = [face for face in faces if face.width >= min_face]
    too_small = [face for face in faces if face.width < min_face]
    if largest_only and kept:
        kept = [max(kept, key=lambda face: face.width)]
    kept.sort(key=lambda face: (face.box[0], face.box[1]))
    return FoundFaces(kept, too_small, min_face)


def face_fields(face: DetectedFace) -> dict:
    """A detected face as manifest fields: box, landmarks (5 x 2) and score."""
    return {"box": list(face.box), "landmarks": face.landmarks.round(2).tolist(), "score": round(face.score, 4)}


_worker_detector: FaceDetector | None = None
_worker_settings: AlignSettings | None = None


def _init_worker(settings: AlignSettings) -> None:
    global _worker_detector, _worker_settings
    _worker_settings = settings
    _worker_detector = FaceDetector(settings.detector, settings.upsample)


def _align_one(job: _Job) -> tuple[list[dict], int, str | None]:
    """Align one photo: (manifest lines, small faces skipped, error message or None)."""
    settings, detector = _worker_settings, _worker_detector
    try:
        rgb = read_image(job.image.path)
    except ImageReadError as error:
        return [], 0, str(error)
    base = {
        "source": str(job.image.path.resolve()),
        "relative": job.image.relative.as_posix(),
        "source_size": [int(rgb.shape[1]), int(rgb.shape[0])],
        "size": settings.size,
    }
    found = find_faces(detector, rgb, settings.min_face, settings.largest_only)
    small = len(found.too_small)
    if not found.kept:
        return [{**base, "crop": None, "face_index": None, "note": found.note}], small, None
    kept = found.kept
    records = []
    for index, face in enumerate(kept):
        matrix = alignment_matrix(face.landmarks, settings.size)
        crop_path = job.crop_stem.parent / f"{job.crop_stem.name}_{index}.png"
        write_image(settings.output / crop_path, warp_to_crop(rgb, matrix, settings.size))
        records.append(
            {
                **base,
                "crop": crop_path.as_posix(),
                "face_index": index,
                "faces_in_photo": len(kept),
                **face_fields(face),
                "matrix": matrix.tolist(),
            }
        )
    return records, small, None


def align_photos(settings: AlignSettings, reporter: Reporter | None = None) -> AlignSummary:
    """Align every face in settings.inputs into settings.output; never writes into the inputs."""
    reporter = reporter or SilentReporter()
    check_output_location(settings.inputs, settings.output)
    manifest_path = settings.output / MANIFEST_NAME
    previous: list[dict] = []
    if manifest_path.exists():
        if settings.skip_existing:
            previous = read_manifest(settings.output)
        elif not settings.overwrite:
            raise ConfigError(
                f"{settings.output} already holds an aligned set ({MANIFEST_NAME}); "
                "use --skip-existing to resume it or --overwrite to replace it"
            )
    images = find_images(list(settings.inputs))
    done_sources = {record["source"] for record in previous}
    jobs = [job for job in plan_jobs(images) if str(job.image.path.resolve()) not in done_sources]
    summary = AlignSummary(skipped_existing=len(images) - len(jobs))
    settings.output.mkdir(parents=True, exist_ok=True)

    records = list(previous)
    # Lines are appended as photos finish, so an interrupted run can be resumed;
    # the sorted manifest replaces this file atomically at the end.
    with open(manifest_path, "w", encoding="utf-8") as journal:
        journal.writelines(encode_record(record) for record in previous)
        journal.flush()
        reporter.start("Aligning faces", len(jobs))
        try:
            for photo_records, small, error in _run_jobs(jobs, settings):
                if error:
                    summary.failures.append(error)
                    reporter.problem(error)
                else:
                    summary.photos += 1
                    summary.small_faces_skipped += small
                    faces = [record for record in photo_records if record["crop"]]
                    summary.faces += len(faces)
                    summary.photos_without_face += not faces
                    records.extend(photo_records)
                    journal.writelines(encode_record(record) for record in photo_records)
                    journal.flush()
                reporter.advance()
        finally:
            reporter.finish()
    records.sort(key=lambda record: (record["relative"], record["source"], record.get("face_index") or 0))
    write_text_atomic(manifest_path, "".join(encode_record(record) for record in records))
    return summary


def _run_jobs(jobs: list[_Job], settings: AlignSettings):
    """Yield each job's result; a process pool when more than one worker is useful."""
    workers = min(settings.workers, max(1, len(jobs)))
    if workers == 1:
        _init_worker(settings)
        for job in jobs:
            yield _align_one(job)
        return
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        yield from pool.imap_unordered(_align_one, jobs, chunksize=4)
