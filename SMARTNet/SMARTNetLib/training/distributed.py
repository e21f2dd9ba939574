"""Single-process or ``torchrun`` (DistributedDataParallel) runs: ranks, device, threads, collectives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from SMARTNetLib.analysis.inference import resolve_device


@dataclass
class Dist:
    """Where this process stands: rank 0 of 1 unless started by ``torchrun``."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (a picklable object), in rank order."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def mean(self, value: float) -> float:
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)  # nccl reduces GPU tensors only
        dist.all_reduce(t)
        return float(t.item()) / self.world


def setup(device_name: str) -> Dist:
    """Start the process group under ``torchrun`` (gloo on CPU, nccl on GPU) and pick the device and threads."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = resolve_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if "OMP_NUM_THREADS" not in os.environ:  # else torch already honours it
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // max(1, local_world)))
    return Dist(rank, world, local_rank, device)


def teardown(info: Dist) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()
