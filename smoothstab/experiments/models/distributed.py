"""Data-parallel training under ``torchrun``: process group, sharding, reductions.

One process per device; ``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``. Without it
everything here is a no-op for a single process, so the training code has one path. Each
global batch (the same on every rank, from the seeded per-epoch order) is dealt round-robin,
``batch[rank::world]``, and the loss is scaled so that DDP's gradient average equals the
single-process gradient of the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistInfo:
    """Join the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA), once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":  # before any collective: NCCL binds each rank to its current GPU
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def rank_device(device: str, info: DistInfo) -> torch.device:
    """``device``; under torchrun a bare ``cuda`` means this rank's GPU (``LOCAL_RANK``), so that
    the ranks share out the GPUs instead of all working on GPU 0 (an explicit index is kept)."""
    out = torch.device(device)
    if out.type == "cuda" and out.index is None and info.active:
        out = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(out)
    return out


def shard(batch: list[int], info: DistInfo) -> list[int]:
    """This rank's share of a global batch: every ``world_size``-th index from ``rank``."""
    return batch[info.rank :: info.world_size]


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``values`` summed over ranks (in place; unchanged for one process)."""
    if info.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def leave(clean: bool) -> None:
    """Leave the process group, if this process joined one; called once, on every exit path.

    A rank that exits with the group alive leaves gloo's threads running into interpreter
    shutdown, where the C++ runtime aborts them (``terminate called without an active
    exception``, SIGABRT) and torchrun then kills the other ranks. After a clean finish every
    rank first waits for the others, so all of them exit the same way; after an error the
    others may never arrive, so the group is destroyed without waiting."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if clean:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.active:
        dist.barrier()
