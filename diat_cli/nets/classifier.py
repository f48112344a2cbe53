"""The attribute classifier that `diat evaluate` uses to judge edits (and `diat train-classifier` trains).

A compact convolutional network in the manner of the classifiers STGAN and AttGAN evaluate
with: a 3x3 stem, four stages of (3x3 stride-2 conv, 3x3 conv), each conv followed by batch
norm and ReLU, global average pooling, then linear heads:

- 40 logits for CelebA's attributes, in CelebA's column order (`CELEBA_COLUMNS`);
- 3 logits for UTKFace's age groups (`AGE_GROUPS`: young 18-30, old 50+, other ages);
- 1 logit for UTKFace's gender (high: female, UTKFace's gender 1).

All 44 logits come out of one N x 44 tensor; `split_logits` names its parts.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from diat_cli.attributes import CELEBA_COLUMNS
from diat_cli.errors import ConfigError

AGE_GROUPS = ("young", "old", "other")  # young 18-30, old 50+ (attributes.YOUNG_AGES / OLD_AGES), other ages
CELEBA_LOGITS = len(CELEBA_COLUMNS)
OUTPUTS = CELEBA_LOGITS + len(AGE_GROUPS) + 1
CLASSIFIER_SIZES = (64, 128)
STAGE_MULTIPLIERS = (1, 2, 4, 8)


class ClassifierLogits(NamedTuple):
    celeba: torch.Tensor  # N x 40, one logit per CelebA column (positive: has it)
    age: torch.Tensor  # N x 3, over AGE_GROUPS
    female: torch.Tensor  # N, positive: female


def split_logits(logits: torch.Tensor) -> ClassifierLogits:
    """Name the parts of the classifier's N x 44 output."""
    age_end = CELEBA_LOGITS + len(AGE_GROUPS)
    return ClassifierLogits(logits[:, :CELEBA_LOGITS], logits[:, CELEBA_LOGITS:age_end], logits[:, age_end])


def _conv(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class AttributeClassifier(nn.Module):
    """Attribute logits of aligned face crops.

    x: N x 3 x S x S in [-1, 1] with S = image_size (64 or 128; the 128 px network's stem has
    stride 2, so both sizes reach the same 4 x 4 final map). Returns N x 44 logits (see
    `split_logits`). 9 convolutions; about 1.2M parameters at channels=32.
    """

    def __init__(self, channels: int = 32, image_size: int = 64):
        super().__init__()
        if channels < 1:
            raise ConfigError(f"AttributeClassifier needs channels >= 1, got {channels}")
        if image_size not in CLASSIFIER_SIZES:
            raise ConfigError(f"AttributeClassifier works at {' or '.join(map(str, CLASSIFIER_SIZES))} px, got {image_size}")
        self.image_size = image_size
        layers = [_conv(3, channels, stride=image_size // 64)]
        previous = channels
        for multiplier in STAGE_MULTIPLIERS:
            width = channels * multiplier
            layers += [_conv(previous, width, stride=2), _conv(width, width, stride=1)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.heads = nn.Linear(previous, OUTPUTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"AttributeClassifier expects N x 3 x {self.image_size} x {self.image_size}, got {tuple(x.shape)}")
        pooled = self.features(x).mean(dim=(2, 3))
        return self.heads(self.dropout(pooled))

    def prepare(self, crops: torch.Tensor) -> torch.Tensor:
        """Resize N x 3 x S x S crops in [-1, 1] of any size S to the network's size."""
        if crops.shape[-1] == self.image_size and crops.shape[-2] == self.image_size:
            return crops
        return F.interpolate(crops, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
