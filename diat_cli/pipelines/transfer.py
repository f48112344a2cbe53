"""`diat transfer`: edit every face in a set of photos and write the photos back, same size and format.

Per photo: read (the shared strict reader), detect and align each face exactly as `diat align`
does (`find_faces`, `alignment_matrix`, `warp_to_crop`), run the crops through T (and E when the
weights have one) in batches, paste each change back by the inverse of the face's alignment
matrix (`diat_cli.face.paste`: feathered head mask, colour matching, only the change is
upsampled so the photo keeps its resolution), and write the photo in its original size and
format (JPEG with its own quantisation tables, colour profile and EXIF kept).

Speed: detection, the expensive part on CPU, runs in a process pool; the network and the
pasting run in this process at the same time, taking batches of whatever faces are ready, so
neither side waits for the other. At most a few photos per worker are in flight, so memory stays
bounded for any number of photos.

Layout of OUTPUT (one attribute): the photos mirrored from the inputs, `manifest.jsonl`,
`_sheets/` (--sheet: original | edited) and `_crops/` (--save-crops: aligned before and after
crops). Several attributes: the same under OUTPUT/<attribute>/ for each.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from diat_cli.errors import ConfigError, DiatError, ImageReadError
from diat_cli.face.align import alignment_matrix, warp_to_crop
from diat_cli.face.detect import FaceDetector
from diat_cli.face.paste import head_mask, paste_edit
from diat_cli.imageio import ImageFile, find_images, read_image, temporary_beside, write_image, write_text_atomic
from diat_cli.manifest import MANIFEST_NAME, encode_record, read_manifest
from diat_cli.pipelines.align import check_output_location, face_fields, find_faces, plan_jobs
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.settings import TransferSettings

WRITABLE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}
SHEETS_FOLDER = "_sheets"
CROPS_FOLDER = "_crops"
MIN_CROP_SIZE = 128  # --save-crops writes crops at least this large (the `diat align` default)

# Share of a CPU's cores that the network needs next to HOG detection (upsample 1) for a
# 128 px network, measured on this project's 2-core machine: detection ~0.11 core-s per
# 512 px photo, T ~0.07 core-s per face. It scales with the network's pixel count.
NETWORK_SHARE_AT_128 = 0.4


@dataclass
class TransferSummary:
    photos: int = 0  # photos read this run
    photos_edited: int = 0  # photos with at least one face edited
    faces: int = 0  # faces edited (each counted once, however many attributes)
    photos_without_face: int = 0  # no usable face: copied unchanged (or skipped with --skip-unchanged)
    small_faces_skipped: int = 0  # faces narrower than --min-face
    skipped_existing: int = 0  # photos already done (--skip-existing)
    failures: list[str] = field(default_factory=list)  # one line per file that could not be read or written
    notes: list[str] = field(default_factory=list)  # one line per photo left unchanged, and why
    outputs: list[Path] = field(default_factory=list)  # one folder per attribute
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


@dataclass(frozen=True)
class EditorPlan:
    """One editor of the run: what it is called, where its weights are, where its photos go."""

    label: str  # the attribute, or a name from the weights when two share one
    attribute: str | None  # as asked with --attr (None: from the weights)
    weights: Path | None  # as given with --weights (None: bundled)
    transform: Path
    enhance: Path | None
    size: int
    root: Path  # output folder of this editor

    @property
    def weights_name(self) -> str:
        return str(self.weights) if self.weights is not None else f"bundled:{self.attribute}"


def plan_editors(settings: TransferSettings) -> list[EditorPlan]:
    """Find every editor's weights and size (metadata only) before any work; ConfigError when missing."""
    from diat_cli.checkpoints import read_metadata
    from diat_cli.editing import find_weights

    pairs: list[tuple[str | None, Path | None]]
    if settings.weights:
        attributes = settings.attributes or (None,) * len(settings.weights)
        pairs = list(zip(attributes, settings.weights))
    else:
        pairs = [(attribute, None) for attribute in settings.attributes]
    found = []
    for attribute, weights in pairs:
        try:
            transform, enhance = find_weights(attribute, weights)
        except ConfigError:
            raise
        except DiatError as error:  # a missing weights file or bundled model: a bad argument
            raise ConfigError(str(error)) from None
        metadata = read_metadata(transform)
        if metadata.get("kind", "transform") != "transform":
            raise ConfigError(f"{transform}: holds a {metadata.get('kind')} network, not a transform network")
        trained_for = metadata.get("attribute")
        if attribute is not None and trained_for not in (None, attribute):
            raise ConfigError(f"{transform} was trained for '{trained_for}', not '{attribute}'")
        if "size" not in metadata:
            raise ConfigError(f"{transform}: its metadata does not say which size it was trained at")
        label = attribute or trained_for or _weights_label(transform)
        found.append((label, attribute, weights, transform, enhance if settings.use_enhance else None, int(metadata["size"])))
    counts = Counter(item[0] for item in found)
    plans = []
    for label, attribute, weights, transform, enhance, size in found:
        if counts[label] > 1:
            label = _weights_label(transform)
        plans.append(EditorPlan(label, attribute, weights, transform, enhance, size, settings.output))
    if len({plan.label for plan in plans}) != len(plans):
        raise ConfigError("two editors would write to the same folder; give different --weights")
    if len(plans) > 1:
        plans = [EditorPlan(p.label, p.attribute, p.weights, p.transform, p.enhance, p.size, settings.output / p.label) for p in plans]
    return plans


def _weights_label(transform: Path) -> str:
    """A folder name for an editor from its weights: the run folder's name, or the file's stem."""
    if transform.name == "transform.safetensors":
        return transform.parent.resolve().name
    return transform.name.split(".")[0]


@dataclass(frozen=True)
class _Job:
    image: ImageFile
    output: Path  # edited photo, relative to each editor's folder
    unchanged: Path  # where the photo is copied when it has no face (its own name and format)
    crop_stem: Path  # --save-crops names, relative to the _crops folder
    labels: tuple[str, ...]  # editors that still have to do this photo


def _plan_jobs(images: list[ImageFile], labels: tuple[str, ...]) -> list[_Job]:
    """Output names mirroring the inputs; a photo in a format diat cannot write is written as PNG."""
    jobs = []
    taken: Counter[str] = Counter()
    for align_job in plan_jobs(images):
        unchanged, stem = align_job.image.relative, align_job.crop_stem
        taken[unchanged.as_posix().lower()] += 1
        count = taken[unchanged.as_posix().lower()]
        if count > 1:  # the same relative path from two inputs (files named directly): keep both
            unchanged = unchanged.with_name(f"{unchanged.stem}-{count}{unchanged.suffix}")
            stem = stem.with_name(f"{stem.name}-{count}")
        output = unchanged if unchanged.suffix.lower() in WRITABLE_FORMATS else unchanged.with_name(unchanged.name + ".png")
        jobs.append(_Job(align_job.image, output, unchanged, stem, labels))
    return jobs


# ---------------------------------------------------------------- detection workers


@dataclass(frozen=True)
class _DetectOptions:
    detector: str
    upsample: int
    min_face: int
    largest_only: bool
    aligned: bool
    sizes: tuple[int, ...]  # network sizes to cut crops at


@dataclass
class _Face:
    index: int
    fields: dict[str, Any]  # manifest fields: box, landmarks, score
    landmarks: np.ndarray | None  # None for --aligned crops
    matrices: dict[int, np.ndarray]  # network size -> 2 x 3 photo-to-crop matrix
    crops: dict[int, np.ndarray]  # network size -> S x S x 3 uint8


@dataclass
class _Prepared:
    job: _Job
    rgb: np.ndarray | None = None
    faces: list[_Face] = field(default_factory=list)
    too_small: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None  # why no face is edited
    encoding: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


_worker_detector: FaceDetector | None = None
_worker_options: _DetectOptions | None = None


def _init_worker(options: _DetectOptions) -> None:
    global _worker_detector, _worker_options
    # No cv2.setNumThreads here: in a forked child it can deadlock on the parent's thread pool.
    _worker_options = options
    _worker_detector = FaceDetector(options.detector, options.upsample)


def _scale_matrix(side: int, size: int) -> np.ndarray:
    """2 x 3 matrix that resizes a side x side crop to size x size (pixel centres kept)."""
    ratio = size / side
    return np.array([[ratio, 0.0, 0.5 * ratio - 0.5], [0.0, ratio, 0.5 * ratio - 0.5]])


def _prepare(job: _Job) -> _Prepared:
    """Read a photo, find its faces and cut their crops at every network size (runs in a worker)."""
    options, detector = _worker_options, _worker_detector
    prepared = _Prepared(job)
    try:
        rgb = read_image(job.image.path)
    except ImageReadError as error:
        prepared.error = str(error)
        return prepared
    except Exception as error:  # an unexpected decoder failure must not stop the batch
        prepared.error = f"{job.image.path}: cannot read ({type(error).__name__}: {error})"
        return prepared
    prepared.rgb = rgb
    prepared.encoding = _encoding_of(job.image.path)
    try:
        if options.aligned:
            height, width = rgb.shape[:2]
            if height != width:
                prepared.error = f"{job.image.path}: not a square crop ({width}x{height}); --aligned expects crops written by `diat align`"
                prepared.rgb = None
                return prepared
            matrices = {size: _scale_matrix(width, size) for size in options.sizes}
            prepared.faces.append(_Face(0, {"box": [0, 0, width, height]}, None, matrices, {}))
        else:
            found = find_faces(detector, rgb, options.min_face, options.largest_only)
            prepared.too_small = [
                {**face_fields(face), "note": f"face {face.width} px wide, below --min-face {options.min_face}"} for face in found.too_small
            ]
            prepared.note = found.note
            for index, face in enumerate(found.kept):
                matrices = {size: alignment_matrix(face.landmarks, size) for size in options.sizes}
                prepared.faces.append(_Face(index, face_fields(face), face.landmarks, matrices, {}))
        for face in prepared.faces:
            face.crops = {size: warp_to_crop(rgb, matrix, size) for size, matrix in face.matrices.items()}
    except Exception as error:  # dlib or OpenCV failing on one odd photo must not stop the batch
        prepared.error = f"{job.image.path}: face detection failed ({type(error).__name__}: {error})"
        prepared.rgb = None
    return prepared


def _encoding_of(path: Path) -> dict[str, Any]:
    """What it takes to write a photo back like the original: JPEG tables, colour profile, EXIF."""
    from PIL import Image, JpegImagePlugin

    encoding: dict[str, Any] = {}
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                encoding["qtables"] = {key: list(table) for key, table in image.quantization.items()}
                encoding["subsampling"] = JpegImagePlugin.get_sampling(image)
            if image.info.get("icc_profile"):
                encoding["icc_profile"] = image.info["icc_profile"]
            exif = image.getexif()
            if exif:
                exif[0x0112] = 1  # the pixels are already upright
                encoding["exif"] = exif.tobytes()
    except Exception:  # metadata is a nicety; the pixels were read already
        pass
    return encoding


class _Detections:
    """Prepared photos from a process pool, in the order they finish, with at most `window` in flight."""

    def __init__(self, jobs: list[_Job], options: _DetectOptions, workers: int):
        self._jobs = list(reversed(jobs))
        self._options = options
        self._workers = workers
        self._window = 2 * workers + 2
        self._results: queue.Queue = queue.Queue()
        self._in_flight = 0
        self._pool = None

    def __enter__(self) -> _Detections:
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        self._pool = context.Pool(self._workers, initializer=_init_worker, initargs=(self._options,))
        self._submit()
        return self

    def __exit__(self, *exc_info) -> None:
        self._pool.terminate()
        self._pool.join()

    def _submit(self) -> None:
        while self._jobs and self._in_flight < self._window:
            job = self._jobs.pop()
            self._pool.apply_async(
                _prepare, (job,), callback=self._results.put, error_callback=lambda error, job=job: self._results.put(_failed(job, error))
            )
            self._in_flight += 1

    @property
    def finished(self) -> bool:
        return not self._jobs and self._in_flight == 0

    def next(self, block: bool) -> _Prepared | None:
        """The next finished photo; None when none is ready and block is False."""
        try:
            prepared = self._results.get(block=block)
        except queue.Empty:
            return None
        self._in_flight -= 1
        self._submit()
        return prepared


def _failed(job: _Job, error: BaseException) -> _Prepared:
    return _Prepared(job, error=f"{job.image.path}: failed ({type(error).__name__}: {error})")


# ---------------------------------------------------------------- writing


def _write_photo(path: Path, rgb: np.ndarray, encoding: dict[str, Any], quality: int | None) -> None:
    """Write atomically in the format of the suffix, like the original where we know how."""
    from PIL import Image

    image_format = WRITABLE_FORMATS[path.suffix.lower()]
    options: dict[str, Any] = {}
    if image_format == "JPEG":
        if quality is None and "qtables" in encoding:
            options.update(qtables=encoding["qtables"], subsampling=encoding["subsampling"])
        else:
            options["quality"] = quality or 95
    elif image_format == "WEBP":
        options["quality"] = quality or 95
    if image_format in ("JPEG", "PNG", "WEBP"):
        for key in ("icc_profile", "exif"):
            if key in encoding:
                options[key] = encoding[key]
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    try:
        _atomic(path, lambda handle: image.save(handle, format=image_format, **options))
    except (ValueError, OSError):
        if "qtables" not in options:
            raise
        # tables Pillow will not reuse for an RGB file (unusual encoders): plain quality 95
        options = {key: value for key, value in options.items() if key not in ("qtables", "subsampling")}
        _atomic(path, lambda handle: image.save(handle, format=image_format, quality=95, **options))


def _copy_file(source: Path, target: Path) -> None:
    def copy(handle):
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle)

    _atomic(target, copy)


def _atomic(path: Path, write) -> None:
    descriptor, temporary = temporary_beside(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def comparison_sheet(original: np.ndarray, edited: np.ndarray, max_height: int = 1024) -> np.ndarray:
    """original | edited side by side with an 8 px white gap, at most max_height tall: H x W x 3 uint8."""
    height, width = original.shape[:2]
    gap = np.full((height, 8, 3), 255, np.uint8)
    sheet = np.concatenate([original, gap, edited], axis=1)
    if height > max_height:
        scale = max_height / height
        sheet = cv2.resize(sheet, (max(1, round(sheet.shape[1] * scale)), max_height), interpolation=cv2.INTER_AREA)
    return sheet


# ---------------------------------------------------------------- the run


def resolve_device(name: str) -> str:
    """'cuda' or 'cpu' for --device auto, cpu or cuda."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"


def split_cores(cores: int, device: str, network_size: int, workers: int | None) -> tuple[int, int | None]:
    """(detection processes, network threads or None to leave torch's) for one machine.

    On CUDA every core detects. On CPU the network gets the share of the cores its cost calls
    for (about 40% for a 128 px network, 10% at 64 px) and detection the rest, so neither
    oversubscribes the other; an explicit `workers` leaves the network the cores it does not take.
    """
    if device == "cuda":
        return (workers or cores), None
    if workers is None:
        share = min(0.6, max(0.1, NETWORK_SHARE_AT_128 * (network_size / 128) ** 2))
        threads = max(1, round(cores * share))
        return max(1, cores - threads), threads
    return workers, max(1, cores - workers)


def transfer_photos(settings: TransferSettings, reporter: Reporter | None = None) -> TransferSummary:
    """Edit every face of every photo in settings.inputs into settings.output; never writes into the inputs.

    Raises ConfigError for bad arguments (missing weights, output inside input, existing output
    without --overwrite/--skip-existing). Files that cannot be read are listed in the summary's
    failures and the rest of the batch goes on. On CPU, sets torch's thread count to the cores
    detection leaves free unless OMP_NUM_THREADS is set.
    """
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    output = settings.output
    resolved_output = output.resolve()
    for entry in settings.inputs:
        if entry.resolve() == resolved_output:
            raise ConfigError(f"output folder {output} is the input folder {entry}; choose another place")
    if not settings.output_inside_input:
        check_output_location(settings.inputs, output)
    plans = plan_editors(settings)
    labels = tuple(plan.label for plan in plans)

    images = find_images(list(settings.inputs))
    if settings.output_inside_input:  # a rerun must not take its own outputs for inputs
        named = {entry.resolve() for entry in settings.inputs}
        images = [image for image in images if image.path.resolve() in named or resolved_output not in image.path.resolve().parents]
    jobs = _plan_jobs(images, labels)
    previous = _check_existing(settings, plans, jobs)
    summary = TransferSummary(outputs=[plan.root for plan in plans])
    if settings.skip_existing:
        done = {plan.label: {record["source"] for record in previous[plan.label]} for plan in plans}
        remaining = []
        for job in jobs:
            source = str(job.image.path.resolve())
            todo = tuple(label for label in labels if source not in done[label])
            if todo:
                remaining.append(_Job(job.image, job.output, job.unchanged, job.crop_stem, todo))
        summary.skipped_existing = len(jobs) - len(remaining)
        jobs = remaining

    device = resolve_device(settings.device)
    cores = os.cpu_count() or 1
    workers, threads = split_cores(cores, device, max(plan.size for plan in plans), settings.workers)
    workers = max(1, min(workers, len(jobs)))
    options = _DetectOptions(
        settings.detector,
        settings.upsample,
        settings.min_face,
        settings.largest_only,
        settings.aligned,
        tuple(sorted({plan.size for plan in plans})),
    )
    run = _Run(settings, plans, summary, reporter, {plan.label: list(previous[plan.label]) for plan in plans})
    journals = {}
    try:
        for plan in plans:
            plan.root.mkdir(parents=True, exist_ok=True)
            journals[plan.label] = open(plan.root / MANIFEST_NAME, "w", encoding="utf-8")
            journals[plan.label].writelines(encode_record(record) for record in previous[plan.label])
            journals[plan.label].flush()
        run.journals = journals
        reporter.start(f"Transferring {', '.join(labels)}", len(jobs))
        if jobs:
            # The pool forks before any network runs in this process (CUDA and OpenMP dislike forks).
            with _Detections(jobs, options, workers) as detections:
                run.load_editors(device, threads)
                while not detections.finished or run.pending:
                    prepared = detections.next(block=not run.pending)
                    if prepared is None:
                        run.flush()
                        continue
                    run.add(prepared)
                    if run.pending_faces >= settings.batch_size:
                        run.flush()
                run.flush()
    finally:
        reporter.finish()
        for journal in journals.values():
            journal.close()
    for plan in plans:
        records = sorted(run.records[plan.label], key=lambda r: (r["relative"], r["source"], r.get("face_index") is not None, r.get("face_index") or 0))
        write_text_atomic(plan.root / MANIFEST_NAME, "".join(encode_record(record) for record in records))
    summary.seconds = time.perf_counter() - started
    return summary


def _check_existing(settings: TransferSettings, plans: list[EditorPlan], jobs: list[_Job]) -> dict[str, list[dict]]:
    """Manifest lines of a previous run to keep (--skip-existing); refuse to overwrite without a flag."""
    previous: dict[str, list[dict]] = {plan.label: [] for plan in plans}
    for plan in plans:
        manifest = plan.root / MANIFEST_NAME
        if manifest.exists():
            if settings.skip_existing:
                previous[plan.label] = read_manifest(plan.root)
            elif not settings.overwrite:
                raise ConfigError(
                    f"{plan.root} already holds a transfer ({MANIFEST_NAME}); use --skip-existing to resume it or --overwrite to replace it"
                )
    inputs = {job.image.path.resolve() for job in jobs}
    for plan in plans:
        for job in jobs:
            for target in {plan.root / job.output, plan.root / job.unchanged}:  # edited, or copied unchanged
                if target.resolve() in inputs:
                    raise ConfigError(f"writing {target} would overwrite an input photo; choose another output folder")
                if target.exists() and not (settings.overwrite or settings.skip_existing):
                    raise ConfigError(f"{target} already exists; use --overwrite to replace files in {settings.output}")
    return previous


class _Run:
    """The main-process side: batches faces through the editors, pastes, writes, keeps the manifest."""

    def __init__(self, settings: TransferSettings, plans: list[EditorPlan], summary: TransferSummary, reporter: Reporter, records: dict[str, list[dict]]):
        self.settings = settings
        self.plans = plans
        self.summary = summary
        self.reporter = reporter
        self.records = records
        self.journals: dict[str, Any] = {}
        self.editors: dict[str, Any] = {}
        self.pending: list[_Prepared] = []
        self.pending_faces = 0
        self.masks: dict[int, np.ndarray] = {}

    def load_editors(self, device: str, threads: int | None) -> None:
        import torch

        from diat_cli.editing import load_editor

        if threads is not None and device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(threads)
        for plan in self.plans:
            self.editors[plan.label] = load_editor(
                plan.attribute, plan.weights, device, use_enhance=plan.enhance is not None,
                colour_blur=self.settings.colour_blur, strength=self.settings.strength, confine=self.settings.confine, colour_strength=self.settings.colour_strength,
            )
            self.masks.setdefault(plan.size, head_mask(plan.size))

    def add(self, prepared: _Prepared) -> None:
        """Take one prepared photo: a failure or a photo without faces is done at once; faces wait for a batch."""
        if prepared.error:
            self.summary.failures.append(prepared.error)
            self.reporter.problem(prepared.error)
            self.reporter.advance()
            return
        self.summary.photos += 1
        self.summary.small_faces_skipped += len(prepared.too_small)
        if not prepared.faces:
            self._leave_unchanged(prepared)
            self.reporter.advance()
            return
        self.pending.append(prepared)
        self.pending_faces += len(prepared.faces)

    def flush(self) -> None:
        """Run every waiting face through every editor, then paste and write their photos."""
        if not self.pending:
            return
        import torch

        edited: dict[tuple[str, int, int], np.ndarray] = {}
        for plan in self.plans:
            editor = self.editors[plan.label]
            items = [(p, face) for p, prepared in enumerate(self.pending) if plan.label in prepared.job.labels for face in prepared.faces]
            for start in range(0, len(items), self.settings.batch_size):
                chunk = items[start : start + self.settings.batch_size]
                crops = np.stack([face.crops[plan.size] for _, face in chunk])
                batch = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
                result = editor(batch, use_enhance=plan.enhance is not None)
                result = result.add(1.0).mul(127.5).permute(0, 2, 3, 1).float().cpu().numpy()
                for (p, face), image in zip(chunk, result):
                    edited[(plan.label, p, face.index)] = image
        pending, self.pending, self.pending_faces = self.pending, [], 0
        for p, prepared in enumerate(pending):
            try:
                self._finish(prepared, edited, p)
            except (OSError, DiatError) as error:
                message = f"{prepared.job.image.path}: cannot write the result ({getattr(error, 'strerror', None) or error})"
                self.summary.failures.append(message)
                self.reporter.problem(message)
            self.reporter.advance()
        self.reporter.metrics({"faces": self.summary.faces})

    def _base(self, prepared: _Prepared, plan: EditorPlan) -> dict[str, Any]:
        rgb = prepared.rgb
        return {
            "source": str(prepared.job.image.path.resolve()),
            "relative": prepared.job.image.relative.as_posix(),
            "attribute": plan.label,
            "weights": plan.weights_name,
            "source_size": [int(rgb.shape[1]), int(rgb.shape[0])],
            "size": plan.size,
        }

    def _finish(self, prepared: _Prepared, edited: dict[tuple[str, int, int], np.ndarray], p: int) -> None:
        """Paste the edits of pending photo number p for each editor, write it, record its faces."""
        job, settings = prepared.job, self.settings
        for plan in self.plans:
            if plan.label not in job.labels:
                continue
            photo = prepared.rgb.copy()
            changes = []
            for face in prepared.faces:
                changes.append(
                    paste_edit(
                        photo,
                        face.crops[plan.size],
                        edited[(plan.label, p, face.index)],
                        face.matrices[plan.size],
                        self.masks[plan.size],
                        colour_match=settings.colour_match,
                    )
                )
            target = plan.root / job.output
            _write_photo(target, photo, prepared.encoding, settings.jpeg_quality)
            base = self._base(prepared, plan)
            extra: dict[str, Any] = {}
            if settings.sheet:
                sheet_path = Path(SHEETS_FOLDER) / job.output
                _write_photo(plan.root / sheet_path, comparison_sheet(prepared.rgb, photo), {}, settings.jpeg_quality or 90)
                extra["sheet"] = sheet_path.as_posix()
            records = []
            for face, change in zip(prepared.faces, changes):
                record = {
                    **base,
                    "output": job.output.as_posix(),
                    "status": "edited",
                    "face_index": face.index,
                    "faces_in_photo": len(prepared.faces),
                    **face.fields,
                    "matrix": np.round(face.matrices[plan.size], 6).tolist(),
                    "change": round(change, 3),
                    **extra,
                }
                if settings.save_crops:
                    record.update(self._save_crops(plan, prepared, face, photo))
                records.append(record)
            records.extend({**base, "output": job.output.as_posix(), "status": "too small", "face_index": None, **small} for small in prepared.too_small)
            self._record(plan, records)
        self.summary.photos_edited += 1
        self.summary.faces += len(prepared.faces)

    def _save_crops(self, plan: EditorPlan, prepared: _Prepared, face: _Face, photo: np.ndarray) -> dict[str, str]:
        """Aligned crops of the face before and after, cut from the original and the edited photo."""
        stem = Path(CROPS_FOLDER) / prepared.job.crop_stem
        names = {}
        if face.landmarks is None:  # --aligned: the input is the crop
            before, after = prepared.rgb, photo
        else:
            size = max(MIN_CROP_SIZE, plan.size)
            matrix = alignment_matrix(face.landmarks, size)
            before, after = warp_to_crop(prepared.rgb, matrix, size), warp_to_crop(photo, matrix, size)
        for key, image in (("crop_before", before), ("crop_after", after)):
            relative = stem.parent / f"{stem.name}_{face.index}_{key.split('_')[1]}.png"
            write_image(plan.root / relative, image)
            names[key] = relative.as_posix()
        return names

    def _leave_unchanged(self, prepared: _Prepared) -> None:
        job = prepared.job
        self.summary.photos_without_face += 1
        action = "skipped" if self.settings.skip_unchanged else "copied unchanged"
        self.summary.notes.append(f"{job.image.path}: {prepared.note}; {action}")
        for plan in self.plans:
            if plan.label not in job.labels:
                continue
            output = None
            if not self.settings.skip_unchanged:
                output = job.unchanged  # the original file, byte for byte
                _copy_file(job.image.path, plan.root / output)
            records = [
                {**self._base(prepared, plan), "output": output.as_posix() if output else None, "status": action.split()[0], "face_index": None, "note": prepared.note}
            ]
            records.extend(
                {**self._base(prepared, plan), "output": output.as_posix() if output else None, "status": "too small", "face_index": None, **small}
                for small in prepared.too_small
            )
            self._record(plan, records)

    def _record(self, plan: EditorPlan, records: list[dict]) -> None:
        self.records[plan.label].extend(records)
        journal = self.journals[plan.label]
        journal.writelines(encode_record(record) for record in records)
        journal.flush()
