"""The training engine: prepare the run, loop, finish; each part on one screen.

The loop batches in-memory tensors by indexing (a ``torch.randperm`` from its own generator per
epoch, or in-order slices with ``shuffle=False``), lets the task take each step (one optimizer
by default, several for e.g. a GAN), keeps running losses on the device and syncs with the host
only at logging, evaluation and checkpoint steps. Every checkpoint holds what an exact resume
needs (weights, optimizer, scheduler, scaler, step, data order, RNG states); a run killed at any
moment and resumed ends with the same weights, bitwise, as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.data.base import DataBundle
from archlab.errors import ArchlabError, ConfigError, DataError
from archlab.io import atomic_write_json
from archlab.rundir import RunDir, find_checkpoint, read_marker
from archlab.train.augment import BatchAugmenter, build_augmenter
from archlab.train.config import TrainConfig
from archlab.train.evaluate import evaluate_split, metric_mode
from archlab.train.precision import resolve_device, resolve_precision
from archlab.train.progress import Reporter
from archlab.train.state import TrainState, load_model_weights, restore_checkpoint, seed_everything, write_checkpoint
from archlab.train.step import StepContext
from archlab.train.transfer import apply_transfer

log = logging.getLogger("archlab.train")


@dataclass
class RunResult:
    """What :func:`fit` returns."""

    run_dir: Path
    model: nn.Module
    metrics: dict[str, Any]
    steps: int
    best_step: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class NonFiniteLossError(ArchlabError):
    """The training loss became NaN or Inf."""


class _FiniteGuard:
    """Records per-step 'loss is finite' flags on the device; checks them at sync points."""

    def __init__(self, size: int, device: torch.device):
        self.flags = torch.ones(size, dtype=torch.bool, device=device)
        self.steps: list[int] = []
        self.last_good: Path | None = None  # named in the error

    def record(self, losses: dict[str, torch.Tensor], step: int) -> None:
        ok = None
        for v in losses.values():
            f = torch.isfinite(v).all()
            ok = f if ok is None else ok & f
        self.flags[len(self.steps)] = ok
        self.steps.append(step)
        if len(self.steps) == len(self.flags):
            self.check()

    def check(self) -> None:
        if not self.steps:
            return
        n = len(self.steps)
        if not bool(self.flags[:n].all()):
            bad = self.steps[int((~self.flags[:n]).nonzero()[0])]
            where = (
                f"the last good checkpoint is {self.last_good}"
                if self.last_good
                else "no checkpoint had been written yet"
            )
            raise NonFiniteLossError(
                f"training loss became NaN/Inf at step {bad}; training stopped and {where}. "
                "Try a lower lr, grad_clip, or precision='fp32'."
            )
        self.steps.clear()


@contextlib.contextmanager
def _deterministic(on: bool):
    before = torch.are_deterministic_algorithms_enabled()
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


@dataclass
class _Run:
    """Everything :func:`fit` prepares before the first step; the loop only reads and advances it."""

    model: nn.Module
    task: Any
    cfg: TrainConfig
    run: RunDir
    device: torch.device
    precision: str
    train: Any  # the training Split, on the device
    val: Any  # the validation Split or None
    optimizers: list
    schedulers: list
    ctx: StepContext
    data_gen: torch.Generator  # the data order; its state is in every checkpoint
    state: TrainState
    total: int  # optimizer steps of the whole run
    batches_per_epoch: int
    eval_every: int
    ckpt_every: int
    eval_bs: int
    mode: str  # "min" / "max" for cfg.monitor
    reporter: Reporter
    guard: _FiniteGuard
    augment: BatchAugmenter | None = None  # its generator's state is in every checkpoint
    last_ckpt: Path | None = None

    def save_last(self) -> None:
        self.guard.check()
        write_checkpoint(
            self.run.last,
            self.model,
            state=self.state,
            optimizers=self.optimizers,
            schedulers=self.schedulers,
            scaler=self.ctx.scaler,
            data_gen=self.data_gen,
            aug_gen=self.augment.generator if self.augment is not None else None,
        )
        self.last_ckpt = self.guard.last_good = self.run.last


def fit(
    model: nn.Module,
    data: DataBundle,
    task: Any,
    config: TrainConfig,
    *,
    run_dir: str | Path,
    reporter: Reporter | None = None,
    resume: bool = False,
    seed: bool = True,
) -> RunResult:
    """Train ``model`` on ``data`` for ``task`` and write checkpoints and metrics into ``run_dir``.

    The engine takes objects, never names (``archlab.fit`` in :mod:`archlab.runs` resolves those,
    adapts the model to the data and writes the run's config first).

    Args:
        model: any ``nn.Module`` the task can drive.
        data: the splits (train; val and test optional).
        task: a task object (see :class:`archlab.tasks.base.Task` for the hooks called here).
        config: the validated training config.
        run_dir: the run directory (created if missing).
        reporter: receives every logged record and every picture (default: silent).
        resume: continue from the last complete checkpoint in ``run_dir`` (``last/`` is first
            written at step 0, with the RNG states, so there always is one unless the run was
            killed inside that first write; then it starts again from the same seeded state).
        seed: seed python, numpy and torch from ``config.seed`` before a start from step 0. The
            runs layer seeds before it builds the model and passes False, so that training
            continues the RNG stream the model's initialisation left.

    Returns:
        A :class:`RunResult` with the run directory, the trained model and the final metrics.
    """
    r = _prepare(model, data, task, config, RunDir(run_dir), reporter or Reporter(), resume, seed)
    r.reporter.start(r.total, r.state.step, f"{getattr(model, 'registry_name', type(model).__name__)} on {data.name}")
    try:
        with _deterministic(r.cfg.deterministic):
            t_start, cpu_start = time.perf_counter(), time.process_time()
            _loop(r)
            train_time, train_cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
            if r.last_ckpt is None or r.state.step > _ckpt_step(r.last_ckpt):
                r.save_last()
        return _finish(r, data, train_time, train_cpu)
    finally:
        r.reporter.close()


def _prepare(
    model, data: DataBundle, task, cfg: TrainConfig, run: RunDir, reporter: Reporter, resume: bool, seed: bool
) -> _Run:
    """Device, precision, batching, optimizers and the state to start from (fresh or restored)."""
    if seed and (not resume or find_checkpoint(run.path, "last") is None):
        # A fresh run, or a resumed one killed before any checkpoint: the same seeded start.
        seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    apply_transfer(model, cfg.transfer)  # freezing and LoRA adapters, before the optimizer sees the parameters
    model.to(device)
    if not cfg.allow_nonfinite_inputs:
        _check_finite(data)
    task.setup(data, cfg, device)
    train = data.train.to(device)
    val = data.val.to(device) if data.val is not None else None

    n, bs = len(train), cfg.batch_size
    if not train.indexable:
        batches_per_epoch = 1
    elif cfg.drop_last:
        if n < bs:
            raise ConfigError(f"drop_last=True with batch_size={bs} leaves no batch of the {n} training samples")
        batches_per_epoch = n // bs
    else:
        batches_per_epoch = math.ceil(n / bs)
    total = cfg.total_steps(batches_per_epoch)
    eval_every = cfg.eval_every or max(1, batches_per_epoch // cfg.grad_accum)
    if cfg.patience is not None and val is None:
        raise ConfigError(
            f"early stopping (patience={cfg.patience}) needs a validation split; dataset {data.name!r} has none"
        )
    optimizers, schedulers = task.configure_optimizers(model, cfg, total)
    r = _Run(
        model=model,
        task=task,
        cfg=cfg,
        run=run,
        device=device,
        precision=precision,
        train=train,
        val=val,
        optimizers=optimizers,
        schedulers=schedulers,
        ctx=StepContext(device, precision, cfg.grad_clip, cfg.grad_accum),
        data_gen=torch.Generator().manual_seed(cfg.seed),
        state=TrainState(),
        total=total,
        batches_per_epoch=batches_per_epoch,
        eval_every=eval_every,
        ckpt_every=cfg.checkpoint_every or eval_every,
        eval_bs=cfg.eval_batch_size or max(bs, 512),
        mode=cfg.mode if cfg.mode != "auto" else metric_mode(task, cfg.monitor),
        reporter=reporter,
        guard=_FiniteGuard(cfg.log_every, device),
        augment=build_augmenter(cfg.augment, data, task, cfg.seed),
    )
    run.path.mkdir(parents=True, exist_ok=True)
    if resume:
        run.clean_partial()
        ckpt = find_checkpoint(run.path, "last")
        if ckpt is not None:
            aug_gen = r.augment.generator if r.augment is not None else None
            restore_checkpoint(ckpt, model, r.state, optimizers, schedulers, r.ctx.scaler, r.data_gen, device, aug_gen)
            log.info("resuming %s from step %d", run.path, r.state.step)
        else:  # killed before its first checkpoint: the seeded run starts again identically
            log.info("no complete checkpoint in %s; starting it again from step 0", run.path)
        run.truncate_metrics(r.state.step)
    r.last_ckpt = r.guard.last_good = find_checkpoint(run.path, "last")
    if r.last_ckpt is None:
        # A checkpoint of the initial state: a run killed before its first periodic checkpoint
        # resumes from these exact weights, however the model was built.
        r.save_last()
    return r


def _check_finite(data: DataBundle) -> None:
    """NaN/Inf in any float input or target of any split is a DataError naming where (one pass
    over the in-memory tensors before training, instead of a check per batch)."""
    for split_name, split in data.splits().items():
        named = [(f"input {i}", t) for i, t in enumerate(split.inputs)] + [("target", split.target)]
        for what, t in named:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel():
                bad = ~torch.isfinite(t)
                if bool(bad.any()):
                    raise DataError(
                        f"dataset {data.name!r}: {split_name} {what} holds {int(bad.sum())} NaN/Inf values "
                        f"(first at index {tuple(int(v) for v in bad.nonzero()[0])}); expected finite numbers. "
                        "Clean the data, or set allow_nonfinite_inputs=True"
                    )


def _next_batch(r: _Run):
    """The next micro-batch in the order fixed by the data generator; advances the epoch counters."""
    state, bs = r.state, r.cfg.batch_size
    if not r.train.indexable:
        batch = r.train
    elif r.cfg.shuffle:
        if state.perm is None:
            state.perm = torch.randperm(len(r.train), generator=r.data_gen).to(r.device)
        batch = r.train.take(state.perm[state.pos * bs : (state.pos + 1) * bs])
    else:
        batch = r.train.take(slice(state.pos * bs, (state.pos + 1) * bs))
    state.pos += 1
    if state.pos >= r.batches_per_epoch:
        state.epoch, state.pos, state.perm = state.epoch + 1, 0, None
    state.micro += 1
    return batch


def _loop(r: _Run) -> None:
    """Steps until the configured length or early stopping; host syncs only at log/eval/checkpoint steps."""
    state, cfg = r.state, r.cfg
    r.model.train()
    t_log, samples_since_log = time.perf_counter(), 0
    while state.step < r.total and not state.stopped_early:
        batch = _next_batch(r)
        if r.augment is not None:  # crop / flip / mixup / CutMix on the device (train/augment)
            batch = r.augment(batch)
        samples_since_log += len(batch)
        r.ctx.sync = state.micro % cfg.grad_accum == 0

        # Forward, backward and (on the last micro-batch) the optimizer step: the task's.
        losses = r.task.training_step(r.model, batch, r.optimizers, r.ctx)
        r.guard.record(losses, state.step + 1)
        for k, v in losses.items():
            state.loss_sums[k] = state.loss_sums[k] + v if k in state.loss_sums else v.float()
        state.loss_count += 1
        if not r.ctx.sync:
            continue
        r.ctx.end_step()
        for sched in r.schedulers:
            if sched is not None:
                sched.step()
        state.step += 1
        step = state.step

        # Log, evaluate, checkpoint: the only host syncs.
        if step % cfg.log_every == 0 or step == r.total:
            r.guard.check()
            now = time.perf_counter()
            rec = {
                "step": step,
                "epoch": state.epoch,
                "kind": "train",
                **{k: float(v) / state.loss_count for k, v in state.loss_sums.items()},
                "lr": r.optimizers[0].param_groups[0]["lr"],
                "samples_per_s": samples_since_log / max(now - t_log, 1e-9),
            }
            state.loss_sums, state.loss_count, t_log, samples_since_log = {}, 0, now, 0
            r.run.append_metrics(rec)
            r.reporter.record(rec)
        if r.val is not None and (step % r.eval_every == 0 or step == r.total):
            _evaluate(r, step)
        if step % r.ckpt_every == 0 and step < r.total and not state.stopped_early:
            r.save_last()


def _evaluate(r: _Run, step: int) -> None:
    """Validation metrics, the task's pictures, and the best checkpoint / early stopping on ``monitor``."""
    state, cfg = r.state, r.cfg
    r.guard.check()
    rec = {
        "step": step,
        "epoch": state.epoch,
        "kind": "eval",
        **evaluate_split(r.model, r.task, r.val, batch_size=r.eval_bs, device=r.device, precision=r.precision),
    }
    r.run.append_metrics(rec)
    r.reporter.record(rec)
    for name, picture in r.task.on_evaluate(r.model, step).items():  # e.g. a GAN's fixed-noise grid
        r.reporter.picture(name, picture)
    if cfg.monitor not in rec:
        raise ConfigError(
            f"monitor={cfg.monitor!r} is not a metric of this run; have "
            f"{sorted(k for k in rec if k.startswith('val_'))}"
        )
    value = rec[cfg.monitor]
    better = state.best_value is None or (
        value < state.best_value - cfg.min_delta if r.mode == "min" else value > state.best_value + cfg.min_delta
    )
    if better:
        state.best_value, state.best_step, state.bad_evals = value, step, 0
        write_checkpoint(r.run.best, r.model, extra={"step": step, "monitor": cfg.monitor, "value": value})
    else:
        state.bad_evals += 1
        state.stopped_early = cfg.patience is not None and state.bad_evals >= cfg.patience


def _finish(r: _Run, data: DataBundle, train_time: float, train_cpu: float) -> RunResult:
    """Final weights (best or last), evaluation on val and test, final_metrics.json, the task's end pictures."""
    state, cfg = r.state, r.cfg
    best_dir = find_checkpoint(r.run.path, "best")
    use_best = cfg.restore_best and best_dir is not None
    if use_best:
        load_model_weights(best_dir, r.model)
    final: dict[str, Any] = {
        "step": state.step,
        "epoch": state.epoch,
        "best_step": state.best_step,
        "best_" + cfg.monitor: state.best_value,
        "stopped_early": state.stopped_early,
        "precision": r.precision,
        "device": str(r.device),
        "train_time_s": round(train_time, 3),
        "train_cpu_s": round(train_cpu, 3),
        "weights": "best" if use_best else "last",
    }
    for prefix, split in (("val", data.val), ("test", data.test)):
        if split is not None:
            final.update(
                evaluate_split(
                    r.model, r.task, split, batch_size=r.eval_bs, device=r.device, precision=r.precision, prefix=prefix
                )
            )
    atomic_write_json(r.run.path / "final_metrics.json", final)
    r.run.append_metrics({"kind": "final", **final})
    r.reporter.record({"kind": "final", **final})
    for name, picture in r.task.on_fit_end(r.model, data).items():  # e.g. a forecaster's forecast vs actual
        r.reporter.picture(name, picture)
    return RunResult(
        run_dir=r.run.path,
        model=r.model,
        metrics=final,
        steps=state.step,
        best_step=state.best_step,
        best_value=state.best_value,
        stopped_early=state.stopped_early,
        history=r.run.read_metrics(),
    )


def _ckpt_step(directory: Path) -> int:
    return int(read_marker(directory).get("step") or 0)
