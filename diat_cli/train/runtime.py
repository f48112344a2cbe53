"""Where and how training runs: device, precision, distributed rank, reproducible seeding.

One function decides everything from the user's choices and the hardware, so the stages
and the loop never test `torch.cuda.is_available()` themselves.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from diat_cli.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16" (fp16 uses a gradient scaler)
    channels_last: bool
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is active only for fp16, where small gradients would underflow."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def images(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch


def setup_runtime(device: str = "auto", precision: str = "auto", channels_last: bool | None = None) -> Runtime:
    """Pick device and precision; join the process group when launched by torchrun.

    auto device: CUDA when present, else CPU. auto precision: bf16 on CUDA that supports it,
    fp16 (with a grad scaler) on older CUDA, fp32 on CPU (bf16 is slower than fp32 on CPUs
    without AMX; measured in ../shared/docs/MACHINE.md).
    """
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got '{device}'")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch_device = torch.device("cpu")

    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if use_cuda else "fp32"
    if precision == "fp16" and not use_cuda:
        raise ConfigError("--precision fp16 needs CUDA; on CPU use fp32 (fastest here) or bf16")
    if channels_last is None:
        channels_last = True  # measured faster for these convolutional networks on CPU and GPU
    return Runtime(torch_device, precision, channels_last, rank, world_size)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; on CPU the same seed then gives the same run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def average_gradients(modules: list[torch.nn.Module], runtime: Runtime) -> None:
    """All-reduce the gradients of several networks in one flat buffer (mean over processes).

    Used instead of DistributedDataParallel because GAN steps run a network several times
    before one backward pass (real, fake, gradient penalty), which DDP does not allow.
    """
    if not runtime.distributed:
        return
    grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= runtime.world_size
    offset = 0
    for grad in grads:
        count = grad.numel()
        grad.copy_(flat[offset : offset + count].view_as(grad))
        offset += count


def broadcast_parameters(modules: list[torch.nn.Module], runtime: Runtime) -> None:
    """Give every process the main process's weights (after building or resuming)."""
    if not runtime.distributed:
        return
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def all_reduce_mean(values: dict[str, float], runtime: Runtime) -> dict[str, float]:
    """Average logged numbers over processes so the log describes the whole batch."""
    if not runtime.distributed or not values:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {n: float(v) / runtime.world_size for n, v in zip(names, tensor.tolist())}
