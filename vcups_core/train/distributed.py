"""``torch.distributed`` set-up for training: torchrun's environment in, one small context out.

``torchrun --nproc-per-node N [--nnodes M ...] -m training.cli train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; :func:`init_distributed` reads them
and starts the process group (NCCL on GPUs, gloo on CPUs, or the backend the config names).
Without them (a plain ``vcups train``) it returns a single-process context and starts nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands.

    Attributes:
        rank, world_size, local_rank: torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
            (``0, 1, 0`` for a single process).
        device: this rank's device (``cuda:<local_rank>`` or ``cpu``).
        backend: the process-group backend, or None for a single process.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes checkpoints, logs and reports."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """True if ``flag`` is true on every rank (an all-reduce; ``flag`` alone otherwise)."""
        if not self.distributed:
            return flag
        value = torch.tensor([0 if flag else 1], dtype=torch.int64, device=self._comm_device)
        dist.all_reduce(value)
        return int(value.item()) == 0

    def mean(self, values: Tensor) -> Tensor:
        """The mean of ``values`` (a float tensor) over the ranks (``values`` itself alone)."""
        if not self.distributed:
            return values
        out = values.detach().to(self._comm_device, torch.float64).clone()
        dist.all_reduce(out)
        return (out / self.world_size).to(values.device)

    def gather(self, value: str) -> list[str]:
        """``value`` of every rank, in rank order (``[value]`` for a single process)."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return [str(v) for v in out]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    text = env.get(key)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {key}={text!r} is not an integer") from None


def init_distributed(
    backend: str = "auto", device: str | None = None, env: Mapping[str, str] | None = None
) -> DistContext:
    """Start the process group if torchrun launched this process.

    Args:
        backend: ``auto`` (NCCL with CUDA, gloo without), ``nccl`` or ``gloo``.
        device: ``cpu``, ``cuda`` or ``cuda:<i>``; default: ``cuda:<LOCAL_RANK>`` when CUDA is
            available, else ``cpu``.
        env: the environment (default ``os.environ``).

    Raises:
        ValueError: ``nccl`` without CUDA, a CUDA device requested without CUDA, or bad
            torchrun variables.
    """
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", 0)
    cuda = torch.cuda.is_available()
    if device is None:
        dev = torch.device(f"cuda:{local}" if cuda else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda":
            if not cuda:
                raise ValueError(f"--device {device}: CUDA is not available on this machine")
            if dev.index is None:
                dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistContext(0, 1, 0, dev, None)
    chosen = backend if backend != "auto" else ("nccl" if dev.type == "cuda" else "gloo")
    if chosen == "nccl" and dev.type != "cuda":
        raise ValueError("backend nccl needs CUDA devices; use backend: gloo (or auto) on CPUs")
    if not dist.is_initialized():
        dist.init_process_group(backend=chosen, rank=rank, world_size=world)
    return DistContext(rank, world, local, dev, chosen)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group (if this process started one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
