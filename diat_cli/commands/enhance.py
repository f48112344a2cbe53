"""`diat train-enhance`: stage 2 of DIAT on the command line (registered on the app by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from diat_cli.cli import app, run_core


@app.command("train-enhance")
def train_enhance_command(
    transform: Path = typer.Option(..., "--transform", help="The trained transform network: transform.safetensors or its run folder."),
    attr: Optional[str] = typer.Option(None, "--attr", help="Target attribute; default the transform's (it must match when given)."),
    data: Optional[Path] = typer.Option(None, help="Aligned folder. Default: the one the transform was trained on."),
    labels: Optional[str] = typer.Option(None, help="CelebA list_attr_celeba.txt or 'utkface'. Default: the transform run's."),
    source: Optional[Path] = typer.Option(None, help="Instead of --data: folder of faces WITHOUT the attribute..."),
    reference: Optional[Path] = typer.Option(None, help="...and folder of faces WITH it."),
    size: Optional[int] = typer.Option(None, help="Training resolution; default (and only choice) the transform's, since E runs on T's output."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where checkpoints, logs and grids go. Default: <transform folder>/enhance."),
    output: Optional[Path] = typer.Option(None, help="E's weights file. Default: enhance.safetensors beside the transform weights."),
    steps: int = typer.Option(2_000, help="Training steps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Faces per batch (per process)."),
    lr: float = typer.Option(2e-4, "--lr", help="Adam learning rate of E."),
    inside_loss: str = typer.Option("identity", "--inside-loss", help="Local attributes: keep T's change inside the region as measured by 'identity' (low face-recognition features, the paper's) or 'pixel' (MSE; ~10x cheaper on CPU)."),
    perceptual_weight: float = typer.Option(0.1, "--perceptual-weight", help="Weight beta of the inside term, per identity-network layer."),
    mask_feather: float = typer.Option(0.03, "--mask-feather", help="Softness of the region mask's edge (Gaussian sigma, fraction of the side)."),
    blur_sigma: float = typer.Option(1.0, "--blur-sigma", help="Global attributes: blur E learns to undo, sigma in pixels at 64 px (scaled with the size; drawn between 0.5x and 1.5x per step)."),
    enhance_channels: int = typer.Option(32, "--enhance-channels", help="Width of E."),
    enhance_blocks: int = typer.Option(4, "--enhance-blocks", help="Residual blocks of E."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Use channels-last memory layout."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the networks (slow first step, faster after)."),
    seed: int = typer.Option(0, help="Random seed; the same seed on CPU gives the same run."),
    checkpoint_every: int = typer.Option(500, help="Save a checkpoint every N steps."),
    grid_every: int = typer.Option(250, help="Save a grid (x, T(x), E(T(x))) of validation faces every N steps."),
    log_every: int = typer.Option(10, help="Log averaged losses every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again where a run or enhance weights already exist."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the data and write config.json, then stop."),
) -> None:
    """Train the enhancement network E behind a trained transform network (stage 2 of DIAT).

    Example: diat train-enhance --attr no-eyeglasses --transform runs/no-eyeglasses-a

    Local attributes (glasses, mouth, smile, ...): E gives back the input outside the
    attribute's region and keeps T's change inside it. Global ones (age, gender): E learns to
    undo a blur of real faces. Data, labels and size come from the transform run.
    Writes <transform folder>/enhance/ (config.json, metrics.jsonl, grids/, checkpoints/) and
    enhance.safetensors beside transform.safetensors, which `diat transfer` and `diat evaluate`
    then use (unless --no-enhance). Compare `diat evaluate` with and without --no-enhance before
    keeping E: for global attributes it can over-sharpen T's output (the bundled age and gender
    models ship without it).
    """
    from diat_cli.console import RichReporter, console
    from diat_cli.pipelines.train_enhance import plan_run, train_enhance
    from diat_cli.settings import TrainEnhanceSettings

    settings = run_core(
        TrainEnhanceSettings,
        transform=transform,
        attribute=attr,
        data=data,
        labels=Path(labels) if labels else None,
        source=source,
        reference=reference,
        size=size,
        run_dir=run_dir,
        output=output,
        steps=steps,
        batch_size=batch_size,
        learning_rate=lr,
        inside_loss=inside_loss,
        perceptual_weight=perceptual_weight,
        mask_feather=mask_feather,
        blur_sigma=blur_sigma,
        enhance_channels=enhance_channels,
        enhance_blocks=enhance_blocks,
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
    plan = run_core(plan_run, settings)
    result = run_core(train_enhance, settings, RichReporter())
    if result is None:
        console.print(f"Dry run: data and settings are fine; wrote {plan.run_dir / 'config.json'}", highlight=False)
        return
    losses = ", ".join(f"{name} {value:.4g}" for name, value in result.last_losses.items())
    console.print(f"Trained {result.steps} steps of E ({plan.mode} attribute '{plan.attribute.name}') -> {plan.output} ({losses})", highlight=False)
