"""The one image reader and writer every command uses.

Reading is strict: broken, truncated, empty or oversized files raise ImageReadError
with a one-line reason, instead of being silently half-decoded.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from diat_cli.errors import DiatError, ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_PIXELS = 64_000_000  # larger images are refused as possible decompression bombs


@dataclass(frozen=True)
class ImageFile:
    """An input image and where it sits relative to the folder it was found in."""

    path: Path
    relative: Path  # mirrored under the output folder


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read any supported image as H x W x 3 uint8 RGB, upright per its EXIF orientation.

    Grayscale, palette and CMYK become RGB; transparency is composited on white;
    16-bit samples are scaled to 8 bits.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read file ({error.strerror or error})") from None
    if size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{path}: image too large ({width}x{height} pixels, limit {max_pixels:,}); "
                        "refused as a possible decompression bomb"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb8(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{path}: image too large; refused as a possible decompression bomb") from None
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error) or type(error).__name__
        if "truncated" in reason.lower():
            reason = "truncated or damaged file"
        raise ImageReadError(f"{path}: cannot decode image ({reason})") from None


def _to_rgb8(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        samples = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or samples.max() > 255 else 255.0
        gray = np.clip(np.round(samples * 255.0 / peak), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    if mode == "F":
        samples = np.asarray(image, dtype=np.float64)
        peak = 1.0 if samples.max() <= 1.0 else 255.0
        gray = np.clip(np.round(samples * 255.0 / peak), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


DEFAULT_FILE_MODE = _default_file_mode()  # what open() would give; mkstemp alone gives 0600


def temporary_beside(path: Path) -> tuple[int, str]:
    """A temporary file next to `path` (same file system, so os.replace is atomic), with normal permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.fchmod(descriptor, DEFAULT_FILE_MODE)
    return descriptor, temporary


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Write H x W x 3 uint8 RGB atomically (temporary file, then rename); format from the suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}
    if suffix not in formats:
        raise DiatError(f"{path}: cannot write images with suffix '{path.suffix}'")
    options = {"quality": quality} if formats[suffix] in ("JPEG", "WEBP") else {}
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    descriptor, temporary = temporary_beside(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            image.save(handle, format=formats[suffix], **options)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    path = Path(path)
    descriptor, temporary = temporary_beside(path)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def find_images(inputs: list[str | os.PathLike]) -> list[ImageFile]:
    """Expand files and folders (recursively) into image files, sorted, without duplicates.

    A folder contributes files with an image suffix; a file named directly is always
    taken, so that a mislabelled file gets a clear read error rather than vanishing.
    """
    found: dict[Path, ImageFile] = {}
    for entry in inputs:
        entry = Path(entry)
        if entry.is_dir():
            for path in sorted(entry.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                    found.setdefault(path.resolve(), ImageFile(path, path.relative_to(entry)))
        elif entry.exists():
            found.setdefault(entry.resolve(), ImageFile(entry, Path(entry.name)))
        else:
            raise DiatError(f"{entry}: no such file or folder")
    return list(found.values())
