"""Training in several processes (one per GPU) under ``torchrun``, with the same result as one.

``torchrun`` starts one process per GPU and tells each its place in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). :func:`init_world`
reads it and joins the process group: NCCL on CUDA, gloo on CPU. Without ``torchrun``
(``WORLD_SIZE`` unset or 1) it sets nothing up and training runs in one process as before.

The batches stay those of one process. Every optimiser step splits its batch into
``world size x grad_accum`` disjoint shards, round robin over the batch's utterances (a batch
is sorted by length, so the shards come out alike in size): rank ``r`` takes shards
``r, r + W, r + 2W, ...``, one per micro-step. The training losses are means (over frames,
over utterances), so each shard's loss is scaled by its share of the whole batch's normaliser,
known from the batch's make-up before anything runs; the scaled gradients summed over shards
and ranks are then those of the whole batch's mean loss in one process (see
:func:`rank_shares` and ``sslgrid.train.loop.optimise_batch``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """The processes training one model together; ``World()`` is a single CPU process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, outputs and progress bars."""
        return self.rank == 0

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` in DistributedDataParallel with several processes, as it is with one.

        DDP exchanges gradients only for what runs through the wrapper's ``forward``.
        """
        if self.size == 1:
            return module
        device_ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over all ranks (a new tensor on this rank's device)."""
        values = values.detach().to(device=self.device, dtype=torch.float64, copy=True)
        if self.size > 1:
            dist.all_reduce(values)
        return values

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank must call it)."""
        if self.size == 1:
            return flag
        return bool(self.sum(torch.tensor([float(flag)]))[0] > 0)

    def barrier(self) -> None:
        if self.size > 1:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


def pick_device(device: str, local_rank: int) -> torch.device:
    """``auto``: this process's GPU when CUDA is available, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(device)


def init_world(device: str = "auto") -> World:
    """This process's place among those ``torchrun`` started; joins their process group.

    ``device`` is ``auto``, ``cpu`` or ``cuda``; with CUDA, rank ``LOCAL_RANK`` of a node
    uses that node's GPU number ``LOCAL_RANK``.
    """
    env = os.environ
    size = int(env.get("WORLD_SIZE", "1"))
    rank, local_rank = int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
    world = World(
        rank=rank,
        size=size,
        local_rank=local_rank,
        local_size=int(env.get("LOCAL_WORLD_SIZE", "1")),
        device=pick_device(device, local_rank),
    )
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if world.device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        log.info("rank %d of %d (%s, %s)", rank, size, backend, world.device)
    return world


def close_world() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_shares(
    batch: Sequence[int],
    weight_of: Callable[[list[int]], float],
    world_size: int = 1,
    rank: int = 0,
    grad_accum: int = 1,
) -> list[tuple[list[int], float]]:
    """This rank's micro-batches of ``batch``, each with its share of the batch's loss.

    ``weight_of(items)`` is the normaliser of the mean loss over ``items`` (frames, targets,
    utterances). The batch is dealt round robin into ``world_size * grad_accum`` shards;
    shard ``p`` belongs to rank ``p % world_size``. A shard's share is its weight over the
    whole batch's, so that the shares of all ranks sum to 1 and the share-weighted sum of shard
    losses is the whole batch's loss. Shards with nothing to learn from (empty, zero weight)
    are left out; a rank left with none gets the batch's last utterance at share 0, since
    every rank must take part in each gradient exchange.
    """
    parts = world_size * grad_accum
    shards = [list(batch[p::parts]) for p in range(parts)]
    weights = [float(weight_of(s)) if s else 0.0 for s in shards]
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"batch {list(batch)[:5]}... has nothing to learn from (weight 0)")
    mine = [
        (shards[p], weights[p] / total) for p in range(rank, parts, world_size) if weights[p] > 0
    ]
    return mine or [(list(batch[-1:]), 0.0)]


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of one rank's random draws in one optimiser step.

    Ranks draw independently of each other, and a resumed run draws what an uninterrupted
    one would, whatever the random state in the checkpoint.
    """
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)
