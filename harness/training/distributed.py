"""Data-parallel training with PyTorch DDP (gloo on CPU, nccl on GPU).

Launch any script that calls `fit` with `torchrun --nproc_per_node N ...` or `accelerate launch
--num_processes N ...`: both set RANK / WORLD_SIZE / MASTER_ADDR, and `init_from_env` joins the
process group. Every process draws the same seeded global batch; it is cut into
`grad_accum x world` equal shards and process r takes shards r*grad_accum ... (r+1)*grad_accum-1.
DDP averages gradients over processes and the loop divides by grad_accum, so one process with
`grad_accum = k * N` computes the same update as N processes with `grad_accum = k`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    ddp: bool = False


def init_from_env() -> World:
    """Join the process group torchrun/accelerate describe in the environment (no-op alone)."""
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return World()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return World()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), ddp=dist.get_world_size() > 1)


def rank_shards(indices: list[int], world: World, grad_accum: int) -> list[list[int]]:
    """This process's micro-batches of the global batch (see module doc)."""
    count = grad_accum * world.size
    size, extra = divmod(len(indices), count)
    shards, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        shards.append(indices[start:end])
        start = end
    return shards[world.rank * grad_accum:(world.rank + 1) * grad_accum]


def loss_runner(model: Any, batcher: Any, extra: list[Any], world: World) -> tuple[Callable[[list[int]], Any],
                                                                                   Callable[[], Any]]:
    """(indices → loss, no_sync context): the batcher's loss, through DDP when distributed."""
    if not world.ddp:
        return (lambda part: batcher.loss(model, part)), contextlib.nullcontext
    import torch
    from torch.nn.parallel import DistributedDataParallel

    class LossModule(torch.nn.Module):
        """DDP syncs the parameters of the module it wraps: the model plus any extra heads."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.extra = torch.nn.ParameterList(extra)

        def forward(self, part: list[int]) -> Any:
            return batcher.loss(self.model, part)

    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    wrapped = DistributedDataParallel(LossModule(), device_ids=ids, find_unused_parameters=True)
    return wrapped, wrapped.no_sync


def all_mean(value: float, world: World) -> float:
    """The mean of a scalar over processes (the logged loss of the global batch)."""
    if not world.ddp:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return float(tensor.item()) / world.size
