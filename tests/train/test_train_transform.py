"""`diat train-transform` end to end on tiny data: artefacts, resume, kill, errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from diat_cli.checkpoints import load_network, read_metadata
from diat_cli.cli import app
from diat_cli.errors import ConfigError, DiatError
from diat_cli.pipelines.train_transform import train_transform
from diat_cli.settings import TrainTransformSettings

runner = CliRunner()


def _settings(tiny_sets, run_dir, **changes):
    source, reference = tiny_sets
    values = dict(
        attribute="no-eyeglasses", source=source, reference=reference, run_dir=run_dir, size=64, steps=6,
        batch_size=4, transform_channels=8, discriminator_channels=8, checkpoint_every=3, grid_every=3,
        log_every=1, denoiser_steps=2, device="cpu", seed=5,
    )
    values.update(changes)
    return TrainTransformSettings(**values)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("variant", ["a", "diat"])
def test_both_variants_write_every_artefact(tiny_sets, tmp_path, variant):
    run_dir = tmp_path / "run"
    result = train_transform(_settings(tiny_sets, run_dir, variant=variant))
    assert result.steps == 6
    for name in ("config.json", "metrics.jsonl", "transform.safetensors", "grids/step-0000000.png", "grids/step-0000006.png"):
        assert (run_dir / name).is_file(), name
    lines = _metrics(run_dir)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(value) for line in lines for value in line.values())
    metadata = read_metadata(run_dir / "transform.safetensors")
    assert metadata["attribute"] == "no-eyeglasses" and metadata["variant"] == variant
    assert metadata["size"] == 64 and metadata["steps"] == 6 and "identity" in metadata["loss_weights"]
    assert metadata["spectral_norm"] is True and metadata["fuse_mask"] is False  # the defaults
    transform, _ = load_network(run_dir / "transform.safetensors")
    assert transform(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    if variant == "diat":
        assert (run_dir / "denoiser.safetensors").is_file() and "smooth" in lines[-1]
    else:
        assert "smooth" not in lines[-1]


def test_pruned_checkpoints_keep_their_networks_as_snapshots(tiny_sets, tmp_path):
    run_dir = tmp_path / "run"
    train_transform(_settings(tiny_sets, run_dir, checkpoint_every=2))
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    assert checkpoints == ["step-0000004", "step-0000006"]  # the newest two, with optimiser state
    snapshot = run_dir / "snapshots" / "step-0000002"
    assert sorted(p.name for p in snapshot.iterdir()) == ["discriminator.safetensors", "transform.safetensors"]
    assert read_metadata(snapshot / "transform.safetensors")["steps"] == 2
    early, _ = load_network(snapshot / "transform.safetensors")
    final, _ = load_network(run_dir / "transform.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(early.state_dict().values(), final.state_dict().values()))


def test_wgan_gp_option_logs_the_penalty(tiny_sets, tmp_path):
    train_transform(_settings(tiny_sets, tmp_path / "run", gan="wgan-gp", steps=2))
    assert "gradient_penalty" in _metrics(tmp_path / "run")[-1]


def test_mask_option_trains_a_masked_transform_and_logs_its_area(tiny_sets, tmp_path):
    run_dir = tmp_path / "run"
    train_transform(_settings(tiny_sets, run_dir, fuse_mask=True, mask_weight=0.5, edit_tv_weight=2.0, edit_chroma_weight=3.0, edit_symmetry_weight=4.0, steps=3))
    areas = [line["mask_area"] for line in _metrics(run_dir)]
    assert all(0 < area < 1 for area in areas)
    edit_tv = [line["edit_tv"] for line in _metrics(run_dir)]
    assert edit_tv[0] == 0.0 and edit_tv[-1] > 0  # T starts as the identity, then edits
    edit_chroma = [line["edit_chroma"] for line in _metrics(run_dir)]
    assert edit_chroma[0] == 0.0 and edit_chroma[-1] > 0
    edit_symmetry = [line["edit_symmetry"] for line in _metrics(run_dir)]
    assert edit_symmetry[0] == 0.0 and edit_symmetry[-1] > 0
    metadata = read_metadata(run_dir / "transform.safetensors")
    assert metadata["fuse_mask"] is True and metadata["loss_weights"]["mask"] == 0.5
    assert metadata["loss_weights"]["edit_tv"] == 2.0 and metadata["loss_weights"]["edit_chroma"] == 3.0
    assert metadata["loss_weights"]["edit_symmetry"] == 4.0
    transform, _ = load_network(run_dir / "transform.safetensors")
    _, mask = transform(torch.zeros(1, 3, 64, 64), return_mask=True)
    assert mask.shape == (1, 1, 64, 64)
    with pytest.raises(ConfigError, match="--mask differs"):
        train_transform(_settings(tiny_sets, run_dir, steps=4, resume=True))


def test_two_folders_train_a_custom_attribute(tiny_sets, tmp_path):
    train_transform(_settings(tiny_sets, tmp_path / "run", attribute="Red Hat", steps=1))
    assert read_metadata(tmp_path / "run" / "transform.safetensors")["attribute"] == "red-hat"
    with pytest.raises(ConfigError, match="letters, digits and dashes"):
        train_transform(_settings(tiny_sets, tmp_path / "bad", attribute="../hat", steps=1))
    with pytest.raises(ConfigError, match="unknown attribute 'red-hat'"):  # labelled data needs a known attribute
        train_transform(_settings(tiny_sets, tmp_path / "labelled", attribute="red-hat", source=None, reference=None, data=tmp_path))


def test_resume_reproduces_the_uninterrupted_run(tiny_sets, tmp_path):
    train_transform(_settings(tiny_sets, tmp_path / "straight"))
    train_transform(_settings(tiny_sets, tmp_path / "split", steps=3))
    train_transform(_settings(tiny_sets, tmp_path / "split", steps=6, resume=True))
    straight, split = _metrics(tmp_path / "straight"), _metrics(tmp_path / "split")
    assert [line["step"] for line in split] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, split):
        for name in ("discriminator", "adversarial", "identity", "transform"):
            assert a[name] == b[name], (a["step"], name)


def test_existing_run_is_not_overwritten(tiny_sets, tmp_path):
    train_transform(_settings(tiny_sets, tmp_path / "run", steps=1))
    with pytest.raises(DiatError, match="--resume to continue it or --overwrite"):
        train_transform(_settings(tiny_sets, tmp_path / "run", steps=1))
    with pytest.raises(DiatError, match="size differs"):
        train_transform(_settings(tiny_sets, tmp_path / "run", steps=2, size=128, resume=True))


def test_dry_run_writes_config_only(tiny_sets, tmp_path):
    assert train_transform(_settings(tiny_sets, tmp_path / "run", dry_run=True)) is None
    assert json.loads((tmp_path / "run" / "config.json").read_text())["attribute"] == "no-eyeglasses"
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_bad_arguments_give_clear_errors(tiny_sets, tmp_path):
    source, reference = tiny_sets
    with pytest.raises(ConfigError, match="--variant"):
        _settings(tiny_sets, tmp_path, variant="b")
    with pytest.raises(ConfigError, match="--size"):
        _settings(tiny_sets, tmp_path, size=100)
    with pytest.raises(ConfigError, match="go together"):
        TrainTransformSettings(attribute="old", source=source)
    result = runner.invoke(app, ["train-transform", "--attr", "eyeglases", "--source", str(source), "--reference", str(reference), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "did you mean" in result.output and "eyeglasses" in result.output
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(source.iterdir())[:5]:
        (few / path.name).write_bytes(path.read_bytes())
    result = runner.invoke(app, ["train-transform", "--attr", "old", "--source", str(few), "--reference", str(reference), "--run-dir", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "source" in result.output.lower()


def test_sigkill_loses_at_most_the_steps_since_the_checkpoint(tiny_sets, tmp_path):
    source, reference = tiny_sets
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "diat_cli", "train-transform", "--attr", "old", "--source", str(source), "--reference", str(reference),
               "--run-dir", str(run_dir), "--size", "64", "--batch-size", "4", "--steps", "100000", "--checkpoint-every", "4",
               "--grid-every", "1000", "--log-every", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (latest.exists() and json.loads(latest.read_text())["step"] >= 8):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint_step = json.loads(latest.read_text())["step"]
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert checkpoint_step >= 8 and max(logged) - checkpoint_step < 4 + 1
    result = runner.invoke(app, ["train-transform", "--attr", "old", "--source", str(source), "--reference", str(reference), "--run-dir", str(run_dir),
                                 "--size", "64", "--batch-size", "4", "--steps", str(checkpoint_step + 2), "--checkpoint-every", "4",
                                 "--log-every", "1", "--device", "cpu", "--resume"])
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, checkpoint_step + 3))


@pytest.mark.slow
def test_two_process_gloo_training_matches_its_batch(tiny_sets, tmp_path):
    source, reference = tiny_sets
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533", "-m", "diat_cli",
               "train-transform", "--attr", "old", "--source", str(source), "--reference", str(reference), "--run-dir", str(run_dir),
               "--size", "64", "--batch-size", "4", "--steps", "4", "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu"]
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "config.json").read_text())["runtime"]["world_size"] == 2
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert read_metadata(run_dir / "transform.safetensors")["steps"] == 4


def test_init_starts_a_new_run_from_an_earlier_runs_networks(tiny_sets, tmp_path):
    first = tmp_path / "first"
    train_transform(_settings(tiny_sets, first, steps=6, checkpoint_every=2))
    tuned = tmp_path / "tuned"
    train_transform(_settings(tiny_sets, tuned, steps=1, init=first, learning_rate=1e-12, smooth_weight=7.0))
    before, _ = load_network(first / "transform.safetensors")
    after, _ = load_network(tuned / "transform.safetensors")
    for name, value in before.state_dict().items():
        assert torch.allclose(value, after.state_dict()[name], atol=1e-6), name
    started = json.loads((tuned / "config.json").read_text())["initialised_from"]
    assert started["steps"] == 6 and started["discriminator"].endswith("step-0000006/discriminator.safetensors")
    assert read_metadata(tuned / "transform.safetensors")["initialised_from"]["transform"] == str(first / "transform.safetensors")
    train_transform(_settings(tiny_sets, tuned, steps=2, resume=True))  # resuming keeps the record
    assert read_metadata(tuned / "transform.safetensors")["initialised_from"]["steps"] == 6
    snapshot = tmp_path / "from-snapshot"  # a pruned checkpoint kept under snapshots/ works too
    train_transform(_settings(tiny_sets, snapshot, steps=1, init=first / "snapshots" / "step-0000002"))
    assert json.loads((snapshot / "config.json").read_text())["initialised_from"]["steps"] == 2
    newest = first / "snapshots" / "step-0000006"  # the newest steps are still checkpoints: the error says where
    with pytest.raises(ConfigError, match=r"did you mean .*checkpoints/step-0000006\?"):
        train_transform(_settings(tiny_sets, tmp_path / "typo", steps=1, init=newest))
    from_checkpoint = tmp_path / "from-checkpoint"
    train_transform(_settings(tiny_sets, from_checkpoint, steps=1, init=first / "checkpoints" / "step-0000004"))
    assert json.loads((from_checkpoint / "config.json").read_text())["initialised_from"]["discriminator"].endswith(
        "checkpoints/step-0000004/discriminator.safetensors"
    )


def test_init_refuses_missing_or_mismatched_weights(tiny_sets, tmp_path):
    first = tmp_path / "first"
    train_transform(_settings(tiny_sets, first, steps=1))
    with pytest.raises(ConfigError, match="does not exist"):
        train_transform(_settings(tiny_sets, tmp_path / "a", init=tmp_path / "nowhere"))
    assert not (tmp_path / "a" / "config.json").exists()  # so the corrected command needs no --overwrite
    with pytest.raises(ConfigError, match="--transform-channels"):
        train_transform(_settings(tiny_sets, tmp_path / "b", init=first, transform_channels=16))
    with pytest.raises(ConfigError, match="only one of them"):
        _settings(tiny_sets, first, init=first, resume=True)


def test_identity_embedding_term_keeps_the_descriptors_closer(tiny_sets, tmp_path):
    """Same seed, same adversarial pull: the run that also charges the descriptor distance ends closer to x."""
    distances = {}
    for weight in (0.0, 200.0):
        run_dir = tmp_path / f"run-{weight}"
        train_transform(_settings(tiny_sets, run_dir, variant="diat", steps=8, identity_weight=0.0, smooth_weight=0.0,
                                  identity_embedding_weight=weight, learning_rate=2e-3))
        lines = _metrics(run_dir)
        assert all(math.isfinite(line["identity_embedding"]) and line["identity_embedding"] >= 0 for line in lines)
        distances[weight] = sum(line["identity_embedding"] for line in lines[2:])  # T starts as the identity: steps 1-2 tie
        assert read_metadata(run_dir / "transform.safetensors")["loss_weights"]["identity_embedding"] == weight
    assert distances[200.0] < 0.6 * distances[0.0]


def test_identity_embedding_term_refuses_variant_a(tiny_sets, tmp_path):
    with pytest.raises(ConfigError, match="--identity-embedding-weight needs --variant diat"):
        _settings(tiny_sets, tmp_path / "run", variant="a", identity_embedding_weight=1.0)
