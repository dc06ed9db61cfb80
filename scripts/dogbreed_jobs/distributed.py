"""Process placement and the collectives training needs (SageMaker's `torch_distributed`).

torchrun starts one process per GPU and describes the world in RANK, WORLD_SIZE, LOCAL_RANK
and LOCAL_WORLD_SIZE; without it this is a single process. The process group uses nccl on
GPUs and gloo on CPUs. Every helper here is a no-op in a single process, so the training loop
reads the same either way. Rank 0 alone prints (`log`), checkpoints and writes the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime() -> Runtime:
    """Process placement from torchrun's environment (a single process without it)."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank, world_size, local_rank, local_world_size, device)


def shutdown(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(model: nn.Module, runtime: Runtime) -> None:
    """Rank 0's BatchNorm statistics on every rank.

    In training mode each rank updates its running statistics from its own batches, and DDP
    only broadcasts rank 0's at the start of the next forward; without this, each rank would
    validate a slightly different network from the one rank 0 saves.
    """
    if runtime.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def broadcast_object(value, runtime: Runtime):
    """Rank 0's `value` (any picklable object) on every rank."""
    if not runtime.distributed:
        return value
    holder = [value if runtime.is_main else None]
    dist.broadcast_object_list(holder, src=0, device=runtime.device)
    return holder[0]


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def log(runtime: Runtime, message: str) -> None:
    if runtime.is_main:
        print(message, flush=True)
