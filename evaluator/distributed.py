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

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from evaluator.progress import ProgressFn, read_progress


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


class RanksFailed(RuntimeError):
    """A data-parallel pretraining launched by `launch_pretrain` ended without its encoder."""


def launch_pretrain(
    *,
    pool_dir: Path,
    ids: list[str],
    tier_config: dict,
    seed: int,
    cache_dir: Path,
    processes: int,
    devices: str | None = None,
    progress: ProgressFn | None = None,
    poll_seconds: float = 0.5,
) -> None:
    """Pretrain over `processes` local ranks: `torchrun --standalone --nproc_per_node N -m delbench pretrain`
    (a rendezvous on a free local port, one GPU per rank where there are GPUs, `devices` their
    CUDA_VISIBLE_DEVICES). The encoder lands in `cache_dir` as a single process would write it.

    `progress` gets the main rank's progress; if it raises (the stage was cancelled, the worker is stopping)
    every rank is stopped, the checkpoint stays for a resume under any number of ranks, and the exception
    propagates. A rank that dies makes torchrun stop the others: RanksFailed with the end of their output,
    never a hang."""
    with tempfile.TemporaryDirectory(prefix="delbench-ranks-") as folder:
        work = Path(folder)
        (work / "ids.txt").write_text("\n".join(ids) + "\n")
        (work / "tier.json").write_text(json.dumps(tier_config))
        watched = work / "progress.json"
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                "-m", "delbench", "pretrain", "--pool", str(pool_dir), "--ids", str(work / "ids.txt"),
                "--tier", str(work / "tier.json"), "--seed", str(seed), "--cache", str(cache_dir), "--quiet",
                "--progress-file", str(watched)]  # fmt: skip
        env = os.environ | ({"CUDA_VISIBLE_DEVICES": devices} if devices else {})
        with open(work / "output.log", "wb") as output:
            # its own session: stopping it reaches torchrun and every rank, and nothing of this process
            ranks = subprocess.Popen(
                args, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            while ranks.poll() is None:
                time.sleep(poll_seconds)
                if progress and (seen := read_progress(watched)):
                    progress(*seen)
        except BaseException:
            _stop(ranks)
            raise
        if ranks.returncode != 0:
            tail = (work / "output.log").read_text(errors="replace").strip().splitlines()[-30:]
            raise RanksFailed(
                f"pretraining over {processes} processes ended with exit status {ranks.returncode}:\n"
                + "\n".join(tail)
            )
        if progress and (seen := read_progress(watched)):
            progress(*seen)


def _stop(process: subprocess.Popen, grace_seconds: float = 30) -> None:
    """SIGTERM to torchrun's process group (it stops its ranks), SIGKILL if it has not ended in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_seconds)
            return
        except subprocess.TimeoutExpired:
            continue
