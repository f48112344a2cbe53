"""The training benchmark's claim, checked small: the trainer does a fifth less work per step than the plain loop."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def train_speed():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("train_speed", BENCHMARKS / "train_speed.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = [entry for entry in sys.path if entry != str(BENCHMARKS)]


def test_trainer_does_less_work_per_step_than_the_plain_loop(train_speed):
    import torch

    device = torch.device("cpu")
    plain_rate, plain_flops, plain_losses = train_speed.plain_loop(None, 32, steps=1, warmup=1, device=device)
    rate, flops, losses = train_speed.shipped_trainer(None, 32, steps=1, warmup=1, compile_networks=False, device="cpu")
    assert plain_rate > 0 and rate > 0
    # T runs once per step instead of twice and D's weights get no gradients in the T step.
    assert 0.7 < flops / plain_flops < 0.9
    for values in (plain_losses, losses):
        assert set(values) == {"discriminator", "adversarial"}
        assert all(math.isfinite(value) for value in values.values())


def test_loss_means_average_the_timed_steps(train_speed):
    import torch

    means = train_speed.LossMeans()
    means.add(torch.tensor(1.0), torch.tensor(4.0))
    means.add(torch.tensor(3.0), torch.tensor(0.0))
    assert means.means() == {"discriminator": 2.0, "adversarial": 2.0}
