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


def fail(message: str, code: int) -> typer.Exit:
    from diat_cli.console import console

    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_core(function, *args, **kwargs):
    """Call a core function; a user error becomes one line and exit status 2 (bad arguments) or 1."""
    try:
        return function(*args, **kwargs)
    except ConfigError as error:
        raise fail(str(error), 2) from None
    except DiatError as error:
        raise fail(str(error), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


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
        raise fail("give the photos or folders to align, then the OUTPUT folder", 2)
    settings = run_core(
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
    summary = run_core(align_photos, settings, RichReporter())
    parts = [f"{summary.photos} photos", f"{summary.faces} faces", f"{summary.photos_without_face} photos with no face"]
    if summary.small_faces_skipped:
        parts.append(f"{summary.small_faces_skipped} faces below --min-face")
    if summary.skipped_existing:
        parts.append(f"{summary.skipped_existing} already aligned")
    parts.append(f"{len(summary.failures)} files failed")
    console.print("Aligned: " + ", ".join(parts) + f" -> {settings.output}", highlight=False, soft_wrap=True)
    raise typer.Exit(summary.exit_code)



@app.command()
def attributes(
    bundled: bool = typer.Option(False, "--bundled", help="Only the attributes whose model ships inside diat (usable with `diat transfer --attr` and no training)."),
) -> None:
    """List the attributes diat knows, which faces make each one's source and reference sets, and which have a bundled model.

    Example: diat attributes --bundled
    """
    from rich.table import Table

    from diat_cli.attributes import attribute_table
    from diat_cli.console import console
    from diat_cli.editing import bundled_attributes

    shipped = set(bundled_attributes())
    table = Table(title="Attributes (source = faces without it, reference = faces with it)")
    for column in ("attribute", "source set", "reference set", "kind", "aliases", "bundled model"):
        table.add_column(column)
    for row in attribute_table():
        if bundled and row.name not in shipped:
            continue
        table.add_row(row.name, row.source, row.reference, row.kind, ", ".join(row.aliases), "yes" if row.name in shipped else "")
    if bundled and not shipped:
        console.print("No bundled models in this install: train one with `diat train-transform`.")
        return
    console.print(table)


@app.command("train-transform")
def train_transform_command(
    attr: str = typer.Option(..., "--attr", help="Target attribute, e.g. no-eyeglasses, old, female (see `diat attributes`)."),
    data: Optional[Path] = typer.Option(None, help="Folder written by `diat align`."),
    labels: Optional[str] = typer.Option(None, help="CelebA list_attr_celeba.txt, or 'utkface' to read age and gender from UTKFace file names. Default: found beside the original photos."),
    source: Optional[Path] = typer.Option(None, help="Instead of --data: folder of faces WITHOUT the attribute..."),
    reference: Optional[Path] = typer.Option(None, help="...and folder of faces WITH it."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where checkpoints, logs and grids go. Default: runs/<attr>-<variant>."),
    variant: str = typer.Option("a", help="'a' (DIAT-A: identity loss on D's features; fast) or 'diat' (identity loss on the face-recognition network, plus the smoothness term)."),
    size: int = typer.Option(128, help="Training resolution: 64, 128 or 256."),
    steps: int = typer.Option(10_000, help="Training steps (one D and one T update each)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Faces per batch (per process)."),
    lr: float = typer.Option(2e-4, "--lr", help="Adam learning rate of T and D."),
    gan: str = typer.Option("gan", help="Adversarial loss: 'gan' (non-saturating) or 'wgan-gp'."),
    adversarial_weight: float = typer.Option(1.0, help="Weight of the adversarial (attribute) loss."),
    identity_weight: float = typer.Option(10.0, help="Weight lambda of the perceptual identity loss."),
    smooth_weight: float = typer.Option(1.0, help="Weight gamma of the smoothness loss ||f(T(x)) - T(x)||^2 (variant diat)."),
    gradient_penalty_weight: float = typer.Option(10.0, help="WGAN-GP gradient penalty weight."),
    spectral_norm: bool = typer.Option(True, "--spectral-norm/--no-spectral-norm", help="Spectral normalisation on D's layers: a steadier GAN game and bounded D features for DIAT-A's identity loss."),
    fuse_mask: bool = typer.Option(False, "--mask/--no-mask", help="T also predicts a soft mask and edits only inside it (out = m*T(x) + (1-m)*x), as DIAT's journal version does; keeps the rest of the face exact."),
    mask_weight: float = typer.Option(0.1, help="Penalty on the mask's mean area (with --mask)."),
    edit_tv_weight: float = typer.Option(0.0, "--edit-tv-weight", help="Weight of the total variation of the edit T(x) - x: smooth edits, no coloured specks in hair and background (0: the paper's objective)."),
    edit_chroma_weight: float = typer.Option(0.0, "--edit-chroma-weight", help="Weight of the change of colour (chroma) between x and T(x): light and shadow are free, colour blotches cost (0: the paper's objective)."),
    edit_symmetry_weight: float = typer.Option(0.0, "--edit-symmetry-weight", help="Weight of the edit's left-right asymmetry in the aligned crop: a lens over one eye only costs, a pair of frames does not (0: the paper's objective)."),
    identity_embedding_weight: float = typer.Option(0.0, "--identity-embedding-weight", help="Weight of the squared distance between the face-recognition descriptors of T(x) and x, the number verification thresholds (variant diat; 0: the paper's objective)."),
    transform_channels: int = typer.Option(32, help="Width of T (its residual blocks use 4x this); 16 trains about 3x faster on CPU."),
    discriminator_channels: int = typer.Option(64, help="Width of D's first layer (doubling per layer up to 8x)."),
    denoiser_steps: int = typer.Option(300, help="Steps for each of g and f when training the smoothness network (variant diat)."),
    init: Optional[Path] = typer.Option(None, help="Start T (and D, when beside it) from an earlier run's weights: a run folder, a snapshots/step-N or checkpoints/step-N folder or a transform.safetensors. Fine-tunes with new loss weights or learning rate in a new run."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Use channels-last memory layout."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the networks (slow first step, faster after)."),
    seed: int = typer.Option(0, help="Random seed; the same seed on CPU gives the same run."),
    checkpoint_every: int = typer.Option(500, help="Save a checkpoint every N steps."),
    grid_every: int = typer.Option(250, help="Save a before/after grid of validation faces every N steps."),
    log_every: int = typer.Option(10, help="Log averaged losses every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again in a --run-dir that already holds a run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the data and write config.json, then stop."),
) -> None:
    """Train the transform network T for one attribute direction (stage 1 of DIAT).

    Example: diat train-transform --attr no-eyeglasses --data aligned/ --labels list_attr_celeba.txt --size 64

    Writes runs/<attr>-<variant>/: config.json, metrics.jsonl, grids/step-N.png,
    checkpoints/ and, at the end, transform.safetensors.
    Launch with `torchrun --nproc-per-node N $(which diat) train-transform ...` for several GPUs.
    """
    from diat_cli.console import RichReporter, console
    from diat_cli.pipelines.train_transform import train_transform
    from diat_cli.settings import TrainTransformSettings

    settings = run_core(
        TrainTransformSettings,
        attribute=attr,
        data=data,
        labels=Path(labels) if labels else None,
        source=source,
        reference=reference,
        run_dir=run_dir,
        variant=variant,
        size=size,
        steps=steps,
        batch_size=batch_size,
        learning_rate=lr,
        gan=gan,
        adversarial_weight=adversarial_weight,
        identity_weight=identity_weight,
        smooth_weight=smooth_weight,
        gradient_penalty_weight=gradient_penalty_weight,
        spectral_norm=spectral_norm,
        fuse_mask=fuse_mask,
        mask_weight=mask_weight,
        edit_tv_weight=edit_tv_weight,
        edit_chroma_weight=edit_chroma_weight,
        edit_symmetry_weight=edit_symmetry_weight,
        identity_embedding_weight=identity_embedding_weight,
        transform_channels=transform_channels,
        discriminator_channels=discriminator_channels,
        denoiser_steps=denoiser_steps,
        init=init,
        device=device,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        seed=seed,
        checkpoint_every=checkpoint_every,
        grid_every=grid_every,
        log_every=log_every,
        resume=resume,
        overwrite=overwrite,
        dry_run=dry_run,
    )
    result = run_core(train_transform, settings, RichReporter())
    if result is None:
        console.print(f"Dry run: data and settings are fine; wrote {settings.resolved_run_dir / 'config.json'}")
        return
    losses = ", ".join(f"{name} {value:.4g}" for name, value in result.last_losses.items())
    console.print(f"Trained {result.steps} steps -> {result.run_dir / 'transform.safetensors'} ({losses})", highlight=False)
from diat_cli.commands import enhance as _enhance  # noqa: E402,F401  registers the command
from diat_cli.commands import evaluate as _evaluate  # noqa: E402,F401  registers the commands
from diat_cli.commands import transfer as _transfer  # noqa: E402,F401  registers the command
