"""`diat evaluate` and `diat train-classifier` on the command line (registered on the app by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from diat_cli.cli import app, fail, run_core


@app.command()
def evaluate(
    data: Path = typer.Argument(..., help="Aligned folder from `diat align` (labels found beside the photos, or --labels), or photos."),
    attr: str = typer.Option(..., "--attr", help="Target attribute of the editor, e.g. no-eyeglasses, old (see `diat attributes`)."),
    weights: Optional[Path] = typer.Option(None, help="Editor: run folder or transform weights file. Default: the bundled weights for --attr."),
    classifier: Optional[Path] = typer.Option(None, help="Attribute classifier weights (or its run folder). Default: the bundled classifier of the model's size (64 or 128 px)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Report folder for metrics.json and report.html. Default: evaluation/<attr>."),
    labels: Optional[str] = typer.Option(None, help="CelebA list_attr_celeba.txt, or 'utkface'. Default: found beside the original photos."),
    identities: Optional[Path] = typer.Option(None, help="CelebA identity_CelebA.txt for the verification score. Default: found beside the labels or photos."),
    reference: Optional[Path] = typer.Option(None, help="Real faces WITH the attribute (aligned folder or photos) for the realism scores, when DATA has no labels."),
    limit: int = typer.Option(500, help="Source-side faces to edit (and reference-side faces to compare), in a stable order that starts with the held-out slice."),
    held_out: bool = typer.Option(False, "--held-out", help="Only faces of the held-out slice, which no diat training run sees."),
    sample: int = typer.Option(8, help="Faces in the report's before/after grid."),
    worst: int = typer.Option(8, help="Worst cases by identity distance shown in the report."),
    batch_size: int = typer.Option(32, "--batch-size", help="Faces per batch."),
    enhance: bool = typer.Option(True, "--enhance/--no-enhance", help="Apply the enhancement network E when the weights have one."),
    strength: Optional[float] = typer.Option(None, "--strength", help="Scale each edit by this: below 1 a lighter edit, above 1 a stronger one that keeps less of the person. Default: the model's own setting (bundled models carry the one they were measured with), else 1."),
    colour_blur: Optional[float] = typer.Option(None, "--colour-blur", help="Blur the colour (not the brightness) of each edit by this many pixels of the model's crop: turns the rainbow fringes a small model leaves on thin edges (glasses frames) grey. 0 turns it off. Default: the model's own setting (bundled models carry the one they were measured with), else 0."),
    colour_strength: Optional[float] = typer.Option(None, "--colour-strength", help="Keep this share (0 to 1) of each edit's change in colour, all of its change in light and shade: below 1 drops tints a model paints (yellow eyelids, orange skin) and keeps wrinkles, grey hair and shadows. Default: the model's own setting (bundled models carry the one they were measured with), else 1."),
    confine: Optional[bool] = typer.Option(None, "--confine/--no-confine", help="Keep each edit near its region (eyes, mouth) of the face, dropping stray changes elsewhere; local attributes only. Default: the model's own setting (bundled models carry the one they were measured with), else off."),
    detector: str = typer.Option("hog", help="Face detector for photos: 'hog' or 'cnn'."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Edit the source-side faces of DATA and measure attribute success, identity, locality, realism and speed.

    Example: diat evaluate --attr no-eyeglasses --weights runs/no-eyeglasses-a aligned/ -o report/

    Writes REPORT/metrics.json and REPORT/report.html (opens in a browser, images embedded).
    """
    from rich.table import Table

    from diat_cli.console import RichReporter, console
    from diat_cli.pipelines.evaluate import evaluate as evaluate_data
    from diat_cli.report import metric_rows
    from diat_cli.settings import EvaluateSettings

    settings = run_core(
        EvaluateSettings,
        attribute=attr,
        data=data,
        weights=weights,
        classifier=classifier,
        labels=Path(labels) if labels else None,
        identities=identities,
        reference=reference,
        report_dir=output,
        limit=limit,
        held_out=held_out,
        sample=sample,
        worst=worst,
        batch_size=batch_size,
        use_enhance=enhance,
        colour_blur=colour_blur,
        colour_strength=colour_strength,
        confine=confine,
        strength=strength,
        detector=detector,
        device=device,
    )
    metrics = run_core(evaluate_data, settings, RichReporter())
    table = Table(title=f"diat evaluate: {metrics['attribute']} ({metrics['data']['source_faces']} faces)")
    for column in ("metric", "value", "how"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for name, value, note in metric_rows(metrics):
        table.add_row(name, value, note)
    console.print(table)
    folder = settings.resolved_report_dir
    console.print(f"Wrote {folder / 'metrics.json'} and {folder / 'report.html'}", highlight=False, soft_wrap=True)


@app.command("train-classifier")
def train_classifier_command(
    celeba: List[Path] = typer.Option([], "--celeba", help="Aligned folder of CelebA faces (repeatable); labels found beside the photos or --labels."),
    labels: Optional[Path] = typer.Option(None, help="CelebA list_attr_celeba.txt for the --celeba folders."),
    utkface: List[Path] = typer.Option([], "--utkface", help="Aligned folder of UTKFace faces (repeatable); age and gender from the file names."),
    test: Optional[Path] = typer.Option(None, help="Aligned, labelled CelebA folder to measure after training (e.g. CelebA's test partition)."),
    test_labels: Optional[Path] = typer.Option(None, "--test-labels", help="list_attr_celeba.txt for --test. Default: found beside its photos."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where checkpoints, logs and the classifier go. Default: runs/classifier-<size>."),
    size: int = typer.Option(64, help="Input size: 64 or 128."),
    channels: int = typer.Option(32, help="Width of the first convolution (stages use 1x, 2x, 4x, 8x)."),
    steps: int = typer.Option(6_000, help="Training steps."),
    batch_size: int = typer.Option(64, "--batch-size", help="Faces per batch (per process)."),
    lr: float = typer.Option(2e-3, "--lr", help="AdamW peak learning rate (warm-up, then cosine decay)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="AdamW weight decay."),
    validation_fraction: float = typer.Option(0.05, "--validation-fraction", help="Share of photos held out (by a hash of the name) to measure accuracy."),
    half: bool = typer.Option(False, "--half", help="Write the final weights in float16 (how the bundled classifier ships)."),
    balance: bool = typer.Option(True, "--balance/--no-balance", help="Weight each CelebA attribute's positives by sqrt(negatives/positives), so rare ones (eyeglasses, hats) are not learned as 'never'."),
    init: Optional[Path] = typer.Option(None, help="Start from these classifier weights (fine-tune) instead of random ones; a 64 px classifier can start a 128 px one."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Use channels-last memory layout."),
    seed: int = typer.Option(0, help="Random seed; the same seed on CPU gives the same run."),
    checkpoint_every: int = typer.Option(1_000, help="Save a checkpoint every N steps."),
    log_every: int = typer.Option(50, help="Log averaged losses every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again in a --run-dir that already holds a run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the data and write config.json, then stop."),
) -> None:
    """Train the attribute classifier that `diat evaluate` judges edits with (40 CelebA attributes, UTKFace age and gender).

    Example: diat train-classifier --celeba aligned-celeba/ --utkface aligned-utkface/ --size 64

    Writes runs/classifier-<size>/: config.json, metrics.jsonl, checkpoints/, accuracy.json and
    classifier.safetensors; prints the held-out accuracy per attribute.
    """
    from rich.table import Table

    from diat_cli.console import RichReporter, console
    from diat_cli.pipelines.train_classifier import train_classifier
    from diat_cli.settings import TrainClassifierSettings

    settings = run_core(
        TrainClassifierSettings,
        celeba=tuple(celeba),
        labels=labels,
        utkface=tuple(utkface),
        test=test,
        test_labels=test_labels,
        run_dir=run_dir,
        size=size,
        channels=channels,
        steps=steps,
        batch_size=batch_size,
        learning_rate=lr,
        weight_decay=weight_decay,
        validation_fraction=validation_fraction,
        half=half,
        balance=balance,
        init=init,
        device=device,
        precision=precision,
        channels_last=channels_last,
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        resume=resume,
        overwrite=overwrite,
        dry_run=dry_run,
    )
    result = run_core(train_classifier, settings, RichReporter())
    if result is None:
        console.print(f"Dry run: data and settings are fine; wrote {settings.resolved_run_dir / 'config.json'}", highlight=False, soft_wrap=True)
        return
    held, test_report = result.accuracy["held_out"], result.accuracy["test"]
    table = Table(title=f"Classifier accuracy ({settings.size} px, {result.training.steps} steps)")
    def percent(value) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    table.add_column("attribute")
    for column in ("held-out", "balanced", "majority") + (("test", "test balanced") if test_report else ()):
        table.add_column(column, justify="right")
    for column, row in held["celeba"].items():
        cells = [column, percent(row["accuracy"]), percent(row["balanced_accuracy"]), percent(row["majority"])]
        if test_report:
            cells += [percent(test_report["celeba"][column]["accuracy"]), percent(test_report["celeba"][column]["balanced_accuracy"])]
        table.add_row(*cells)
    if held["celeba_mean"] is not None:
        cells = ["mean (40 CelebA attributes)", percent(held["celeba_mean"]), percent(held["celeba_balanced_mean"]), percent(held["celeba_majority_mean"])]
        if test_report:
            cells += [percent(test_report["celeba_mean"]), percent(test_report["celeba_balanced_mean"])]
        table.add_row(*cells, style="bold")
    for name, key in (("UTKFace age group", "age_group"), ("UTKFace gender", "gender")):
        if held[key]:
            cells = [name, percent(held[key]["accuracy"]), "", percent(held[key]["majority"])]
            table.add_row(*(cells + ["", ""] if test_report else cells))
    console.print(table)
    if not held["celeba"] and not held["age_group"]:
        raise fail("no held-out faces to measure; raise --validation-fraction", 1)
    console.print(f"Trained {result.training.steps} steps -> {result.weights}", highlight=False, soft_wrap=True)
