"""The process group of a launcher (``torchrun``, ``accelerate launch``): training and evaluation share it."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def distributed() -> tuple[int, int]:
    """(rank, world size), starting torch.distributed from the launcher's environment when needed
    (nccl on CUDA, gloo on the CPU); (0, 1) in a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
