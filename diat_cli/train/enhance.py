"""Stage 2 of DIAT: the face enhancement network E, trained behind a frozen transform network T.

Local attributes (eyeglasses, mouth, smile, ...; METHOD.md "Stage 2"), with m the feathered
region mask of the attribute on the canonical crop:

    (1 - m) * ||E(T(x)) - x||^2  +  beta * sum_{l in 1, 2} perceptual_l(m * E(T(x)), m * T(x))

outside the region E must give back the original pixels, inside it must keep what T did,
measured on the face-recognition network's first two stages (low-level features). The
`pixel` inside-loss swaps that perceptual term for m * ||E(T(x)) - T(x)||^2, which is about
ten times cheaper on a CPU.

Global attributes (age, gender): E learns to undo a Gaussian blur B of real faces,
||E(B(x)) - x||^2, and is then applied to T(x). The blur's sigma is drawn per step between
0.5 and 1.5 times `blur_sigma` (pixels at the training size), so E does not over-fit one
exact amount of blur, which T's outputs do not have either.

T is frozen and never saved here; the loop checkpoints E alone.
"""

from __future__ import annotations

from typing import Any

import torch

from diat_cli.losses import blur, masked_reconstruction_loss, perceptual_loss
from diat_cli.metrics import psnr_per_image
from diat_cli.train.runtime import Runtime, average_gradients

LOW_IDENTITY_LAYERS = (0, 1)  # the identity ResNet's first two residual stages (35 px and 17 px maps)
INSIDE_LOSSES = ("identity", "pixel")
BLUR_RANGE = (0.5, 1.5)  # the blur's sigma, as multiples of blur_sigma, drawn per step


class LowIdentityFeatures:
    """Low-stage features of the face-recognition network for canonical crops in [-1, 1]."""

    def __init__(self, network: torch.nn.Module, layers: tuple[int, ...] = LOW_IDENTITY_LAYERS):
        from diat_cli.face.identity import face_chips

        self.network = network
        self.layers = layers
        self._chips = face_chips

    def __call__(self, crops: torch.Tensor) -> list[torch.Tensor]:
        _, features = self.network(self._chips(crops.float()), return_features=True)
        return [features[i] for i in self.layers]


class EnhanceStage:
    """E's steps behind a frozen T; batches are N x 3 x S x S faces in [-1, 1].

    mask: 1 x 1 x S x S region mask for a local attribute, or None for a global one (blur mode).
    identity_features: the low identity-network features, needed when inside_loss is "identity".
    """

    def __init__(
        self,
        enhance: torch.nn.Module,
        transform: torch.nn.Module,
        runtime: Runtime,
        enhance_config: dict[str, Any],
        mask: torch.Tensor | None = None,
        inside_loss: str = "identity",
        perceptual_weight: float = 0.1,
        blur_sigma: float = 1.0,
        learning_rate: float = 2e-4,
        identity_features: LowIdentityFeatures | None = None,
        seed: int = 0,
    ):
        if inside_loss not in INSIDE_LOSSES:
            raise ValueError(f"inside_loss must be one of {', '.join(INSIDE_LOSSES)}, got '{inside_loss}'")
        if mask is not None and inside_loss == "identity" and identity_features is None:
            raise ValueError("the identity inside-loss needs the identity network's features")
        self.enhance = enhance
        self.transform = transform.eval()
        for parameter in self.transform.parameters():
            parameter.requires_grad_(False)
        self.runtime = runtime
        self._config = enhance_config
        self.mask = None if mask is None else mask.to(runtime.device, torch.float32)
        self.inside_loss = inside_loss
        self.perceptual_weight = perceptual_weight
        self.blur_sigma = blur_sigma
        self.identity_features = identity_features
        self.seed = seed
        self.optimizer = torch.optim.Adam(enhance.parameters(), lr=learning_rate, betas=(0.9, 0.999))
        self.scaler = runtime.grad_scaler()

    @property
    def mode(self) -> str:
        """"local" (keep T's change inside the mask, the input outside) or "global" (undo blur)."""
        return "global" if self.mask is None else "local"

    # --- what the loop needs -------------------------------------------------------------
    def networks(self) -> dict[str, torch.nn.Module]:
        return {"enhance": self.enhance}

    def network_configs(self) -> dict[str, dict[str, Any]]:
        return {"enhance": self._config}

    def optimizer_states(self) -> dict[str, Any]:
        return {"enhance": self.optimizer.state_dict(), "enhance_scaler": self.scaler.state_dict()}

    def load_optimizer_states(self, states: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(states["enhance"])
        if states.get("enhance_scaler"):
            self.scaler.load_state_dict(states["enhance_scaler"])

    @torch.no_grad()
    def preview(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Rows x, T(x), E(T(x))."""
        self.enhance.eval()
        images = self.runtime.images(images)
        with self.runtime.autocast():
            edited = self.transform(images).float()
            enhanced = self.enhance(edited).float()
        self.enhance.train()
        return [images, edited, enhanced]

    # --- the method ------------------------------------------------------------------------
    def blur_sigma_at(self, step: int) -> float:
        """The blur's sigma (pixels) of one step: reproducible from (seed, step), so --resume repeats it."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        low, high = BLUR_RANGE
        return self.blur_sigma * (low + (high - low) * float(torch.rand((), generator=generator)))

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        faces = self.runtime.images(batch)
        losses: dict[str, torch.Tensor] = {}
        if self.mask is None:
            with torch.no_grad():
                degraded = blur(faces.float(), self.blur_sigma_at(step))
            with self.runtime.autocast():
                restored = self.enhance(degraded)
            loss = (restored.float() - faces.float()).pow(2).mean()
            losses["deblur"] = loss.detach()
        else:
            with torch.no_grad(), self.runtime.autocast():
                edited = self.transform(faces).float()
            with self.runtime.autocast():
                enhanced = self.enhance(edited)
            enhanced = enhanced.float()
            outside = masked_reconstruction_loss(enhanced, faces.float(), self.mask)
            with self.runtime.autocast():
                inside = self._inside_loss(enhanced, edited).float()
            loss = outside + self.perceptual_weight * inside
            losses["outside"] = outside.detach()
            losses["inside"] = inside.detach()
        losses["enhance"] = loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        average_gradients([self.enhance], self.runtime)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses

    def _inside_loss(self, enhanced: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
        """How far E moved the region away from T(x): perceptual (low identity features) or pixel MSE."""
        if self.inside_loss == "pixel":
            inside = self.mask.expand(enhanced.shape)
            return (inside * (enhanced - edited).pow(2)).sum() / inside.sum().clamp_min(1e-8)
        with torch.no_grad():
            target = [f.float() for f in self.identity_features(self.mask * edited)]
        features = [f.float() for f in self.identity_features(self.mask * enhanced)]
        return perceptual_loss(features, target, [1.0] * len(features))


def default_blur_sigma(size: int, sigma_at_64: float = 1.0) -> float:
    """Blur sigma in pixels at `size`, from its value at 64 px (the blur scales with the face)."""
    return sigma_at_64 * size / 64


def outside_and_inside_psnr(
    faces: torch.Tensor, edited: torch.Tensor, enhanced: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """Mean PSNRs that tell whether E did its job on a local attribute (all inputs in [-1, 1]).

    outside_t / outside_te: input vs T(x) / vs E(T(x)) outside the region (E should raise it);
    inside_kept: T(x) vs E(T(x)) inside the region (high: E kept T's edit).
    """
    outside = 1.0 - mask
    values = {
        "outside_t": psnr_per_image(edited, faces, outside),
        "outside_te": psnr_per_image(enhanced, faces, outside),
        "inside_kept": psnr_per_image(enhanced, edited, mask),
    }
    return {name: float(v.mean()) for name, v in values.items()}
