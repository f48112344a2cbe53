"""The `diat` command line: parse options, build one settings object, call one core function.

Heavy modules (torch, dlib, the pipelines) are imported inside each command so that
`diat --help` stays instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from diat_cli.errors import ConfigError, DiatError

app = typer.Typer(
    name="diat",
    help="Identity-aware facial attribute transfer (DIAT): align faces, train, transfer, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Identity-aware facial attribute transfer (DIAT): align faces, train, transfer, evaluate."""


def _fail(message: str, code: int) -> typer.Exit:
    from diat_cli.console import console

    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _run(function, *args, **kwargs):
    """Call a core function, turning user errors into one line and an exit status."""
    try:
        return function(*args, **kwargs)
    except ConfigError as error:
        raise _fail(str(error), 2) from None
    except DiatError as error:
        raise _fail(str(error), 2) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None


@app.command()
def align(
    inputs: List[Path] = typer.Argument(..., help="Photos and/or folders (searched recursively), then the OUTPUT folder last."),
    size: int = typer.Option(128, help="Side of the square crop in pixels."),
    detector: str = typer.Option("hog", help="Face detector: 'hog' (fast) or 'cnn' (dlib MMOD, slower, finds harder faces)."),
    upsample: int = typer.Option(1, help="Upsample the photo N times before detection to find small faces (slower)."),
    largest: bool = typer.Option(False, "--largest", help="Keep only the largest face of each photo."),
    min_face: int = typer.Option(0, "--min-face", help="Skip faces narrower than this many pixels in the photo."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Resume: skip photos already in OUTPUT's manifest."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing aligned set in OUTPUT."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Processes to use (default: all cores)."),
) -> None:
    """Detect faces, find landmarks, and warp each face to one canonical crop.

    Example: diat align photos/ aligned/

    Writes OUTPUT/<photo>_<k>.png for face k of each photo (left to right) and
    OUTPUT/manifest.jsonl, which lets `diat transfer` paste edits back.
    Exit status: 0 when every file was read, 1 when some could not be, 2 for bad arguments.
    """
    from diat_cli.console import RichReporter, console
    from diat_cli.pipelines.align import align_photos
    from diat_cli.settings import AlignSettings

    if len(inputs) < 2:
        raise _fail("give the photos or folders to align, then the OUTPUT folder", 2)
    settings = _run(
        AlignSettings,
        inputs=tuple(inputs[:-1]),
        output=inputs[-1],
        size=size,
        detector=detector,
        upsample=upsample,
        largest_only=largest,
        min_face=min_face,
        skip_existing=skip_existing,
        overwrite=overwrite,
        workers=workers,
    )
    summary = _run(align_photos, settings, RichReporter())
    parts = [f"{summary.photos} photos", f"{summary.faces} faces", f"{summary.photos_without_face} photos with no face"]
    if summary.small_faces_skipped:
        parts.append(f"{summary.small_faces_skipped} faces below --min-face")
    if summary.skipped_existing:
        parts.append(f"{summary.skipped_existing} already aligned")
    parts.append(f"{len(summary.failures)} files failed")
    console.print("Aligned: " + ", ".join(parts) + f" -> {settings.output}", highlight=False)
    raise typer.Exit(summary.exit_code)

