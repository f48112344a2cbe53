"""The attribute classifier's training stage and how its accuracy is measured.

A batch mixes faces from CelebA (40 attribute labels) and UTKFace (age and gender, read from
file names). Every face carries every label slot with a mask that says which are known, so one
loss handles both: BCE over the 40 CelebA logits where the face comes from CelebA,
cross-entropy over the age groups and BCE on the gender logit where it comes from UTKFace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from diat_cli.attributes import ADULT_AGES, CELEBA_COLUMNS, OLD_AGES, YOUNG_AGES
from diat_cli.nets.classifier import AGE_GROUPS, split_logits
from diat_cli.train.batches import StepBatches
from diat_cli.train.runtime import Runtime, average_gradients

UNKNOWN = -1


def age_group(age: int) -> int:
    """Index into AGE_GROUPS: young (18-30), old (50+) or other."""
    if YOUNG_AGES.contains(age):
        return AGE_GROUPS.index("young")
    if OLD_AGES.contains(age):
        return AGE_GROUPS.index("old")
    return AGE_GROUPS.index("other")


@dataclass(frozen=True)
class ClassifierLabels:
    """Labels of N faces; a face from one dataset has the other dataset's slots marked unknown.

    celeba: N x 40 int8, +1 / -1 in CELEBA_COLUMNS order, 0 when the face is not from CelebA.
    age: N int64 index into AGE_GROUPS, -1 when unknown.
    female: N int8, 1 female / 0 male, -1 when unknown (children's gender is left unknown).
    """

    celeba: torch.Tensor
    age: torch.Tensor
    female: torch.Tensor

    def __len__(self) -> int:
        return len(self.age)

    def __getitem__(self, indices: torch.Tensor) -> ClassifierLabels:
        return ClassifierLabels(self.celeba[indices], self.age[indices], self.female[indices])

    @staticmethod
    def concatenate(parts: list[ClassifierLabels]) -> ClassifierLabels:
        return ClassifierLabels(
            torch.cat([part.celeba for part in parts]),
            torch.cat([part.age for part in parts]),
            torch.cat([part.female for part in parts]),
        )

    @staticmethod
    def from_celeba(values: torch.Tensor) -> ClassifierLabels:
        """values: N x 40 of +1 / -1 in CELEBA_COLUMNS order."""
        count = len(values)
        return ClassifierLabels(
            values.to(torch.int8), torch.full((count,), UNKNOWN, dtype=torch.long), torch.full((count,), UNKNOWN, dtype=torch.int8)
        )

    @staticmethod
    def from_utkface(ages: list[int], genders: list[int]) -> ClassifierLabels:
        """UTKFace ages and genders (0 male, 1 female); gender is kept for adults only."""
        female = [gender if ADULT_AGES.contains(age) and gender in (0, 1) else UNKNOWN for age, gender in zip(ages, genders)]
        return ClassifierLabels(
            torch.zeros((len(ages), len(CELEBA_COLUMNS)), dtype=torch.int8),
            torch.tensor([age_group(age) for age in ages], dtype=torch.long),
            torch.tensor(female, dtype=torch.int8),
        )


def positive_weights(labels: ClassifierLabels, limit: float = 10.0) -> torch.Tensor:
    """Per CelebA column, sqrt(negatives / positives) among the faces with CelebA labels, clipped to [1/limit, limit].

    Used as BCE's pos_weight so that rare attributes (eyeglasses: 7% of faces, hats: 5%) are
    not learned as "never", and very common ones (no beard: 83%) not as "always".
    """
    known = (labels.celeba != 0).all(dim=1)
    positives = (labels.celeba[known] > 0).sum(dim=0).double()
    negatives = known.sum().double() - positives
    ratio = (negatives.clamp_min(1) / positives.clamp_min(1)).sqrt()
    return ratio.clamp(1 / limit, limit).float()


def classifier_loss(logits: torch.Tensor, labels: ClassifierLabels, pos_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Masked losses: 'celeba' (BCE over known CelebA labels), 'age' (CE), 'gender' (BCE).

    logits: N x 44 (see nets.classifier.split_logits). pos_weight: 40 weights of the CelebA
    positives (see `positive_weights`), None for plain BCE. A term without any known label in
    the batch is 0 (and stays in the graph, so every parameter gets a gradient).
    """
    parts = split_logits(logits.float())
    device = logits.device
    celeba = labels.celeba.to(device)
    known = celeba != 0
    zero = logits.sum() * 0.0
    losses = {}
    if known.any():
        targets = (celeba > 0).float()
        weight = None if pos_weight is None else pos_weight.to(device)
        elementwise = F.binary_cross_entropy_with_logits(parts.celeba, targets, pos_weight=weight, reduction="none")
        losses["celeba"] = elementwise[known].mean()
    else:
        losses["celeba"] = zero
    age = labels.age.to(device)
    age_known = age != UNKNOWN
    losses["age"] = F.cross_entropy(parts.age[age_known], age[age_known]) if age_known.any() else zero
    female = labels.female.to(device)
    gender_known = female != UNKNOWN
    losses["gender"] = (
        F.binary_cross_entropy_with_logits(parts.female[gender_known], female[gender_known].float()) if gender_known.any() else zero
    )
    return losses


class LabelledBatches:
    """Step-addressed batches of (images in [-1, 1], labels), randomly flipped, reproducible per step."""

    def __init__(self, images: torch.Tensor, labels: ClassifierLabels, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = StepBatches(images, batch_size, seed, rank, world_size)
        self.labels = labels

    def __call__(self, step: int) -> tuple[torch.Tensor, ClassifierLabels]:
        images = self.images(step)
        return images, self.labels[self.images.indices(step)]


class ClassifierStage:
    """One AdamW step per batch on the masked classification losses; cosine learning-rate decay."""

    def __init__(
        self,
        classifier: torch.nn.Module,
        runtime: Runtime,
        network_config: dict[str, Any],
        steps: int,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
        pos_weight: torch.Tensor | None = None,
    ):
        self.classifier = classifier
        self.runtime = runtime
        self._config = network_config
        self.steps = steps
        self.learning_rate = learning_rate
        self.warmup_steps = min(warmup_steps, max(1, steps // 10))
        self.pos_weight = pos_weight
        self.optimizer = torch.optim.AdamW(classifier.parameters(), lr=learning_rate, weight_decay=weight_decay)
        self.scaler = runtime.grad_scaler()

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"classifier": self.classifier}

    def network_configs(self) -> dict[str, dict[str, Any]]:
        return {"classifier": self._config}

    def optimizer_states(self) -> dict[str, Any]:
        return {"classifier": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_optimizer_states(self, states: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(states["classifier"])
        if states.get("scaler"):
            self.scaler.load_state_dict(states["scaler"])

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 1% of the rate; a function of the step alone, so resuming needs no scheduler state."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.learning_rate * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))

    @torch.no_grad()
    def preview(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images]

    def train_step(self, batch: tuple[torch.Tensor, ClassifierLabels], step: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        images = self.runtime.images(images)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate_at(step)
        self.classifier.train()
        with self.runtime.autocast():
            logits = self.classifier(images)
        losses = classifier_loss(logits, labels, self.pos_weight)
        total = losses["celeba"] + losses["age"] + losses["gender"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        average_gradients([self.classifier], self.runtime)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {**{name: value.detach() for name, value in losses.items()}, "total": total.detach()}


@torch.no_grad()
def predict(classifier: torch.nn.Module, images: torch.Tensor, runtime: Runtime, batch_size: int = 256) -> torch.Tensor:
    """N x 44 logits (float32, CPU) of uint8 images N x 3 x S x S, in eval mode."""
    was_training = classifier.training
    classifier.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = runtime.images(images[start : start + batch_size].float().div(127.5).sub(1.0))
        with runtime.autocast():
            outputs.append(classifier(batch).float().cpu())
    classifier.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty((0, 44))


def _balanced_accuracy(guesses: torch.Tensor, truth: torch.Tensor) -> float | None:
    """Mean of the true-positive and true-negative rates; None when one class is absent."""
    positives, negatives = truth.sum(), (~truth).sum()
    if positives == 0 or negatives == 0:
        return None
    return float(((guesses & truth).sum() / positives + (~guesses & ~truth).sum() / negatives) / 2)


def accuracy_report(logits: torch.Tensor, labels: ClassifierLabels) -> dict[str, Any]:
    """Accuracy per CelebA attribute (with the majority-class baseline), age group and gender.

    logits: N x 44; labels: the same N faces. Only known labels count. Returns
    {"celeba": {column: {"accuracy", "balanced_accuracy", "majority", "positives", "faces"}},
    "celeba_mean", "celeba_majority_mean", "celeba_balanced_mean", "age_group": {...} | None,
    "gender": {...} | None}. Balanced accuracy (mean of the true-positive and true-negative
    rates) is what matters for judging edits: a classifier that never sees glasses is 93%
    "accurate" on CelebA's Eyeglasses but useless for `no-eyeglasses`.
    """
    parts = split_logits(logits)
    report: dict[str, Any] = {
        "celeba": {}, "celeba_mean": None, "celeba_majority_mean": None, "celeba_balanced_mean": None, "age_group": None, "gender": None,
    }
    known = (labels.celeba != 0).all(dim=1)
    if known.any():
        truth = labels.celeba[known] > 0
        guesses = parts.celeba[known] > 0
        for index, column in enumerate(CELEBA_COLUMNS):
            positives = int(truth[:, index].sum())
            faces = int(known.sum())
            report["celeba"][column] = {
                "accuracy": float((guesses[:, index] == truth[:, index]).float().mean()),
                "balanced_accuracy": _balanced_accuracy(guesses[:, index], truth[:, index]),
                "majority": max(positives, faces - positives) / faces,
                "positives": positives,
                "faces": faces,
            }
        rows = report["celeba"].values()
        report["celeba_mean"] = sum(row["accuracy"] for row in rows) / len(CELEBA_COLUMNS)
        report["celeba_majority_mean"] = sum(row["majority"] for row in rows) / len(CELEBA_COLUMNS)
        balanced = [row["balanced_accuracy"] for row in rows if row["balanced_accuracy"] is not None]
        report["celeba_balanced_mean"] = sum(balanced) / len(balanced) if balanced else None
    age_known = labels.age != UNKNOWN
    if age_known.any():
        truth = labels.age[age_known]
        counts = torch.bincount(truth, minlength=len(AGE_GROUPS))
        report["age_group"] = {
            "accuracy": float((parts.age[age_known].argmax(dim=1) == truth).float().mean()),
            "majority": float(counts.max()) / int(age_known.sum()),
            "faces": int(age_known.sum()),
        }
    gender_known = labels.female != UNKNOWN
    if gender_known.any():
        truth = labels.female[gender_known] > 0
        females = int(truth.sum())
        faces = int(gender_known.sum())
        report["gender"] = {
            "accuracy": float(((parts.female[gender_known] > 0) == truth).float().mean()),
            "majority": max(females, faces - females) / faces,
            "faces": faces,
        }
    return report
