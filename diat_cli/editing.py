"""Finding and running a trained editor: T, plus E when it exists.

Used by `transfer`, `evaluate` and `train-enhance`, so every command finds weights the same way:
--weights may name a run folder (transform.safetensors [+ enhance.safetensors]) or a transform
weights file; without it, the weights bundled in the package for the attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diat_cli.attributes import face_region
from diat_cli.checkpoints import load_network, read_metadata
from diat_cli.errors import DiatError
from diat_cli.face.masks import region_mask

BUNDLED_FOLDER = Path(__file__).resolve().parent / "weights"
TRANSFORM_FILE = "transform.safetensors"
ENHANCE_FILE = "enhance.safetensors"


def bundled_attributes() -> list[str]:
    """Attributes that have weights shipped inside the package."""
    return sorted(p.name[: -len(".transform.safetensors")] for p in BUNDLED_FOLDER.glob("*.transform.safetensors"))


def find_weights(attribute: str | None = None, weights: str | Path | None = None) -> tuple[Path, Path | None]:
    """(transform file, enhance file or None) for --weights, or the bundled default of `attribute`."""
    if weights is not None:
        weights = Path(weights)
        if weights.is_dir():
            transform = weights / TRANSFORM_FILE
            if not transform.is_file():
                raise DiatError(f"{weights}: no {TRANSFORM_FILE} in this folder (has the run finished?)")
            enhance = weights / ENHANCE_FILE
            return transform, enhance if enhance.is_file() else None
        if not weights.is_file():
            raise DiatError(f"{weights}: no such weights file or run folder")
        sibling = weights.with_name(weights.name.replace("transform", "enhance")) if "transform" in weights.name else None
        return weights, sibling if sibling is not None and sibling.is_file() and sibling != weights else None
    if attribute is None:
        raise DiatError("give --attr or --weights")
    transform = BUNDLED_FOLDER / f"{attribute}.transform.safetensors"
    if not transform.is_file():
        available = ", ".join(bundled_attributes()) or "none yet"
        raise DiatError(f"no bundled weights for '{attribute}' (bundled: {available}); train one with `diat train-transform` and pass --weights")
    enhance = BUNDLED_FOLDER / f"{attribute}.enhance.safetensors"
    return transform, enhance if enhance.is_file() else None


# Editor settings a model's metadata may carry, and the value each takes when it carries none.
EDITOR_DEFAULTS = {"colour_blur": 0.0, "colour_strength": 1.0, "strength": 1.0, "confine": False}


def smooth_edit_colour(edited: torch.Tensor, original: torch.Tensor, sigma: float, scale: float = 1.0) -> torch.Tensor:
    """original + the edit with its chroma (Cb, Cr) blurred by `sigma` pixels and scaled by `scale`; brightness untouched.

    A 64 px transform network draws thin edges (glasses frames, lash lines) with the colour
    channels a pixel apart, which upscaled into a photo show as rainbow fringes. Blurring only the
    chroma of the change, as JPEG's 4:2:0 does for whole images, averages the fringe back to grey
    and keeps every light and shadow of the edit; broad colour changes (lips, skin) pass through.
    `scale` below 1 keeps less of the change's colour: a whole-face model that tints eyelids
    yellow or skin orange keeps its light and shade (wrinkles, grey hair, shadows) without them.
    Both: N x 3 x H x W, RGB. sigma <= 0 and scale 1 return `edited` unchanged.
    """
    if sigma <= 0 and scale == 1.0:
        return edited
    from diat_cli.losses import blur, rgb_to_ycbcr, ycbcr_to_rgb

    edit = rgb_to_ycbcr(edited - original)
    chroma = blur(edit[:, 1:], sigma) if sigma > 0 else edit[:, 1:]
    edit = torch.cat([edit[:, :1], scale * chroma], dim=1)
    return original + ycbcr_to_rgb(edit)


@dataclass
class Editor:
    """T, and E when present, at the size they were trained for. Call with crops in [-1, 1].

    colour_blur: sigma (pixels of the model's crop) of smooth_edit_colour, applied to the final
    edit; 0 returns the networks' output as it is. colour_strength: the share of the edit's
    colour (chroma) change kept, its brightness change kept whole; 1 keeps all. strength: the
    change is scaled by it (x + strength * (edit - x)): below 1 a lighter edit, above 1 a
    stronger one, at some cost in identity; 1 is the networks' own. confine_to: a region ("eyes", "mouth") whose wide
    neighbourhood the change is kept inside (face/masks.NEIGHBOURHOOD_BOXES), None for none.
    """

    transform: torch.nn.Module
    enhance: torch.nn.Module | None
    metadata: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    colour_blur: float = 0.0
    colour_strength: float = 1.0
    strength: float = 1.0
    confine_to: str | None = None

    @property
    def size(self) -> int:
        return int(self.metadata["size"])

    @cached_property
    def _confine_mask(self) -> torch.Tensor:
        """Made once per editor, not per batch."""
        return region_mask(self.confine_to, self.size, neighbourhood=True).to(self.device)

    @property
    def attribute(self) -> str:
        return str(self.metadata.get("attribute", "?"))

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor, use_enhance: bool = True) -> torch.Tensor:
        """crops: N x 3 x S x S in [-1, 1] (any S); returns the edits at the same size.

        At another size than the networks', only the change is resized and added to the crops,
        as `transfer` pastes it, so a larger crop keeps its own detail where nothing was edited.
        """
        size = crops.shape[-1]
        originals = crops.to(self.device, torch.float32)
        images = originals
        if size != self.size:
            images = F.interpolate(originals, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        edited = self.transform(images)
        if use_enhance and self.enhance is not None:
            edited = self.enhance(edited)
        edited = smooth_edit_colour(edited, images, self.colour_blur, self.colour_strength)
        if self.strength != 1.0:
            edited = images + self.strength * (edited - images)
        if self.confine_to is not None:
            edited = images + self._confine_mask * (edited - images)
        if size != self.size:
            change = F.interpolate(edited - images, size=(size, size), mode="bilinear", align_corners=False)
            edited = originals + change
        return edited.clamp(-1, 1)


def load_editor(
    attribute: str | None = None,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    use_enhance: bool = True,
    colour_blur: float | None = None,
    strength: float | None = None,
    confine: bool | None = None,
    colour_strength: float | None = None,
) -> Editor:
    """Load T (and E unless use_enhance is False) for an attribute or from --weights.

    colour_blur, strength, confine, colour_strength None: the weights' own metadata of that name
    (chosen when they were bundled), else EDITOR_DEFAULTS. confine: keep
    the edit near the attribute's region; only for local attributes (eyes, mouth).
    """
    transform_path, enhance_path = find_weights(attribute, weights)
    metadata = read_metadata(transform_path)
    if metadata.get("kind", "transform") != "transform":
        raise DiatError(f"{transform_path}: holds a {metadata.get('kind')} network, not a transform network")
    if attribute is not None and weights is not None and metadata.get("attribute") not in (None, attribute):
        raise DiatError(f"{transform_path} was trained for '{metadata.get('attribute')}', not '{attribute}'")
    device = torch.device(device)
    transform, _ = load_network(transform_path, device)
    enhance = None
    if use_enhance and enhance_path is not None:
        enhance, _ = load_network(enhance_path, device)
    if colour_blur is None:
        colour_blur = float(metadata.get("colour_blur", EDITOR_DEFAULTS["colour_blur"]))
    if strength is None:
        strength = float(metadata.get("strength", EDITOR_DEFAULTS["strength"]))
    if confine is None:
        confine = bool(metadata.get("confine", EDITOR_DEFAULTS["confine"]))
    if colour_strength is None:
        colour_strength = float(metadata.get("colour_strength", EDITOR_DEFAULTS["colour_strength"]))
    confine_to = None
    if confine:
        name = metadata.get("attribute") or attribute
        confine_to = face_region(name)
        if confine_to is None:
            raise DiatError(f"--confine keeps an edit near its region of the face (eyes or mouth), and '{name}' has none: it changes the whole face or is not a known attribute")
    return Editor(transform, enhance, metadata, device, colour_blur=colour_blur, colour_strength=colour_strength,
                  strength=strength, confine_to=confine_to)
