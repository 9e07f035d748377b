"""The training batches of a run, in the order its seed fixes, each rank reading its shard.

Three ways to batch, one per kind of split:

- **in memory** (a :class:`~archlab.data.base.Split` of tensors): index the tensors with a
  ``torch.randperm`` drawn from the run's data generator once per epoch (stored in the
  checkpoint), or in-order slices with ``shuffle=False``: the fast path for small data;
- **streamed, random** (a token stream): every batch draws ``batch_size`` sample indices
  uniformly with replacement from the data generator, as nanoGPT samples windows; the
  generator's state in the checkpoint is all a resume needs;
- **streamed, by epoch** (image folders, ``.npy`` files): every epoch visits each sample once in
  an order seeded by (seed, epoch), read by ``DataLoader`` workers when the split asks for them;
  (epoch, position) in the checkpoint rebuild the same order on resume.

Under data-parallel training ``batch_size`` is the global batch: every rank draws the same
indices and keeps its contiguous shard (:meth:`archlab.train.distributed.Dist.shard`), so the
samples seen do not depend on the number of processes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import torch

from archlab.data.base import Split, StreamSplit, is_streamed
from archlab.errors import ConfigError, DataError
from archlab.train.config import TrainConfig
from archlab.train.distributed import Dist
from archlab.train.state import TrainState

log = logging.getLogger("archlab.train")


def _collate(samples: list) -> Split:
    """DataLoader collate: ``[(inputs, target), ...]`` -> one batch Split."""
    inputs = tuple(torch.stack([s[0][i] for s in samples]) for i in range(len(samples[0][0])))
    target = None if samples[0][1] is None else torch.stack([s[1] for s in samples])
    return Split(inputs=inputs, target=target)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch`` for a streamed split: a permutation seeded by (seed, epoch)."""
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(n, generator=gen)


class Batches:
    """Yields the run's training micro-batches and advances the epoch counters of a TrainState.

    Args:
        split: the training split (in memory, on the device; or streamed).
        cfg: batch size, shuffling, drop_last, seed, workers.
        data_gen: the run's data generator (its state is in every checkpoint).
        device: where batches go.
        dist: this process's place in a data-parallel run.
    """

    def __init__(self, split, cfg: TrainConfig, data_gen: torch.Generator, device: torch.device, dist: Dist):
        self.split, self.cfg, self.gen, self.device, self.dist = split, cfg, data_gen, device, dist
        self.streamed = is_streamed(split)
        self.kind = "whole" if not split.indexable else ("stream-" + split.sampling if self.streamed else "memory")
        n, bs = len(split), cfg.batch_size
        if n == 0:
            raise DataError("the training split holds no samples")
        if self.kind == "whole":
            self.per_epoch = 1
            if dist.active:
                log.warning("a whole-graph split is the same batch on every process: data parallelism adds no speed")
        elif cfg.drop_last:
            if n < bs:
                raise ConfigError(f"drop_last=True with batch_size={bs} leaves no batch of the {n} training samples")
            self.per_epoch = n // bs
        else:
            self.per_epoch = math.ceil(n / bs)
        self.workers = cfg.num_workers or (split.workers if self.streamed else 0)
        self._loader: Iterator[Split] | None = None
        self._loader_at: tuple[int, int] | None = None  # (epoch, pos) the loader iterator will yield next
        self._order: torch.Tensor | None = None  # the current epoch's sample order (streamed by epoch)
        self._order_epoch: int | None = None

    # -- the next batch -------------------------------------------------------------------------
    def next(self, state: TrainState) -> Split:
        """The next micro-batch (this rank's shard), on the device; advances ``state``."""
        if self.kind == "whole":
            batch = self.split
        elif self.kind == "stream-random":
            idx = torch.randint(len(self.split), (self.cfg.batch_size,), generator=self.gen)
            batch = self._read(idx[self.dist.shard(len(idx))])
        elif self.kind == "stream-epoch":
            batch = self._from_epoch(state)
        else:
            batch = self.split.take(self._rows(state))
        state.pos += 1
        if state.pos >= self.per_epoch:
            state.epoch, state.pos, state.perm = state.epoch + 1, 0, None
        state.micro += 1
        return batch

    def _batch_len(self, state: TrainState) -> int:
        bs, n = self.cfg.batch_size, len(self.split)
        return min(bs, n - state.pos * bs)

    def _rows(self, state: TrainState) -> torch.Tensor | slice:
        """In memory: this rank's rows of the batch, from the epoch permutation (kept in the state)
        or, unshuffled, a slice (a view, no copy)."""
        lo = state.pos * self.cfg.batch_size
        part = self.dist.shard(self._batch_len(state))
        if not self.cfg.shuffle:
            return slice(lo + part.start, lo + part.stop)
        if state.perm is None:
            state.perm = torch.randperm(len(self.split), generator=self.gen).to(self.device)
        return state.perm[lo + part.start : lo + part.stop]

    def _read(self, idx: torch.Tensor) -> Split:
        """Rows ``idx`` of a streamed split, checked for NaN on the host, then moved to the device."""
        batch = self.split.take(idx)
        if not self.cfg.allow_nonfinite_inputs:
            _check_batch(batch, idx)
        return batch.to(self.device)

    def _epoch_rows(self, epoch: int, pos: int) -> torch.Tensor:
        """Streamed by epoch: this rank's shard of batch ``pos`` of ``epoch``. The epoch's order is
        drawn once and kept until the next epoch (it is rebuilt from (seed, epoch) on resume)."""
        if self._order_epoch != epoch:
            n = len(self.split)
            self._order = epoch_order(n, self.cfg.seed, epoch) if self.cfg.shuffle else torch.arange(n)
            self._order_epoch = epoch
        bs = self.cfg.batch_size
        rows = self._order[pos * bs : (pos + 1) * bs]
        return rows[self.dist.shard(len(rows))]

    def _from_epoch(self, state: TrainState) -> Split:
        if self.workers == 0:
            return self._read(self._epoch_rows(state.epoch, state.pos))
        if self._loader is None or self._loader_at != (state.epoch, state.pos):
            # a new epoch, or the first batch after a resume: workers read from here on
            self._loader = iter(
                torch.utils.data.DataLoader(
                    self.split.source,
                    batch_sampler=[self._epoch_rows(state.epoch, p).tolist() for p in range(state.pos, self.per_epoch)],
                    num_workers=self.workers,
                    collate_fn=_collate,
                    # its own generator: a new iterator (each epoch, or on resume) must not draw its
                    # workers' base seed from the global RNG, which dropout continues to use
                    generator=torch.Generator().manual_seed(self.cfg.seed),
                )
            )
        batch = next(self._loader)
        self._loader_at = (state.epoch, state.pos + 1) if state.pos + 1 < self.per_epoch else None
        if not self.cfg.allow_nonfinite_inputs:
            _check_batch(batch, None)
        return batch.to(self.device)

    def close(self) -> None:
        self._loader = None


def _check_batch(batch: Split, idx: torch.Tensor | None) -> None:
    """A streamed batch with NaN/Inf in a float input or target is a DataError naming the sample."""
    for what, t in [(f"input {i}", t) for i, t in enumerate(batch.inputs)] + [("target", batch.target)]:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                row = int(bad.nonzero()[0][0])
                where = f"sample {int(idx[row])}" if idx is not None else f"row {row} of a batch"
                raise DataError(
                    f"streamed training data: {what} of {where} holds NaN/Inf; expected finite numbers. "
                    "Clean the data, or set allow_nonfinite_inputs=True"
                )


def eval_subset(split, k: int | None):
    """An evenly spaced, fixed subset of ``k`` samples of ``split`` held in memory (the whole
    split when ``k`` is None or not smaller): what evaluation during training reads."""
    if split is None or k is None or not split.indexable or k >= len(split):
        return split
    idx = torch.from_numpy(np.linspace(0, len(split) - 1, k).round().astype(np.int64))
    return split.take(idx)


def describe(split) -> str:
    """One phrase for the log: how the training split is batched."""
    if isinstance(split, StreamSplit):
        what = split.describe.get("what", "a sample source")
        how = "random windows per batch" if split.sampling == "random" else "a seeded order per epoch"
        return f"streamed from {what} ({len(split)} samples, {how}, {split.workers} workers)"
    return f"in memory ({len(split)} samples)"
