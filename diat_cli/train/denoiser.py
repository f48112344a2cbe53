"""The perceptual regulariser f of variant DIAT, trained once per run before T.

g learns to reproduce x from x under the identity loss alone, so its outputs carry the typical
perceptual-loss artefacts; f then learns to remove them (||f(g(x)) - x||^2) while leaving clean
faces alone (||f(x) - x||^2). During T's training, ||f(T(x)) - T(x)||^2 penalises such artefacts.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from diat_cli.losses import perceptual_loss
from diat_cli.nets.denoise import DenoiseNetwork
from diat_cli.nets.transform import TransformNetwork
from diat_cli.progress import Reporter, SilentReporter
from diat_cli.train.runtime import Runtime, average_gradients

DENOISER_CONFIG = {"channels": 32}


def train_denoiser(
    next_batch: Callable[[int], torch.Tensor],
    identity_features: Callable[[torch.Tensor], list[torch.Tensor]],
    runtime: Runtime,
    steps: int,
    learning_rate: float = 1e-3,
    reporter: Reporter | None = None,
) -> DenoiseNetwork:
    """Train g, then f; returns f (frozen, eval mode). next_batch(step): N x 3 x H x W in [-1, 1]."""
    reporter = reporter or SilentReporter()
    reconstructor = runtime.prepare(TransformNetwork(channels=16, input_skip=False))  # not identity at start, or g has nothing to learn
    optimizer = torch.optim.Adam(reconstructor.parameters(), lr=learning_rate)
    reporter.start("Denoiser: perceptual reconstruction g", steps)
    for step in range(steps):
        images = runtime.images(next_batch(step))
        with runtime.autocast():
            with torch.no_grad():
                target = identity_features(images)
            output = identity_features(reconstructor(images))
        loss = perceptual_loss([o.float() for o in output], [t.float() for t in target], [1.0] * len(output))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients([reconstructor], runtime)
        optimizer.step()
        reporter.advance()
        reporter.metrics({"identity": float(loss.detach())})
    reporter.finish()

    denoiser = runtime.prepare(DenoiseNetwork(**DENOISER_CONFIG))
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=learning_rate)
    reconstructor.eval()
    reporter.start("Denoiser: artefact removal f", steps)
    for step in range(steps):
        images = runtime.images(next_batch(steps + step))
        with torch.no_grad(), runtime.autocast():
            artefacts = reconstructor(images).float()
        loss = F.mse_loss(denoiser(artefacts), images) + F.mse_loss(denoiser(images), images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients([denoiser], runtime)
        optimizer.step()
        reporter.advance()
        reporter.metrics({"denoise": float(loss.detach())})
    reporter.finish()
    denoiser.eval()
    for parameter in denoiser.parameters():
        parameter.requires_grad_(False)
    return denoiser
