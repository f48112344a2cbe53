"""Stage 1 of DIAT: the transform network T against the attribute discriminator D.

Objective (METHOD.md): adversarial + identity_weight * perceptual identity loss
(+ smooth_weight * ||f(T(x)) - T(x)||^2 for variant "diat"; + mask_weight * mean mask area
when T fuses its output with its input through a mask, as the journal version does; + edit_tv_weight
* total variation of the edit T(x) - x, an option against coloured specks; + edit_chroma_weight
* the edit's change of chroma, an option against smooth colour blotches; + edit_symmetry_weight
* the edit's left-right asymmetry, an option against a lens over one eye; + identity_embedding_weight
* the squared distance between the face-recognition descriptors of T(x) and x, variant "diat" only,
an option that holds the very quantity verification thresholds). Variant "diat" measures identity
on the face-recognition network's stage features; variant "a" (DIAT-A) on D's 4th and 5th
feature maps, so the identity network adapts as D trains.
"""

from __future__ import annotations

from typing import Any

import torch

from diat_cli.losses import (
    discriminator_loss_gan,
    discriminator_loss_wgan,
    edit_asymmetry,
    edit_chroma_change,
    edit_total_variation,
    generator_loss_gan,
    generator_loss_wgan,
    gradient_penalty,
    perceptual_loss,
    smoothness_loss,
)
from diat_cli.train.runtime import Runtime, average_gradients

DISCRIMINATOR_IDENTITY_LAYERS = (3, 4)  # D's 4th and 5th convolutional feature maps (DIAT-A)
IDENTITY_NETWORK_LAYERS = (2, 3)  # the face-recognition ResNet's last two residual stages (DIAT)


def set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


class IdentityFeatures:
    """Stage features of the face-recognition network for canonical crops in [-1, 1] (variant diat)."""

    def __init__(self, network: torch.nn.Module, layers: tuple[int, ...] = IDENTITY_NETWORK_LAYERS):
        from diat_cli.face.identity import face_chips

        self.network = network
        self.layers = layers
        self._chips = face_chips

    def __call__(self, crops: torch.Tensor) -> list[torch.Tensor]:
        return self.with_descriptors(crops)[1]

    def with_descriptors(self, crops: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(N x 128 descriptors, the stage features): one pass gives both."""
        chips = self._chips(crops.float())
        descriptors, features = self.network(chips, return_features=True)
        return descriptors, [features[i] for i in self.layers]


class TransformStage:
    """One T step then one D step per batch of (source faces, reference faces)."""

    def __init__(
        self,
        transform: torch.nn.Module,
        discriminator: torch.nn.Module,
        runtime: Runtime,
        network_configs: dict[str, dict[str, Any]],
        variant: str = "a",
        gan: str = "gan",
        learning_rate: float = 2e-4,
        adversarial_weight: float = 1.0,
        identity_weight: float = 1.0,
        smooth_weight: float = 0.0,
        gradient_penalty_weight: float = 10.0,
        mask_weight: float = 0.0,
        edit_tv_weight: float = 0.0,
        edit_chroma_weight: float = 0.0,
        edit_symmetry_weight: float = 0.0,
        identity_embedding_weight: float = 0.0,
        identity_features: IdentityFeatures | None = None,
        denoiser: torch.nn.Module | None = None,
    ):
        if variant == "diat" and identity_features is None:
            raise ValueError("variant 'diat' needs the identity network's features")
        if identity_embedding_weight > 0 and variant != "diat":
            raise ValueError("the identity embedding term needs variant 'diat' (the face-recognition network)")
        self.transform = transform
        self.discriminator = discriminator
        self.runtime = runtime
        self._configs = network_configs
        self.variant = variant
        self.gan = gan
        self.adversarial_weight = adversarial_weight
        self.identity_weight = identity_weight
        self.smooth_weight = smooth_weight if variant == "diat" else 0.0  # DIAT-A has no smoothness term
        self.gradient_penalty_weight = gradient_penalty_weight
        self.mask_weight = mask_weight
        self.edit_tv_weight = edit_tv_weight
        self.edit_chroma_weight = edit_chroma_weight
        self.edit_symmetry_weight = edit_symmetry_weight
        self.identity_embedding_weight = identity_embedding_weight
        self.identity_features = identity_features
        self.denoiser = denoiser
        betas = (0.0, 0.9) if gan == "wgan-gp" else (0.5, 0.999)
        self.transform_optimizer = torch.optim.Adam(transform.parameters(), lr=learning_rate, betas=betas)
        self.discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=learning_rate, betas=betas)
        self.transform_scaler = runtime.grad_scaler()
        self.discriminator_scaler = runtime.grad_scaler()

    # --- what the loop needs -------------------------------------------------------------
    def networks(self) -> dict[str, torch.nn.Module]:
        return {"transform": self.transform, "discriminator": self.discriminator}

    def network_configs(self) -> dict[str, dict[str, Any]]:
        return self._configs

    def optimizer_states(self) -> dict[str, Any]:
        return {
            "transform": self.transform_optimizer.state_dict(),
            "discriminator": self.discriminator_optimizer.state_dict(),
            "transform_scaler": self.transform_scaler.state_dict(),
            "discriminator_scaler": self.discriminator_scaler.state_dict(),
        }

    def load_optimizer_states(self, states: dict[str, Any]) -> None:
        self.transform_optimizer.load_state_dict(states["transform"])
        self.discriminator_optimizer.load_state_dict(states["discriminator"])
        if states.get("transform_scaler"):
            self.transform_scaler.load_state_dict(states["transform_scaler"])
        if states.get("discriminator_scaler"):
            self.discriminator_scaler.load_state_dict(states["discriminator_scaler"])

    @torch.no_grad()
    def preview(self, images: torch.Tensor) -> list[torch.Tensor]:
        self.transform.eval()
        images = self.runtime.images(images)
        with self.runtime.autocast():
            edited = self.transform(images)
        self.transform.train()
        return [images, edited.float()]

    # --- the method ------------------------------------------------------------------------
    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """T first, then D on the same T(x) detached (the CycleGAN order): one T forward per step instead of two."""
        source = self.runtime.images(batch[0])
        reference = self.runtime.images(batch[1])
        losses = {}

        # T: fool D while keeping the person (and, for DIAT, staying free of perceptual-loss artefacts).
        set_requires_grad(self.discriminator, False)
        with self.runtime.autocast():
            fake, mask = self.transform(source, return_mask=True)
            fake_logits, fake_features = self.discriminator(fake, return_features=True)
            adversarial = generator_loss_wgan(fake_logits.float()) if self.gan == "wgan-gp" else generator_loss_gan(fake_logits.float())
            identity, embedding = self._identity_loss(source, fake, fake_features)
        loss_t = self.adversarial_weight * adversarial + self.identity_weight * identity
        if embedding is not None:
            if self.identity_embedding_weight > 0:
                loss_t = loss_t + self.identity_embedding_weight * embedding
            losses["identity_embedding"] = embedding.detach()
        if mask is not None:
            area = mask.float().mean()  # the journal version's penalty: edit as little of the face as the attribute needs
            loss_t = loss_t + self.mask_weight * area
            losses["mask_area"] = area.detach()
        if self.smooth_weight > 0 and self.denoiser is not None:
            smooth = smoothness_loss(self.denoiser, fake.float())
            loss_t = loss_t + self.smooth_weight * smooth
            losses["smooth"] = smooth.detach()
        edit_terms = (
            ("edit_tv", self.edit_tv_weight, edit_total_variation),
            ("edit_chroma", self.edit_chroma_weight, edit_chroma_change),
            ("edit_symmetry", self.edit_symmetry_weight, edit_asymmetry),
        )
        for name, weight, term in edit_terms:  # optional priors on the edit T(x) - x, off at weight 0
            if weight > 0:
                value = term(fake, source)
                loss_t = loss_t + weight * value
                losses[name] = value.detach()
        self.transform_optimizer.zero_grad(set_to_none=True)
        self.transform_scaler.scale(loss_t).backward()
        average_gradients([self.transform], self.runtime)
        self.transform_scaler.step(self.transform_optimizer)
        self.transform_scaler.update()
        losses["adversarial"] = adversarial.detach()
        losses["identity"] = identity.detach()
        losses["transform"] = loss_t.detach()

        # D: tell real reference faces from T(source), both in one forward pass.
        set_requires_grad(self.discriminator, True)
        fake = fake.detach()
        with self.runtime.autocast():
            logits = self.discriminator(torch.cat([reference, fake]))
        real_logits, fake_logits = logits.float().split([len(reference), len(fake)])
        if self.gan == "wgan-gp":
            loss_d = discriminator_loss_wgan(real_logits, fake_logits)
            penalty = gradient_penalty(self.discriminator, reference, fake.float(), weight=self.gradient_penalty_weight)
            losses["gradient_penalty"] = penalty.detach()
            loss_d = loss_d + penalty
        else:
            loss_d = discriminator_loss_gan(real_logits, fake_logits)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        self.discriminator_scaler.scale(loss_d).backward()
        average_gradients([self.discriminator], self.runtime)
        self.discriminator_scaler.step(self.discriminator_optimizer)
        self.discriminator_scaler.update()
        losses["discriminator"] = loss_d.detach()
        return losses

    def _identity_loss(self, source: torch.Tensor, fake: torch.Tensor, fake_features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Perceptual identity loss between T(x) and x: on D's features (DIAT-A) or the face-recognition network's (DIAT).

        Second: the mean squared descriptor distance between T(x) and x (variant diat, logged
        whatever its weight: it is what verification thresholds), else None.
        """
        embedding = None
        if self.variant == "a":
            with torch.no_grad():
                _, source_features = self.discriminator(source, return_features=True)
            layers = DISCRIMINATOR_IDENTITY_LAYERS
            fake_layers = [fake_features[i].float() for i in layers]
            source_layers = [source_features[i].float() for i in layers]
        else:
            with torch.no_grad():
                source_descriptors, source_layers = self.identity_features.with_descriptors(source)
                source_layers = [f.float() for f in source_layers]
            fake_descriptors, fake_layers = self.identity_features.with_descriptors(fake)
            fake_layers = [f.float() for f in fake_layers]
            embedding = (fake_descriptors.float() - source_descriptors.float()).pow(2).sum(dim=1).mean()
        return perceptual_loss(fake_layers, source_layers, [1.0] * len(fake_layers)), embedding
