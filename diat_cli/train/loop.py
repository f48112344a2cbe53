"""The training loop every stage shares: steps, logs, grids, checkpoints, resume, interrupts.

A stage (transform, enhance, classifier, ...) supplies its networks, optimisers and one
`train_step`; the loop owns everything around it, so a new variant is a new stage or a new
loss, never a new loop.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from diat_cli.checkpoints import load_network, load_training_state, save_network, save_training_state
from diat_cli.errors import DiatError
from diat_cli.imageio import write_image, write_text_atomic
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.train.runtime import Runtime, all_reduce_mean, broadcast_parameters

CHECKPOINT_FOLDER = "checkpoints"
LATEST = "latest.json"
METRICS = "metrics.jsonl"
KEEP_CHECKPOINTS = 2  # with optimiser state, for --resume; older ones keep only their networks
SNAPSHOT_FOLDER = "snapshots"


class TrainingStage(Protocol):
    """What the loop needs from a stage."""

    def networks(self) -> dict[str, torch.nn.Module]:
        """Every network whose weights change (saved in checkpoints), by file name."""

    def network_configs(self) -> dict[str, dict[str, Any]]:
        """Constructor arguments of each network, to rebuild it from its weights file."""

    def optimizer_states(self) -> dict[str, Any]: ...

    def load_optimizer_states(self, states: dict[str, Any]) -> None: ...

    def train_step(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the detached loss terms by name."""

    def preview(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Rows of the progress grid (each N x 3 x H x W in [-1, 1]) for fixed inputs."""


@dataclass(frozen=True)
class LoopOptions:
    steps: int
    checkpoint_every: int = 500
    grid_every: int = 250
    log_every: int = 10
    exported: tuple[str, ...] = ()  # networks written as final <name>.safetensors
    export_dtype: torch.dtype | None = None


@dataclass
class TrainingResult:
    run_dir: Path
    steps: int
    last_losses: dict[str, float]
    images_per_second: float
    resumed_from: int


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint folder of a run and its step, if any."""
    pointer = run_dir / CHECKPOINT_FOLDER / LATEST
    if not pointer.is_file():
        return None
    info = json.loads(pointer.read_text())
    folder = run_dir / CHECKPOINT_FOLDER / info["folder"]
    return (folder, int(info["step"])) if folder.is_dir() else None


def saved_networks(run_dir: Path, name: str = "transform") -> list[tuple[int, Path]]:
    """(step, file) of every saved `name` network of a run, snapshots and checkpoints, by step."""
    found = {}
    for folder in (SNAPSHOT_FOLDER, CHECKPOINT_FOLDER):
        for step_dir in sorted((run_dir / folder).glob("step-*")):
            if (step_dir / f"{name}.safetensors").is_file():
                found[int(step_dir.name.split("-")[1])] = step_dir / f"{name}.safetensors"
    return sorted(found.items())


def save_checkpoint(run_dir: Path, stage: TrainingStage, step: int, extra_state: dict[str, Any], metadata: dict[str, Any] | None = None) -> Path:
    """Write every network plus optimiser/RNG state into a new folder, then point latest.json at it.

    The folder is renamed into place only when complete, so a kill at any moment leaves
    the previous checkpoint intact.
    """
    root = run_dir / CHECKPOINT_FOLDER
    name = f"step-{step:07d}"
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    configs = stage.network_configs()
    for network_name, network in stage.networks().items():
        save_network(staging / f"{network_name}.safetensors", network, configs[network_name], {**(metadata or {}), "kind": network_name, "steps": step})
    state = {
        "step": step,
        "optimizers": stage.optimizer_states(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _numpy_rng_state(),
        **extra_state,
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_training_state(staging / "state.pt", state)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    write_text_atomic(root / LATEST, json.dumps({"folder": name, "step": step}) + "\n")
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP_CHECKPOINTS]:
        _keep_snapshot(run_dir, old)
        shutil.rmtree(old, ignore_errors=True)
    return final


def _keep_snapshot(run_dir: Path, checkpoint: Path) -> None:
    """Keep a pruned checkpoint's networks (not its optimiser state) under snapshots/step-N/.

    GAN training oscillates: the last step is often not the best one, so every checkpointed
    network stays available for choosing afterwards (tools/pick_snapshot.py); the weights are
    small next to the optimiser state, which only resuming needs.
    """
    target = run_dir / SNAPSHOT_FOLDER / checkpoint.name
    if target.is_dir():
        return
    staging = run_dir / SNAPSHOT_FOLDER / f".{checkpoint.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for network_file in checkpoint.glob("*.safetensors"):
        network_file.rename(staging / network_file.name)  # the checkpoint folder is deleted next
    staging.rename(target)


def _numpy_rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)}


def restore_checkpoint(folder: Path, stage: TrainingStage, runtime: Runtime) -> dict[str, Any]:
    """Load a checkpoint folder into the stage's networks and optimisers; returns the state dict."""
    for network_name, network in stage.networks().items():
        loaded, _ = load_network(folder / f"{network_name}.safetensors")
        target = getattr(network, "_orig_mod", network)
        target.load_state_dict(loaded.state_dict())
    state = load_training_state(folder / "state.pt")
    stage.load_optimizer_states(state["optimizers"])
    torch.set_rng_state(state["torch_rng"])
    numpy_state = state["numpy_rng"]
    np.random.set_state(
        ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached"])
    )
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    broadcast_parameters(list(stage.networks().values()), runtime)
    return state


def save_grid(path: Path, rows: list[torch.Tensor]) -> None:
    """Write rows of N x 3 x H x W images in [-1, 1] as one PNG (row k = rows[k])."""
    strips = []
    for row in rows:
        row = row.detach().float().cpu().clamp(-1, 1)
        strips.append(torch.cat(list(row), dim=2))  # 3 x H x (N*W)
    grid = torch.cat(strips, dim=1)
    pixels = ((grid + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    write_image(path, pixels)


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError):
            continue
    write_text_atomic(path, "".join(kept))


class _StopRequested(Exception):
    pass


def run_training(
    stage: TrainingStage,
    next_batch: Callable[[int], Any],
    run_dir: Path,
    options: LoopOptions,
    runtime: Runtime,
    preview_images: torch.Tensor,
    metadata: dict[str, Any],
    resume: bool = False,
    reporter: Reporter | None = None,
    images_per_step: int = 1,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainingResult:
    """Train `stage` for options.steps steps, writing logs, grids and checkpoints under run_dir.

    next_batch(step) must return the same batch for the same step (that is what makes
    --resume continue exactly). Ctrl-C or SIGTERM saves a checkpoint and stops cleanly.
    """
    reporter = reporter or SilentReporter()
    start_step = 0
    if resume:
        found = latest_checkpoint(run_dir)
        if found is None:
            raise DiatError(f"{run_dir}: no checkpoint to resume from")
        restore_checkpoint(found[0], stage, runtime)
        start_step = found[1]
    metrics_path = run_dir / METRICS
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            _truncate_metrics(metrics_path, start_step)
        elif metrics_path.exists():
            metrics_path.unlink()

    def request_stop(signum, frame):
        raise _StopRequested()

    previous_handler = signal.signal(signal.SIGTERM, request_stop) if _in_main_thread() else None
    sums: dict[str, torch.Tensor] = {}
    count = 0
    last_losses: dict[str, float] = {}
    step = start_step
    interval_start, interval_steps, rate = time.perf_counter(), 0, 0.0
    reporter.start(f"Training ({run_dir.name})", options.steps)
    reporter.advance(start_step)
    log = open(metrics_path, "a", encoding="utf-8") if runtime.is_main else None
    try:
        if runtime.is_main and start_step == 0:
            save_grid(run_dir / "grids" / f"step-{0:07d}.png", stage.preview(preview_images))
        while step < options.steps:
            losses = stage.train_step(next_batch(step), step)
            step += 1
            interval_steps += 1
            count += 1
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            if step % options.log_every == 0 or step == options.steps or step % options.checkpoint_every == 0:
                values = {name: float(total) / count for name, total in sums.items()}
                values = all_reduce_mean(values, runtime)
                bad = [name for name, value in values.items() if not math.isfinite(value)]
                if bad:
                    found = latest_checkpoint(run_dir)
                    kept = f"the last good checkpoint (step {found[1]}) is kept" if found else "no checkpoint was written yet"
                    raise DiatError(
                        f"training diverged: {', '.join(bad)} became NaN or Inf by step {step}; {kept} in {run_dir}. "
                        "Try a lower --lr or fp32 precision."
                    )
                elapsed = time.perf_counter() - interval_start
                rate = interval_steps * images_per_step * runtime.world_size / max(elapsed, 1e-9)
                values["images_per_second"] = rate
                last_losses = values
                if log is not None:
                    log.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in values.items()}}) + "\n")
                    log.flush()
                if on_log is not None:
                    on_log(step, values)
                reporter.metrics({k: v for k, v in values.items() if k != "images_per_second"} | {"img/s": rate})
                sums, count = {}, 0
                interval_start, interval_steps = time.perf_counter(), 0
            reporter.advance()
            if runtime.is_main and (step % options.grid_every == 0 or step == options.steps):
                save_grid(run_dir / "grids" / f"step-{step:07d}.png", stage.preview(preview_images))
            if step % options.checkpoint_every == 0 or step == options.steps:
                if runtime.is_main:
                    save_checkpoint(run_dir, stage, step, {}, metadata)
    except (KeyboardInterrupt, _StopRequested):
        if runtime.is_main and step > start_step:
            save_checkpoint(run_dir, stage, step, {}, metadata)
        raise DiatError(f"stopped at step {step}; checkpoint saved in {run_dir}; continue with --resume") from None
    finally:
        reporter.finish()
        if log is not None:
            log.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)

    if runtime.is_main:
        configs = stage.network_configs()
        networks = stage.networks()
        for name in options.exported:
            save_network(
                run_dir / f"{name}.safetensors",
                networks[name],
                configs[name],
                {**metadata, "steps": step, "final_losses": {k: round(v, 5) for k, v in last_losses.items()}},
                dtype=options.export_dtype,
            )
    return TrainingResult(run_dir, step, last_losses, rate, start_step)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
