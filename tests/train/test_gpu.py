"""The CUDA paths: training in bf16 and in fp16 with a grad scaler, resuming, E, and editing.

Skipped without CUDA (every CI machine); run on a lent GPU by `bash benchmarks/gpu_check.sh`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from diat_cli.checkpoints import load_network, read_metadata
from diat_cli.nets import TransformNetwork
from diat_cli.pipelines.train_enhance import train_enhance
from diat_cli.pipelines.train_transform import train_transform
from diat_cli.settings import TrainEnhanceSettings
from diat_cli.train.runtime import setup_runtime
from test_train_transform import _metrics, _settings as transform_settings  # the same tiny runs, on CUDA

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _settings(tiny_sets, run_dir, **changes):
    return transform_settings(tiny_sets, run_dir, **{"device": "cuda", **changes})


def test_auto_precision_on_cuda_is_mixed():
    runtime = setup_runtime("auto")
    assert runtime.device.type == "cuda"
    assert runtime.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")


@pytest.mark.parametrize(("variant", "precision"), [("a", "auto"), ("a", "fp16"), ("diat", "auto")])
def test_training_on_cuda_writes_finite_losses_and_weights_that_load_on_cpu(tiny_sets, tmp_path, variant, precision):
    run_dir = tmp_path / "run"
    result = train_transform(_settings(tiny_sets, run_dir, variant=variant, precision=precision))
    assert result.steps == 6
    lines = _metrics(run_dir)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(value) for line in lines for value in line.values())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["runtime"]["device"].startswith("cuda") and config["runtime"]["precision"] in ("bf16", "fp16")
    transform, _ = load_network(run_dir / "transform.safetensors")  # loads on CPU, fp32
    assert transform(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert read_metadata(run_dir / "transform.safetensors")["steps"] == 6


def test_resume_on_cuda_continues_at_the_exact_step(tiny_sets, tmp_path):
    run_dir = tmp_path / "run"
    train_transform(_settings(tiny_sets, run_dir, steps=3))
    train_transform(_settings(tiny_sets, run_dir, steps=6, resume=True))
    assert [line["step"] for line in _metrics(run_dir)] == [1, 2, 3, 4, 5, 6]


def test_enhance_trains_on_cuda(tiny_sets, tmp_path):
    run_dir = tmp_path / "run"
    train_transform(_settings(tiny_sets, run_dir, steps=3))
    train_enhance(TrainEnhanceSettings(attribute="no-eyeglasses", transform=run_dir, steps=3, batch_size=4,
                                       enhance_channels=8, enhance_blocks=1, checkpoint_every=3, grid_every=3, device="cuda"))
    assert (run_dir / "enhance.safetensors").is_file()


def test_the_editor_gives_the_same_edit_on_cuda_as_on_cpu(tmp_path):
    from diat_cli.checkpoints import save_network
    from diat_cli.editing import load_editor

    torch.manual_seed(0)
    network = TransformNetwork(channels=8, residual_blocks=1)
    path = tmp_path / "transform.safetensors"
    save_network(path, network, {"channels": 8, "residual_blocks": 1}, {"kind": "transform", "attribute": "old", "size": 64})
    crops = torch.rand(4, 3, 128, 128) * 2 - 1
    on_cpu = load_editor(weights=path, device="cpu", colour_blur=1.2)(crops)
    on_cuda = load_editor(weights=path, device="cuda", colour_blur=1.2)(crops)
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=2e-3, rtol=0)
