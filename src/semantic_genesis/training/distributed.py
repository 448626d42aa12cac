"""Devices and DistributedDataParallel set-up, driven by the ``torchrun`` environment.

``torchrun --nproc_per_node=N -m semantic_genesis pretrain ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`setup` then starts a process group (NCCL on CUDA, gloo on the CPU) and gives
each process its device. A plain ``semantic-genesis pretrain`` is a world of one and starts no group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from semantic_genesis.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``, and whether a group runs."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    initialized: bool

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but CUDA is not available; use train.device=cpu or auto")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if name not in ("auto", "cpu"):
        raise ConfigError(f"train.device: {name!r} is not one of 'auto', 'cpu', 'cuda'")
    return torch.device("cpu")


def setup(device: str = "auto") -> DistInfo:
    """Read the torchrun environment, start the process group if ``WORLD_SIZE > 1`` and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank)
    initialized = False
    if world > 1:
        if not dist.is_available():
            raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        initialized = True
    return DistInfo(rank, local_rank, world, dev, initialized)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group this module started."""
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all ranks (identity in a world of one)."""
    if info.world_size > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a world of one)."""
    if info.world_size > 1:
        dist.barrier()


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's ``obj`` on every rank."""
    if info.world_size <= 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_object(obj: object, info: DistInfo) -> list[object]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` in a world of one)."""
    if info.world_size <= 1:
        return [obj]
    gathered: list[object] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered
