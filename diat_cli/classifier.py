"""Finding and running the attribute classifier that judges edits (see nets/classifier.py).

The classifier file is found like editors' weights: `--classifier PATH` (a weights file or a
`diat train-classifier` run folder), else the one bundled in the package for the faces' size
(`diat_cli/weights/classifier.safetensors`, 64 px; `classifier-128.safetensors` for 128 px and up).

How an attribute is decided: every attribute maps to one CelebA column and a wanted value
(attributes.py), so a face "has" `no-eyeglasses` when the Eyeglasses logit is negative and
`old` when the Young logit is negative. For old / young / female / male, the UTKFace heads give
a second opinion (`utkface_probability`) when the classifier was trained with UTKFace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diat_cli.attributes import CELEBA_COLUMNS, Attribute
from diat_cli.checkpoints import load_network
from diat_cli.errors import DiatError
from diat_cli.nets.classifier import AGE_GROUPS, AttributeClassifier, split_logits

BUNDLED_CLASSIFIER = Path(__file__).resolve().parent / "weights" / "classifier.safetensors"  # 64 px
BUNDLED_CLASSIFIER_128 = BUNDLED_CLASSIFIER.with_name("classifier-128.safetensors")
CLASSIFIER_FILE = "classifier.safetensors"


def find_classifier(path: str | Path | None = None, size: int | None = None) -> Path:
    """The classifier weights file: `path` (file or run folder), else the bundled one.

    size: the resolution of the faces to judge. Faces of 128 px or more get the bundled 128 px
    classifier when there is one, so sharper edits are not judged after shrinking them to 64 px.
    """
    if path is not None:
        path = Path(path)
        if path.is_dir():
            candidate = path / CLASSIFIER_FILE
            if not candidate.is_file():
                raise DiatError(f"{path}: no {CLASSIFIER_FILE} in this folder (has `diat train-classifier` finished?)")
            return candidate
        if not path.is_file():
            raise DiatError(f"{path}: no such classifier weights file or run folder")
        return path
    if size is not None and size >= 128 and BUNDLED_CLASSIFIER_128.is_file():
        return BUNDLED_CLASSIFIER_128
    if not BUNDLED_CLASSIFIER.is_file():
        raise DiatError(
            "no attribute classifier: none is bundled in this installation; "
            "train one with `diat train-classifier` and pass --classifier PATH"
        )
    return BUNDLED_CLASSIFIER


@dataclass
class Classifier:
    """A loaded AttributeClassifier and its metadata. Call with crops in [-1, 1] of any size."""

    network: AttributeClassifier
    metadata: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    path: Path | None = None

    @property
    def has_utkface_heads(self) -> bool:
        """Whether the age and gender heads were trained (the classifier saw UTKFace faces)."""
        return bool(self.metadata.get("utkface_faces", 0))

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """crops: N x 3 x S x S in [-1, 1]; returns N x 44 float32 logits on the CPU."""
        self.network.eval()
        outputs = []
        for start in range(0, len(crops), batch_size):
            batch = crops[start : start + batch_size].to(self.device, torch.float32)
            outputs.append(self.network(self.network.prepare(batch)).float().cpu())
        if not outputs:
            return torch.empty((0, 44))
        return torch.cat(outputs)


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu", size: int | None = None) -> Classifier:
    """Load the classifier from `path` (file or run folder) or the bundled default for faces of `size` px."""
    weights = find_classifier(path, size)
    network, metadata = load_network(weights, device)
    if not isinstance(network, AttributeClassifier):
        raise DiatError(f"{weights}: holds a {metadata.get('class')} network, not an attribute classifier")
    return Classifier(network, metadata, torch.device(device), weights)


def attribute_probability(logits: torch.Tensor, attribute: Attribute) -> torch.Tensor:
    """Probability (N) that each face has `attribute`, from the CelebA logit of its column.

    logits: N x 44 classifier output. For a negated attribute (celeba_value -1, e.g.
    no-eyeglasses) it is 1 - sigmoid(logit).
    """
    column = split_logits(logits).celeba[:, CELEBA_COLUMNS.index(attribute.celeba_column)]
    return torch.sigmoid(column if attribute.celeba_value == 1 else -column)


def utkface_probability(logits: torch.Tensor, attribute: Attribute) -> torch.Tensor | None:
    """Probability (N) from the UTKFace heads for old / young / female / male, else None.

    old and young: the softmax probability of that age group; female / male: the gender head.
    """
    if attribute.utkface is None:
        return None
    parts = split_logits(logits)
    group = attribute.utkface.reference
    if group in ("old", "young"):
        return torch.softmax(parts.age, dim=1)[:, AGE_GROUPS.index(group)]
    return torch.sigmoid(parts.female if group == "female" else -parts.female)


def decision_text(attribute: Attribute) -> str:
    """How the classifier decides `attribute`, in words, for reports."""
    sign = ">" if attribute.celeba_value == 1 else "<"
    return f"CelebA '{attribute.celeba_column}' logit {sign} 0"
