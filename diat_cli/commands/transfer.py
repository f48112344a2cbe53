"""`diat transfer` on the command line (registered on the app by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from diat_cli.cli import app, fail, run_core

NOTES_SHOWN = 20  # photos left unchanged listed by name; the manifest has them all


@app.command()
def transfer(
    inputs: List[Path] = typer.Argument(..., help="Photos and/or folders (searched recursively, mirrored under OUTPUT), then the OUTPUT folder last (or give it with -o)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The OUTPUT folder, instead of the last argument."),
    attr: Optional[List[str]] = typer.Option(None, "--attr", "-a", help="Attribute to give every face, e.g. no-eyeglasses, old (see `diat attributes`). Repeat for several; each goes to OUTPUT/<attribute>/."),
    weights: Optional[List[Path]] = typer.Option(None, "--weights", "-w", help="Run folder or transform weights file (repeat to pair with each --attr). Default: the weights bundled for --attr."),
    aligned: bool = typer.Option(False, "--aligned", help="INPUTS are square crops from `diat align`: edit them as they are, no detection."),
    save_crops: bool = typer.Option(False, "--save-crops", help="Also write aligned before/after crops of each face to OUTPUT/_crops/."),
    sheet: bool = typer.Option(False, "--sheet", help="Also write one comparison image per photo (original | edited) to OUTPUT/_sheets/."),
    colour_match: bool = typer.Option(True, "--colour-match/--no-colour-match", help="Keep each face's colour statistics (turn off for colour attributes: hair colour, pale skin, make-up)."),
    enhance: bool = typer.Option(True, "--enhance/--no-enhance", help="Apply the enhancement network E when the weights have one."),
    strength: Optional[float] = typer.Option(None, "--strength", help="Scale each edit by this: below 1 a lighter edit, above 1 a stronger one that keeps less of the person. Default: the model's own setting (bundled models carry the one they were measured with), else 1."),
    colour_blur: Optional[float] = typer.Option(None, "--colour-blur", help="Blur the colour (not the brightness) of each edit by this many pixels of the model's crop: turns the rainbow fringes a small model leaves on thin edges (glasses frames) grey. 0 turns it off. Default: the model's own setting (bundled models carry the one they were measured with), else 0."),
    colour_strength: Optional[float] = typer.Option(None, "--colour-strength", help="Keep this share (0 to 1) of each edit's change in colour, all of its change in light and shade: below 1 drops tints a model paints (yellow eyelids, orange skin) and keeps wrinkles, grey hair and shadows. Default: the model's own setting (bundled models carry the one they were measured with), else 1."),
    confine: Optional[bool] = typer.Option(None, "--confine/--no-confine", help="Keep each edit near its region (eyes, mouth) of the face, dropping stray changes elsewhere; local attributes only. Default: the model's own setting (bundled models carry the one they were measured with), else off."),
    skip_unchanged: bool = typer.Option(False, "--skip-unchanged", help="Do not copy photos without a usable face to OUTPUT."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Resume: skip photos already in OUTPUT's manifest."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files already in OUTPUT."),
    output_inside_input: bool = typer.Option(False, "--output-inside-input", help="Allow OUTPUT inside an input folder (its files are then not taken as inputs)."),
    detector: str = typer.Option("hog", help="Face detector: 'hog' (fast) or 'cnn' (dlib MMOD, slower, finds harder faces)."),
    upsample: int = typer.Option(1, help="Upsample the photo N times before detection to find small faces (slower)."),
    min_face: int = typer.Option(32, "--min-face", help="Leave faces narrower than this many pixels as they are."),
    largest: bool = typer.Option(False, "--largest", help="Edit only the largest face of each photo."),
    quality: Optional[int] = typer.Option(None, help="JPEG/WebP quality 1-100. Default: each JPEG keeps its own quantisation tables."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", help="Faces per network batch."),
    workers: Optional[int] = typer.Option(None, help="Face-detection processes. Default: every core on CUDA; on CPU the cores the network does not need."),
) -> None:
    """Give every face in your photos an attribute, and write the photos back in their size and format.

    Example: diat transfer photos/ edited/ --attr no-eyeglasses --sheet
    (or: diat transfer photos/ --attr no-eyeglasses -o edited/)

    Faces are found and aligned as `diat align` does, edited in batches, and pasted back with a
    feathered mask and colour matching. Photos without a usable face are copied unchanged.
    Writes OUTPUT/manifest.jsonl: one line per face (and per photo left unchanged).
    Exit status: 0 when every file was read, 1 when some could not be, 2 for bad arguments.
    """
    from diat_cli.console import RichReporter, console
    from diat_cli.pipelines.transfer import transfer_photos
    from diat_cli.settings import TransferSettings

    if output is None:
        if len(inputs) < 2:
            raise fail("give the photos or folders to edit, then the OUTPUT folder (or -o OUTPUT)", 2)
        inputs, output = inputs[:-1], inputs[-1]
    settings = run_core(
        TransferSettings,
        inputs=tuple(inputs),
        output=output,
        attributes=tuple(attr or ()),
        weights=tuple(weights or ()),
        aligned=aligned,
        detector=detector,
        upsample=upsample,
        min_face=min_face,
        largest_only=largest,
        colour_match=colour_match,
        use_enhance=enhance,
        colour_blur=colour_blur,
        colour_strength=colour_strength,
        confine=confine,
        strength=strength,
        save_crops=save_crops,
        sheet=sheet,
        skip_unchanged=skip_unchanged,
        skip_existing=skip_existing,
        overwrite=overwrite,
        output_inside_input=output_inside_input,
        jpeg_quality=quality,
        device=device,
        batch_size=batch_size,
        workers=workers,
    )
    summary = run_core(transfer_photos, settings, RichReporter())
    for note in summary.notes[:NOTES_SHOWN]:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    if len(summary.notes) > NOTES_SHOWN:
        console.print(f"[yellow]note:[/yellow] ... and {len(summary.notes) - NOTES_SHOWN} more photos left unchanged (see manifest.jsonl)", highlight=False)
    rate = summary.photos / summary.seconds if summary.seconds > 0 else 0.0
    parts = [f"{summary.photos} photos", f"{summary.faces} faces edited", f"{summary.photos_without_face} photos with no usable face"]
    if summary.small_faces_skipped:
        parts.append(f"{summary.small_faces_skipped} faces below --min-face")
    if summary.skipped_existing:
        parts.append(f"{summary.skipped_existing} already done")
    parts.append(f"{len(summary.failures)} files failed")
    where = ", ".join(str(path) for path in summary.outputs)
    # Timing first and no hard wrap: "0 files failed in 2.1 s" split over two lines read as a failure.
    console.print(f"Transferred in {summary.seconds:.1f} s ({rate:.1f} photos/s): {', '.join(parts)} -> {where}", highlight=False, soft_wrap=True)
    raise typer.Exit(summary.exit_code)
