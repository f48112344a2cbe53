"""Step-addressed batches and the device/precision decisions."""

from __future__ import annotations

import pytest
import torch

from diat_cli.errors import ConfigError
from diat_cli.train.batches import StepBatches
from diat_cli.train.runtime import setup_runtime


def _images(count=40):
    return torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 3, 2, 2).contiguous()


def test_same_step_gives_same_batch_in_a_new_object():
    first, second = StepBatches(_images(), 4, seed=3), StepBatches(_images(), 4, seed=3)
    for step in (0, 7, 23, 9):
        torch.testing.assert_close(first(step), second(step))
    assert not torch.equal(first.indices(0), StepBatches(_images(), 4, seed=4).indices(0))


def test_an_epoch_visits_every_image_once_and_ranks_are_disjoint():
    ranks = [StepBatches(_images(40), 4, seed=0, rank=r, world_size=2) for r in range(2)]
    seen = torch.cat([ranks[r].indices(step) for step in range(ranks[0].steps_per_epoch) for r in range(2)])
    assert sorted(seen.tolist()) == list(range(40))


def test_batches_are_in_signed_unit_range():
    batch = StepBatches(_images(), 4, seed=0)(0)
    assert batch.shape == (4, 3, 2, 2) and batch.min() >= -1 and batch.max() <= 1


def test_too_few_images_for_a_batch():
    with pytest.raises(ValueError, match="cannot fill one batch"):
        StepBatches(_images(3), 4, seed=0)


def test_cpu_runtime_defaults_to_fp32_and_rejects_impossible_choices():
    runtime = setup_runtime("cpu")
    assert runtime.device.type == "cpu" and runtime.precision == "fp32" and runtime.is_main
    assert setup_runtime("cpu", "bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        setup_runtime("cpu", "fp16")
    with pytest.raises(ConfigError, match="--device"):
        setup_runtime("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            setup_runtime("cuda")


def test_bf16_autocast_runs_on_cpu():
    runtime = setup_runtime("cpu", "bf16")
    with runtime.autocast():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16
