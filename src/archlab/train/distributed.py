"""Data-parallel training across processes: the process group, gradient averaging, rank-0 writes.

A run started by ``torchrun`` (or ``archlab train --nproc N``, which calls it) finds
``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` in its environment; :func:`init_from_env` joins the
process group (gloo on CPU, NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``) and every later call
asks :func:`current`. One process without those variables is a world of one and nothing here
communicates.

The rules (what :mod:`archlab.train.loop` does with a :class:`Dist`):

- ``batch_size`` is the **global** batch: every rank draws the same batch indices from the
  same seeded generator and takes its contiguous shard, so 2 processes x B/2 see exactly the
  samples one process x B sees, and a run resumed with another world size keeps its data order.
- After each backward, the gradients of every optimizer's parameters are averaged across ranks
  in one flat all-reduce before clipping and the step (what ``DistributedDataParallel`` does,
  done here so tasks with several optimizers or sub-module calls, a GAN's, need no wrapper).
  Parameters and buffers are broadcast from rank 0 once at the start.
- BatchNorm: on CUDA, BatchNorm layers become ``SyncBatchNorm`` (batch statistics over the
  global batch). On CPU (gloo; PyTorch's SyncBatchNorm needs a GPU) each rank normalises with
  its own shard's statistics, as plain DDP does, and the running statistics are averaged across
  ranks before every evaluation and checkpoint.
- Losses and metrics are all-reduced; a non-finite loss on any rank stops every rank with the
  same error; only rank 0 writes logs, metrics, checkpoints and pictures.
- Each rank's torch RNG (dropout) is seeded with ``seed + rank`` after the model is built; all
  ranks' RNG states are gathered into the checkpoint so a resume with the same world size is exact.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from archlab.errors import ConfigError

log = logging.getLogger("archlab.train")


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, and the backend in use."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo" / "nccl", None for a single process

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (no-ops for a world of one) ------------------------------------------------
    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks, in place; returns it."""
        if self.active:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def all_true(self, flag: torch.Tensor) -> torch.Tensor:
        """Element-wise AND of a bool tensor over ranks."""
        if not self.active:
            return flag
        t = flag.to(torch.int32)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return t.bool()

    def broadcast_text(self, text: str | None) -> str:
        """Rank 0's ``text`` on every rank (e.g. the run directory rank 0 chose)."""
        if not self.active:
            return text or ""
        data = (text or "").encode("utf-8")
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.comm_device)
        torch.distributed.broadcast(size, 0)
        buf = torch.zeros(int(size), dtype=torch.uint8, device=self.comm_device)
        if self.is_main:
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        torch.distributed.broadcast(buf, 0)
        return bytes(buf.cpu().tolist()).decode("utf-8")

    def gather_tensor(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``t`` (same shape and dtype on all ranks), in rank order, on every rank."""
        if not self.active:
            return [t]
        src = t.to(self.comm_device)
        out = [torch.empty_like(src) for _ in range(self.world)]
        torch.distributed.all_gather(out, src)
        return [o.cpu() for o in out]

    @property
    def comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    # -- the model ------------------------------------------------------------------------------
    def broadcast_module(self, model: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank."""
        if not self.active:
            return
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                torch.distributed.broadcast(t.data, 0)

    def average_gradients(self, params: list[torch.Tensor]) -> None:
        """Average ``.grad`` of ``params`` over ranks in one flat all-reduce (a parameter without a
        gradient on this rank counts as a zero gradient, so every rank sends the same layout)."""
        if not self.active or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            new = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n
            if p.grad is None:
                p.grad = new
            else:
                p.grad.copy_(new)

    def average_buffers(self, model: nn.Module) -> None:
        """Average float buffers (BatchNorm running statistics) over ranks."""
        if not self.active:
            return
        with torch.no_grad():
            for b in model.buffers():
                if b.is_floating_point():
                    torch.distributed.all_reduce(b.data, op=torch.distributed.ReduceOp.SUM)
                    b.data /= self.world

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items (sizes differ by at most one)."""
        lo = (n * self.rank) // self.world
        hi = (n * (self.rank + 1)) // self.world
        return slice(lo, hi)


_CURRENT = Dist()


def current() -> Dist:
    """The :class:`Dist` of this process (a world of one unless :func:`init_from_env` joined a group)."""
    return _CURRENT


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set the process-group variables."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(device: str = "auto", timeout_s: float = 600.0) -> Dist:
    """Join the process group described by torchrun's variables; a world of one otherwise.

    Args:
        device: the run's ``device`` setting: ``auto`` uses NCCL and ``cuda:LOCAL_RANK`` when
            CUDA is available, gloo on CPU otherwise; ``cpu`` forces gloo.
        timeout_s: how long a collective waits for the other ranks before failing.

    Raises:
        ConfigError: the variables are malformed, or CUDA was asked for with fewer GPUs than ranks.
    """
    global _CURRENT
    if _CURRENT.active or not launched_by_torchrun():
        return _CURRENT
    try:
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise ConfigError(
            f"WORLD_SIZE/RANK/LOCAL_RANK must be integers; got {os.environ.get('WORLD_SIZE')!r}/"
            f"{os.environ.get('RANK')!r}/{os.environ.get('LOCAL_RANK')!r}"
        ) from None
    if world <= 1:
        return _CURRENT
    use_cuda = device != "cpu" and torch.cuda.is_available() and not device.startswith("cpu")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {rank} wants cuda:{local_rank}; this machine has {torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    _CURRENT = Dist(rank=rank, world=world, local_rank=local_rank, backend=backend)
    if rank != 0:  # one voice: the other ranks log warnings and errors only
        logging.getLogger("archlab").setLevel(logging.WARNING)
    log.info("distributed: %d processes, backend %s", world, backend)
    return _CURRENT


def rank_device(dist: Dist, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` under NCCL, else ``device``."""
    if dist.backend == "nccl":
        return torch.device("cuda", dist.local_rank)
    return device


def shutdown() -> None:
    """Leave the process group (end of a distributed run)."""
    global _CURRENT
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CURRENT = Dist()


def check_batch(dist: Dist, batch_size: int) -> None:
    if dist.active and batch_size < dist.world:
        raise ConfigError(
            f"batch_size={batch_size} is the global batch, shared by {dist.world} processes; it must be >= {dist.world}"
        )
