"""Training batches addressed by step number, so a resumed run sees exactly the batches it would have seen."""

from __future__ import annotations

import torch


class StepBatches:
    """Fixed-size batches of preloaded uint8 images, chosen by (seed, step, process rank).

    Each epoch is a seeded permutation of the whole set; the batches of one step are disjoint
    across processes, and a random horizontal flip per image is drawn from the same seed.
    Returns float batches in [-1, 1].
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, flip: bool = True):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be an N x 3 x H x W uint8 tensor")
        global_batch = batch_size * world_size
        if len(images) < global_batch:
            raise ValueError(f"{len(images)} images cannot fill one batch of {global_batch}")
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.flip = flip
        self.steps_per_epoch = len(images) // global_batch
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.images), generator=generator)
            self._epoch = epoch
        start = (position * self.world_size + self.rank) * self.batch_size
        return self._order[start : start + self.batch_size]

    def __call__(self, step: int) -> torch.Tensor:
        batch = self.images[self.indices(step)].float().div_(127.5).sub_(1.0)
        if self.flip:
            generator = torch.Generator().manual_seed(self.seed * 7_919 + step * 131 + self.rank)
            flips = torch.rand(len(batch), generator=generator) < 0.5
            batch[flips] = batch[flips].flip(-1)
        return batch
