"""`diat train-enhance` (stage 2) on tiny data: artefacts, what E learns, masks, resume, errors."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from diat_cli.checkpoints import load_network, read_metadata, save_network
from diat_cli.cli import app
from diat_cli.data import FaceImages
from diat_cli.editing import load_editor
from diat_cli.errors import ConfigError
from diat_cli.face.align import TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE
from diat_cli.face.masks import region_mask
from diat_cli.nets.transform import TransformNetwork
from diat_cli.pipelines.train_enhance import (
    attribute_mask,
    load_split,
    plan_run,
    resolve_recorded_path,
    train_enhance,
)
from diat_cli.pipelines.train_transform import train_transform
from diat_cli.settings import TrainEnhanceSettings, TrainTransformSettings
from diat_cli.train.enhance import (
    EnhanceStage,
    default_blur_sigma,
    outside_and_inside_psnr,
)
from diat_cli.metrics import MAX_PSNR
from diat_cli.metrics import psnr_per_image as masked_psnr
from diat_cli.train.runtime import setup_runtime

runner = CliRunner()


def _train_tiny_transform(tiny_sets, run_dir, attribute, steps):
    source, reference = tiny_sets
    train_transform(
        TrainTransformSettings(
            attribute=attribute, source=source, reference=reference, run_dir=run_dir, size=64, steps=steps, batch_size=4,
            transform_channels=8, discriminator_channels=8, checkpoint_every=steps, grid_every=steps, log_every=steps, device="cpu",
        )
    )
    return run_dir


@pytest.fixture(scope="module")
def transform_runs(tiny_sets, tmp_path_factory):
    """Tiny finished transform runs: a local attribute (no-eyeglasses) and a global one (old)."""
    root = tmp_path_factory.mktemp("transforms")
    return {
        "local": _train_tiny_transform(tiny_sets, root / "no-eyeglasses-a", "no-eyeglasses", steps=4),
        "global": _train_tiny_transform(tiny_sets, root / "old-a", "old", steps=2),
    }


@pytest.fixture
def local_run(transform_runs, tmp_path):
    """A private copy of the local transform run (E writes into the transform's folder)."""
    return shutil.copytree(transform_runs["local"], tmp_path / "no-eyeglasses-a")


@pytest.fixture
def global_run(transform_runs, tmp_path):
    return shutil.copytree(transform_runs["global"], tmp_path / "old-a")


def _settings(transform, **changes):
    values = dict(
        transform=transform, steps=4, batch_size=4, enhance_channels=8, enhance_blocks=1, checkpoint_every=2, grid_every=2,
        log_every=1, device="cpu", seed=3,
    )
    values.update(changes)
    return TrainEnhanceSettings(**values)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- end to end ----------------------------------------------------------------------------
def test_local_attribute_run_writes_every_artefact_beside_the_transform(local_run):
    transform_digest = _digest(local_run / "transform.safetensors")
    result = train_enhance(_settings(local_run / "transform.safetensors"))
    assert result.steps == 4
    run_dir = local_run / "enhance"
    for name in ("config.json", "metrics.jsonl", "grids/step-0000000.png", "grids/step-0000004.png", "checkpoints/latest.json"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints" / "step-0000004").iterdir()) == ["enhance.safetensors", "state.pt"]
    assert _digest(local_run / "transform.safetensors") == transform_digest  # T is frozen and untouched
    assert (local_run / "checkpoints" / "latest.json").is_file()  # T's own checkpoints are left alone
    lines = _metrics(run_dir)
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert {"outside", "inside", "enhance"} <= set(lines[-1]) and all(math.isfinite(v) for line in lines for v in line.values())
    with Image.open(run_dir / "grids" / "step-0000004.png") as grid:
        assert grid.size == (4 * 64, 3 * 64)  # the 4 held-out source faces; rows x, T(x), E(T(x))
    metadata = read_metadata(local_run / "enhance.safetensors")
    assert metadata["kind"] == "enhance" and metadata["class"] == "EnhanceNetwork"
    assert metadata["attribute"] == "no-eyeglasses" and metadata["mode"] == "local" and metadata["region"] == "eyes"
    assert metadata["size"] == 64 and metadata["steps"] == 4 and metadata["loss"]["inside"] == "identity"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["source"] and config["size"] == 64 and config["validation_fraction"] == 0.05  # taken from the transform run
    editor = load_editor(weights=local_run)
    assert editor.enhance is not None and editor(torch.zeros(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    assert load_editor(weights=local_run, use_enhance=False).enhance is None


def test_global_attribute_run_learns_to_deblur(global_run):
    train_enhance(_settings(global_run, inside_loss="pixel"))
    lines = _metrics(global_run / "enhance")
    assert "deblur" in lines[-1] and "outside" not in lines[-1]
    metadata = read_metadata(global_run / "enhance.safetensors")
    assert metadata["attribute"] == "old" and metadata["mode"] == "global" and metadata["region"] is None
    assert metadata["loss"]["blur_sigma"] == pytest.approx(1.0)
    for name in ("grids/step-0000004.png", "checkpoints/latest.json"):
        assert (global_run / "enhance" / name).is_file()
    assert load_editor(weights=global_run / "transform.safetensors").enhance is not None


def test_e_gives_back_the_input_outside_the_region_better_than_t(local_run):
    """Measured on held-out faces: (1 - m)-weighted PSNR between input and output, T alone vs T then E."""
    train_enhance(_settings(local_run, steps=15, learning_rate=2e-3, checkpoint_every=100, grid_every=100, log_every=5))
    settings = _settings(local_run)
    split = load_split(plan_run(settings))
    faces = FaceImages(split.val_source, 64, flip=False, preload=True).pixels.float().div(127.5).sub(1)
    transform, _ = load_network(local_run / "transform.safetensors")
    enhance, _ = load_network(local_run / "enhance.safetensors")
    with torch.no_grad():
        edited = transform(faces)
        enhanced = enhance(edited)
    outside = 1 - region_mask("eyes", 64)
    t_error = (outside * (edited - faces).pow(2)).sum() / outside.expand_as(faces).sum()
    te_error = (outside * (enhanced - faces).pow(2)).sum() / outside.expand_as(faces).sum()
    assert te_error < 0.5 * t_error, (float(t_error), float(te_error))
    psnr = outside_and_inside_psnr(faces, edited, enhanced, region_mask("eyes", 64))
    assert psnr["outside_te"] > psnr["outside_t"] + 3.0, psnr


def test_resume_reproduces_the_uninterrupted_run(local_run, tmp_path):
    def settings(name, **changes):
        return _settings(local_run, run_dir=tmp_path / name, output=tmp_path / f"{name}.safetensors", inside_loss="pixel", **changes)

    train_enhance(settings("straight"))
    train_enhance(settings("split", steps=2))
    train_enhance(settings("split", steps=4, resume=True))
    straight, split = _metrics(tmp_path / "straight"), _metrics(tmp_path / "split")
    assert [line["step"] for line in split] == [1, 2, 3, 4]
    for a, b in zip(straight, split):
        for name in ("outside", "inside", "enhance"):
            assert a[name] == b[name], (a["step"], name)
    first, _ = load_network(tmp_path / "straight.safetensors")
    second, _ = load_network(tmp_path / "split.safetensors")
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_existing_run_is_kept_unless_asked(local_run):
    train_enhance(_settings(local_run, steps=1, inside_loss="pixel"))
    with pytest.raises(ConfigError, match="--resume to continue it or --overwrite"):
        train_enhance(_settings(local_run, steps=1, inside_loss="pixel"))
    with pytest.raises(ConfigError, match="batch size differs"):
        train_enhance(_settings(local_run, steps=2, batch_size=8, resume=True, inside_loss="pixel"))
    train_enhance(_settings(local_run, steps=2, overwrite=True, inside_loss="pixel"))
    assert read_metadata(local_run / "enhance.safetensors")["steps"] == 2


def test_dry_run_writes_config_only(local_run):
    assert train_enhance(_settings(local_run, dry_run=True)) is None
    config = json.loads((local_run / "enhance" / "config.json").read_text())
    assert config["attribute"] == "no-eyeglasses" and config["mode"] == "local" and config["region"] == "eyes"
    assert not (local_run / "enhance.safetensors").exists() and not (local_run / "enhance" / "metrics.jsonl").exists()


# --- masks follow the template -------------------------------------------------------------
def _at(mask, point):
    size = mask.shape[-1]
    return float(mask[0, 0, int(point[1] * size), int(point[0] * size)])


@pytest.mark.parametrize("size", [64, 128, 256])
def test_mask_geometry_follows_the_template_at_every_size(size):
    eyes = attribute_mask("no-eyeglasses", size)
    assert eyes.shape == (1, 1, size, size) and 0 <= eyes.min() and eyes.max() <= 1
    assert _at(eyes, TEMPLATE_LEFT_EYE) > 0.99 and _at(eyes, TEMPLATE_RIGHT_EYE) > 0.99
    assert _at(eyes, (0.5, 0.76)) < 0.01 and eyes[0, 0, 0, 0] < 1e-3 and eyes[0, 0, -1, -1] < 1e-3
    mouth = attribute_mask("smiling", size)
    assert _at(mouth, (0.5, 0.76)) > 0.99 and _at(mouth, TEMPLATE_LEFT_EYE) < 0.01
    assert attribute_mask("old", size) is None and attribute_mask("female", size) is None
    for mask, region in ((eyes, "eyes"), (mouth, "mouth")):
        reference = region_mask(region, 64)
        assert (F.interpolate(mask, size=64, mode="area") - reference).abs().max() < 0.03  # one shape at every size
        rows, columns = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        centre = torch.stack([(mask[0, 0] * columns).sum(), (mask[0, 0] * rows).sum()]) / mask.sum() / size
        eye_centre = torch.tensor([(TEMPLATE_LEFT_EYE[0] + TEMPLATE_RIGHT_EYE[0]) / 2, (TEMPLATE_LEFT_EYE[1] + TEMPLATE_RIGHT_EYE[1]) / 2])
        if region == "eyes":
            assert (centre - eye_centre).abs().max() < 0.05
        else:
            assert abs(float(centre[0]) - float(eye_centre[0])) < 0.01 and centre[1] > eye_centre[1] + 0.2


def _transform_at(folder, tiny_sets, size, attribute="no-eyeglasses"):
    """A transform run folder with an untrained T of the given size (stage 2 only reads it)."""
    folder.mkdir(parents=True)
    network = TransformNetwork(channels=4, residual_blocks=0)
    torch.nn.init.normal_(network.to_rgb[1].weight, std=0.05)
    save_network(folder / "transform.safetensors", network, {"channels": 4, "residual_blocks": 0},
                 {"kind": "transform", "attribute": attribute, "size": size, "variant": "a", "data_folder": str(tiny_sets[0]), "steps": 0})
    source, reference = tiny_sets
    (folder / "config.json").write_text(json.dumps({"source": str(source), "reference": str(reference), "run_dir": str(folder)}))
    return folder


@pytest.mark.parametrize("size", [128, 256])
def test_training_runs_at_the_transforms_size(tiny_sets, tmp_path, size):
    run = _transform_at(tmp_path / f"t{size}", tiny_sets, size)
    train_enhance(_settings(run, steps=1, batch_size=2, inside_loss="pixel", enhance_channels=4, enhance_blocks=0))
    assert read_metadata(run / "enhance.safetensors")["size"] == size
    with Image.open(run / "enhance" / "grids" / "step-0000001.png") as grid:
        assert grid.size[1] == 3 * size
    with pytest.raises(ConfigError, match="T's size"):
        plan_run(_settings(run, size=64))


# --- pieces --------------------------------------------------------------------------------
def test_stage_checkpoints_e_only_and_never_changes_t():
    runtime = setup_runtime("cpu", "fp32", False)
    transform = TransformNetwork(channels=4, residual_blocks=0)
    before = {k: v.clone() for k, v in transform.state_dict().items()}
    from diat_cli.nets.enhance import EnhanceNetwork

    stage = EnhanceStage(EnhanceNetwork(4, 0), transform, runtime, {"channels": 4, "blocks": 0}, mask=region_mask("eyes", 32), inside_loss="pixel")
    assert list(stage.networks()) == ["enhance"] and stage.mode == "local"
    for step in range(2):
        losses = stage.train_step(torch.rand(2, 3, 32, 32) * 2 - 1, step)
        assert set(losses) == {"outside", "inside", "enhance"}
    for name, value in transform.state_dict().items():
        assert torch.equal(value, before[name]), name
    rows = stage.preview(torch.zeros(3, 3, 32, 32))
    assert len(rows) == 3 and all(row.shape == (3, 3, 32, 32) for row in rows)
    blur_stage = EnhanceStage(EnhanceNetwork(4, 0), transform, runtime, {"channels": 4, "blocks": 0}, blur_sigma=2.0, seed=1)
    assert blur_stage.mode == "global" and set(blur_stage.train_step(torch.zeros(2, 3, 32, 32), 0)) == {"deblur", "enhance"}
    sigmas = [blur_stage.blur_sigma_at(step) for step in range(20)]
    assert all(1.0 <= s <= 3.0 for s in sigmas) and len(set(sigmas)) > 1 and sigmas[3] == blur_stage.blur_sigma_at(3)
    with pytest.raises(ValueError, match="identity"):
        EnhanceStage(EnhanceNetwork(4, 0), transform, runtime, {}, mask=region_mask("eyes", 32), inside_loss="identity")


def test_masked_psnr_and_blur_scale():
    target = torch.zeros(2, 3, 8, 8)
    output = target.clone()
    output[..., :4] += 0.2  # error 0.1 on the [0, 1] scale, left half only
    weight = torch.zeros(1, 1, 8, 8)
    weight[..., :4] = 1
    torch.testing.assert_close(masked_psnr(output, target, weight), torch.full((2,), 20.0, dtype=torch.float64))
    assert (masked_psnr(output, target, 1 - weight) == MAX_PSNR).all()  # identical pixels: the cap
    with pytest.raises(ValueError):
        masked_psnr(output, target[:1], weight)
    assert default_blur_sigma(64) == 1.0 and default_blur_sigma(256, 0.5) == 2.0


def test_recorded_relative_data_folder_is_found_from_the_run(tmp_path, monkeypatch):
    (tmp_path / "work" / "aligned").mkdir(parents=True)
    run = tmp_path / "work" / "runs" / "x"
    run.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_recorded_path("aligned", run, "runs/x") == tmp_path / "work" / "aligned"
    assert resolve_recorded_path("aligned", run, str(run)) == tmp_path / "work" / "aligned"  # via the run's ancestors
    assert resolve_recorded_path("missing", run, "runs/x") is None


# --- command line --------------------------------------------------------------------------
def test_cli_trains_and_reports_errors(local_run, tmp_path):
    result = runner.invoke(app, ["train-enhance", "--transform", str(local_run), "--steps", "2", "--batch-size", "4", "--enhance-channels", "4",
                                 "--enhance-blocks", "0", "--inside-loss", "pixel", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Trained 2 steps of E" in result.output and (local_run / "enhance.safetensors").is_file()
    result = runner.invoke(app, ["train-enhance", "--transform", str(local_run), "--attr", "old", "--overwrite"])
    assert result.exit_code == 2 and "trained for 'no-eyeglasses'" in result.output
    result = runner.invoke(app, ["train-enhance", "--transform", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such weights file or run folder" in result.output
    result = runner.invoke(app, ["train-enhance", "--transform", str(local_run), "--inside-loss", "vgg"])
    assert result.exit_code == 2 and "--inside-loss" in result.output
    result = runner.invoke(app, ["train-enhance", "--transform", str(local_run), "--data", str(tmp_path / "none"), "--overwrite"])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_core_modules_do_not_import_the_cli_libraries():
    code = (
        "import sys, diat_cli.pipelines.train_enhance, diat_cli.train.enhance; "
        "assert not {'typer', 'rich'} & set(sys.modules), sorted({'typer', 'rich'} & set(sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0
