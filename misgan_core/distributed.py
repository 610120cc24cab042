"""Data-parallel training across processes (torchrun): the process group and the gradient all-reduce.

    torchrun --nproc_per_node=2 -m misgan_core train --dataset mnist-5k --steps 300 --out runs/ddp

How MisGAN uses it (misgan.MisGAN reads the process group when it is made):
  - `--batch-size` is the global batch; each of the W ranks trains on its B / W rows of every minibatch.
  - The noise: every rank draws the global batch's noise from the run's one stream (seeded by the run's
    seed) and keeps its own rows, so each rank's noise is its own part of the run's stream and W ranks take,
    together, exactly the noise and minibatches one process would. A checkpoint therefore resumes in any
    number of processes.
  - After every backward pass the gradients of every network are averaged over the ranks with one
    all-reduce per update phase (`average_gradients`). The FC critics' gradients are written out by hand
    (critic_gradients._MLPCriticLoss) and reach `.grad` without DistributedDataParallel's hooks; averaging
    `.grad` directly serves those paths and autograd's alike. All losses are means over equal shards, so the
    average of the ranks' gradients is the gradient of the global batch's loss.
  - Rank 0 alone writes the run folder (config, checkpoints, metrics, grids) and computes the live FID.
gloo on CPU, NCCL on CUDA (each rank on the GPU numbered by its LOCAL_RANK).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int
    world: int
    local_rank: int
    backend: str


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str = "auto") -> ProcessGroup:
    """Join the process group torchrun set up (env:// rendezvous): NCCL when this rank trains on CUDA, else
    gloo. Idempotent."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())


def stop(finished: bool = True) -> None:
    """Leave the process group. After a command that `finished`, first wait for every rank: a rank that tore
    its gloo connections down while rank 0 was still writing the checkpoint was seen to abort ("terminate
    called without an active exception", under a loaded CI machine). After an error, leave at once (torchrun
    stops the other ranks)."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(modules: list[torch.nn.Module]) -> None:
    """Replace every parameter's .grad by its mean over the ranks: one all-reduce over one flat buffer."""
    grads = [p.grad for module in modules for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def average(values: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (for log lines)."""
    out = values.clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()
