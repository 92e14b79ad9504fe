"""Data-parallel pretraining over several processes (torch.distributed), launched the way `torchrun` does.

The tier's batch stays the *global* batch: with W ranks, rank r takes the r-th of W equal shares of each
step's samples, and of that step's random draws (crops, flips, masking noise, drawn for the whole batch by
every rank from the same seeded generator), so the union of the shares is exactly the single-process step.
DDP averages the gradients; since every sample masks the same number of patches, the mean of the shares'
mean losses is the whole batch's mean loss, and W ranks take the same optimizer steps as one process, up to
floating-point summation order. Samples seen, steps and schedule do not depend on W.

`torchrun` (or `python -m torch.distributed.run`) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; several hosts join through its c10d rendezvous (`--nnodes N --rdzv-backend c10d
--rdzv-endpoint HOST:PORT`). NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This rank's part of a global batch of `batch_size` samples (or of its random draws)."""
        if batch_size % self.world:
            raise ValueError(
                f"the tier's batch of {batch_size} does not split into {self.world} equal shares"
            )
        size = batch_size // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over the ranks (a collective: every rank calls it at the same point)."""
        if self.world == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE = Ranks()


def from_environment() -> Ranks:
    """The ranks `torchrun` described in the environment, with the process group joined; one rank without."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Ranks(
        rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def device_for(ranks: Ranks) -> torch.device:
    """One GPU per local rank where there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def leave(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
