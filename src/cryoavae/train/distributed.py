"""Data-parallel training over several processes (``torch.distributed``): one per GPU, or per
CPU share with the ``gloo`` backend.

How a global batch is shared: every rank draws the same shuffled order of the training particles
(the same seeded generator), cuts each global batch of ``training.batch_size`` particles into
``world`` contiguous pieces and trains on its own piece; gradients are averaged by
``DistributedDataParallel``. The reparameterisation noise of the whole batch is drawn on every
rank and each takes its rows, and the affinity term is computed over the whole batch (its ``mu``
all-gathered with gradients), so a run on 2 ranks optimises the same objective as on 1 rank
with the same global batch, up to the order of floating-point sums.

Launched by ``torchrun`` (:mod:`.launch`), which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and the rendezvous; a process without them is a world of one, and every function here is then
the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The rank that logs and writes (rank 0)."""
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch of ``n``: contiguous pieces whose sizes
        differ by at most one, in rank order."""
        return self.rank * n // self.world, (self.rank + 1) * n // self.world

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds(len(batch))
        return batch[lo:hi]

    def gather_rows(self, local: torch.Tensor, n: int, grad: bool) -> torch.Tensor:
        """The whole batch ``(n, ...)`` from every rank's piece, in rank order; with ``grad`` the
        gradient flows back to each rank's own rows (``torch.distributed.nn``)."""
        if self.world == 1:
            return local
        size = -(-n // self.world)  # the largest piece; smaller ones are padded to it
        padded = local.new_zeros((size, *local.shape[1:]))
        padded[: len(local)] = local
        if grad:
            from torch.distributed.nn.functional import all_gather

            pieces = all_gather(padded)
        else:
            pieces = [torch.empty_like(padded) for _ in range(self.world)]
            dist.all_gather(pieces, padded)
        sizes = [(r + 1) * n // self.world - r * n // self.world for r in range(self.world)]
        return torch.cat([piece[:k] for piece, k in zip(pieces, sizes, strict=True)])

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over the ranks (a copy; the input is left as it was)."""
        if self.world == 1:
            return values
        total = values.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def join(device_kind: str) -> Cluster:
    """This process's :class:`Cluster`, joining the process group when ``torchrun`` started us
    (``nccl`` for CUDA, ``gloo`` for the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Cluster()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Cluster(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
