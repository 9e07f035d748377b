"""The training engine: prepare the run, loop, finish; each part on one screen.

The loop takes its batches from :mod:`archlab.train.batches` (in-memory tensors by indexing, the
fast path; or a split streamed from disk), lets the task take each step (one optimizer by
default, several for e.g. a GAN), keeps running losses on the device and syncs with the host
only at logging, evaluation and checkpoint steps. Every checkpoint holds what an exact resume
needs (weights, optimizer, scheduler, scaler, step, data order, RNG states); a run killed at any
moment and resumed ends with the same weights, bitwise, as one that was never interrupted.

Under ``torchrun`` the same loop trains data-parallel (:mod:`archlab.train.distributed`): each
rank steps on its shard of every batch with gradients averaged, losses and metrics are
all-reduced, a NaN on any rank stops them all, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.data.base import DataBundle, is_streamed
from archlab.errors import ArchlabError, ConfigError, DataError
from archlab.io import atomic_write_json
from archlab.rundir import RunDir, find_checkpoint, read_marker
from archlab.train.augment import BatchAugmenter, build_augmenter
from archlab.train.batches import Batches, describe, eval_subset
from archlab.train.config import TrainConfig
from archlab.train.distributed import Dist, check_batch, current, rank_device
from archlab.train.evaluate import evaluate_split, metric_mode
from archlab.train.precision import PrecisionChoice, choose_precision, resolve_device
from archlab.train.precision_trial import task_trial
from archlab.train.progress import Reporter
from archlab.train.state import (
    TrainState,
    load_model_weights,
    read_checkpoint_meta,
    restore_checkpoint,
    seed_everything,
    write_checkpoint,
)
from archlab.train.step import StepContext
from archlab.train.task_protocol import TaskProtocol, selection_of
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

    def __init__(self, size: int, device: torch.device, dist: Dist | None = None):
        self.flags = torch.ones(size, dtype=torch.bool, device=device)
        self.steps: list[int] = []
        self.last_good: Path | None = None  # named in the error
        self.dist = dist or Dist()

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
        flags = self.dist.all_true(self.flags[:n])  # a NaN on any rank stops every rank
        if not bool(flags.all()):
            bad = self.steps[int((~flags).nonzero()[0])]
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
    task: TaskProtocol
    cfg: TrainConfig
    run: RunDir
    device: torch.device
    precision: PrecisionChoice  # what the steps run in, and the measurement behind it
    train: Any  # the training Split, on the device (or streamed from disk)
    val: Any  # the validation Split or None
    val_during: Any  # what evaluations during training read: val, or its fixed subset (eval_samples)
    batches: Batches  # the training batches in the seeded order, this rank's shard
    dist: Dist  # this process's place in a data-parallel run (a world of one by default)
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
    monitor: str  # the metric that picks the best checkpoint (cfg.monitor, or the task's selection)
    mode: str  # "min" / "max" for monitor
    reporter: Reporter
    guard: _FiniteGuard
    augment: BatchAugmenter | None = None  # its generator's state is in every checkpoint
    last_ckpt: Path | None = None
    last_eval: dict[str, Any] | None = None  # the latest evaluation of the whole validation split

    def save_last(self) -> None:
        self.guard.check()
        self.dist.average_buffers(self.model)  # BatchNorm statistics: the ranks' mean (distributed.py)
        rank_rng = _rank_rng(self.dist, self.device)  # a collective: every rank takes part
        if self.dist.is_main:
            write_checkpoint(
                self.run.last,
                self.model,
                state=self.state,
                optimizers=self.optimizers,
                schedulers=self.schedulers,
                scaler=self.ctx.scaler,
                data_gen=self.data_gen,
                extra={"world_size": self.dist.world, "precision": self.precision.to_dict()},
                aug_gen=self.augment.generator if self.augment is not None else None,
                rank_rng=rank_rng,
            )
        self.last_ckpt = self.guard.last_good = self.run.last


def _rank_rng(dist: Dist, device: torch.device) -> dict[str, torch.Tensor]:
    """Every other rank's torch RNG states (dropout), gathered for rank 0's checkpoint."""
    if not dist.active:
        return {}
    out = {}
    for r, t in enumerate(dist.gather_tensor(torch.get_rng_state())):
        out[f"rng.torch.rank{r}"] = t
    if device.type == "cuda":
        for r, t in enumerate(dist.gather_tensor(torch.cuda.get_rng_state(device))):
            out[f"rng.cuda.rank{r}"] = t
    return {k: v for k, v in out.items() if not k.endswith("rank0")}


def resolve_monitor(task: TaskProtocol, cfg: TrainConfig) -> dict[str, str]:
    """The metric that picks the best checkpoint and its direction: ``cfg.monitor``, or with
    ``monitor: auto`` the task's declared :class:`~archlab.train.task_protocol.Selection`."""
    sel = selection_of(task)
    monitor = sel.key("val") if cfg.monitor == "auto" else cfg.monitor
    if cfg.mode != "auto":
        return {"monitor": monitor, "mode": cfg.mode}
    return {"monitor": monitor, "mode": sel.mode if monitor == sel.key("val") else metric_mode(task, monitor)}


def train_model(
    model: nn.Module,
    data: DataBundle,
    task: TaskProtocol,
    config: TrainConfig,
    *,
    run_dir: str | Path,
    reporter: Reporter | None = None,
    resume: bool = False,
    seed: bool = True,
    precision: PrecisionChoice | None = None,
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
        precision: a choice already made for this run (the runs layer measures before its cost
            line); None chooses here. A resumed run reuses the choice its checkpoint recorded.

    Returns:
        A :class:`RunResult` with the run directory, the trained model and the final metrics.
    """
    dist = current()
    reporter = reporter if reporter is not None and dist.is_main else Reporter()  # rank 0 speaks
    r = _prepare(model, data, task, config, RunDir(run_dir), reporter, resume, seed, dist, precision)
    r.reporter.start(r.total, r.state.step, f"{getattr(model, 'registry_name', type(model).__name__)} on {data.name}")
    try:
        with _deterministic(r.cfg.deterministic):
            t_start, cpu_start = time.perf_counter(), time.process_time()
            _loop(r)
            train_time, train_cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
            if r.last_ckpt is None or r.state.step > _ckpt_step(r.last_ckpt):
                r.save_last()
        r.dist.barrier()  # rank 0's checkpoints are on disk before any rank reads best/
        return _finish(r, data, train_time, train_cpu)
    finally:
        r.batches.close()
        r.reporter.close()


def _prepare(
    model,
    data: DataBundle,
    task,
    cfg: TrainConfig,
    run: RunDir,
    reporter: Reporter,
    resume: bool,
    seed: bool,
    dist: Dist,
    chosen: PrecisionChoice | None = None,
) -> _Run:
    """Device, precision, batching, optimizers and the state to start from (fresh or restored)."""
    fresh = not resume or find_checkpoint(run.path, RunDir.LAST) is None
    if seed and fresh:
        # A fresh run, or a resumed one killed before any checkpoint: the same seeded start.
        seed_everything(cfg.seed)
    model, device = _place_model(model, data, task, cfg, dist)
    b = _batching(data, cfg, device, dist)
    precision = _precision(model, task, cfg, b.train, device, b.total, run, not fresh, chosen, dist)
    log.info("%s%s", precision.line(), "" if fresh else " [reused from the run's checkpoint, not measured again]")
    optimizers, schedulers = task.configure_optimizers(model, cfg, b.total)
    r = _Run(
        model=model,
        task=task,
        cfg=cfg,
        run=run,
        device=device,
        precision=precision,
        train=b.train,
        val=b.val,
        val_during=eval_subset(b.val, cfg.eval_samples),
        batches=b.batches,
        dist=dist,
        optimizers=optimizers,
        schedulers=schedulers,
        ctx=StepContext(device, precision.precision, cfg.grad_clip, cfg.grad_accum, dist),
        data_gen=b.data_gen,
        state=TrainState(),
        total=b.total,
        batches_per_epoch=b.per_epoch,
        eval_every=b.eval_every,
        ckpt_every=cfg.checkpoint_every or b.eval_every,
        eval_bs=cfg.eval_batch_size or max(cfg.batch_size, 512),
        **resolve_monitor(task, cfg),
        reporter=reporter,
        guard=_FiniteGuard(cfg.log_every, device, dist),
        augment=build_augmenter(cfg.augment, data, task, cfg.seed),
    )
    _open_run_dir(run, resume, dist)
    _restore_or_start(r, resume, fresh)
    _start_ranks_together(r, resume)
    return r


def _place_model(model, data: DataBundle, task, cfg: TrainConfig, dist: Dist) -> tuple[nn.Module, torch.device]:
    """This rank's device; the model adapted (transfer, synchronised BatchNorm) and moved to it;
    the data checked and the task set up."""
    device = rank_device(dist, resolve_device(cfg.device))
    check_batch(dist, cfg.batch_size)
    apply_transfer(model, cfg.transfer)  # freezing and LoRA adapters, before the optimizer sees the parameters
    if dist.backend == "nccl":  # batch statistics over the global batch (not available on CPU: see distributed.py)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if not cfg.allow_nonfinite_inputs:
        _check_finite(data)
    task.setup(data, cfg, device)
    return model, device


@dataclass
class _Batching:
    """The splits on the device, the seeded batch order and the run's length in steps."""

    train: Any
    val: Any
    data_gen: torch.Generator
    batches: Batches
    per_epoch: int
    total: int
    eval_every: int


def _batching(data: DataBundle, cfg: TrainConfig, device: torch.device, dist: Dist) -> _Batching:
    """The training batches in the order ``cfg.seed`` gives, and how many steps the run takes."""
    train = data.train.to(device)  # a streamed split stays on disk: its batches move as they are read
    val = data.val.to(device) if data.val is not None else None
    data_gen = torch.Generator().manual_seed(cfg.seed)
    batches = Batches(train, cfg, data_gen, device, dist)
    if is_streamed(train):
        log.info("training data: %s", describe(train))
    batches_per_epoch = batches.per_epoch
    total = cfg.total_steps(batches_per_epoch)
    eval_every = cfg.eval_every or max(1, batches_per_epoch // cfg.grad_accum)
    if cfg.patience is not None and val is None:
        raise ConfigError(
            f"early stopping (patience={cfg.patience}) needs a validation split; dataset {data.name!r} has none"
        )
    return _Batching(train, val, data_gen, batches, batches_per_epoch, total, eval_every)


def _open_run_dir(run: RunDir, resume: bool, dist: Dist) -> None:
    """Rank 0 creates the run directory (a resume first drops a partly written checkpoint)."""
    if dist.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
        if resume:
            run.clean_partial()
    dist.barrier()


def _restore_or_start(r: _Run, resume: bool, fresh: bool) -> None:
    """Restore the last complete checkpoint (weights, optimizers, step, data order, RNG states),
    or start from step 0: each rank other than 0 then seeds its own dropout stream."""
    run, dist = r.run, r.dist
    if resume and not fresh:
        ckpt = find_checkpoint(run.path, RunDir.LAST)
        aug_gen = r.augment.generator if r.augment is not None else None
        meta = restore_checkpoint(
            ckpt, r.model, r.state, r.optimizers, r.schedulers, r.ctx.scaler, r.data_gen, r.device, aug_gen, dist.rank
        )
        log.info("resuming %s from step %d", run.path, r.state.step)
        _check_world(meta, dist)
    elif resume:  # killed before its first checkpoint: the seeded run starts again identically
        log.info("no complete checkpoint in %s; starting it again from step 0", run.path)
    elif dist.rank > 0:  # each rank its own dropout stream, once the (identical) model is built
        torch.manual_seed(r.cfg.seed + 1_000_003 * dist.rank)


def _start_ranks_together(r: _Run, resume: bool) -> None:
    """Every rank on the same weights and the same last checkpoint; the initial state written
    when there is none."""
    run, dist = r.run, r.dist
    if resume and dist.is_main:
        run.truncate_metrics(r.state.step)
    dist.broadcast_module(r.model)  # identical weights on every rank, whatever each built
    r.last_ckpt = r.guard.last_good = find_checkpoint(run.path, RunDir.LAST)
    dist.barrier()  # every rank has looked for last/ before rank 0 may write the first one
    if r.last_ckpt is None:
        # A checkpoint of the initial state: a run killed before its first periodic checkpoint
        # resumes from these exact weights, however the model was built.
        r.save_last()


def _precision(
    model, task, cfg: TrainConfig, train, device, total: int, run: RunDir, resumed: bool, chosen, dist: Dist
) -> PrecisionChoice:
    """The run's precision: reused from the checkpoint a resume starts from (never measured
    again, so the resumed steps run as the first ones did), given by the caller, or chosen here."""
    if resumed:
        recorded = (read_checkpoint_meta(find_checkpoint(run.path, RunDir.LAST)).get("extra") or {}).get("precision")
        if isinstance(recorded, dict) and recorded.get("device") == device.type:
            return PrecisionChoice.from_dict(recorded)
        return _static(cfg, device, f"static rule: the checkpoint records no choice for {device.type}")
    if chosen is not None:
        return chosen
    if dist.active:  # every rank must run the same precision: no per-rank timings
        return _static(cfg, device, "static rule: data-parallel run, not measured")
    return choose_precision(
        cfg.precision, device, task_trial(model, task, cfg, train, device, total), total_steps=total
    )


def _static(cfg: TrainConfig, device: torch.device, reason: str) -> PrecisionChoice:
    """The rule without measurement, saying why none was made (an explicit request keeps its own reason)."""
    c = choose_precision(cfg.precision, device)
    return dataclasses.replace(c, reason=reason) if c.reason.startswith("static rule") else c


def _check_world(meta: dict[str, Any], dist: Dist) -> None:
    """A resume with another number of processes keeps the data order (``batch_size`` is the
    global batch) but not the per-rank random streams: say so."""
    saved = int((meta.get("extra") or {}).get("world_size") or 1)
    if saved != dist.world:
        log.warning(
            "resuming a run checkpointed with %d process(es) on %d: the batches are the same (batch_size is the "
            "global batch), but per-process random streams (dropout) and the sharding of each batch change, so the "
            "result will not equal an uninterrupted run",
            saved,
            dist.world,
        )


def _check_finite(data: DataBundle) -> None:
    """NaN/Inf in any float input or target of any split is a DataError naming where (one pass
    over the in-memory tensors before training, instead of a check per batch)."""
    for split_name, split in data.splits().items():
        if is_streamed(split):
            continue  # read from disk: each training batch is checked as it is read (train/batches)
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


def _loop(r: _Run) -> None:
    """Steps until the configured length or early stopping; host syncs only at log/eval/checkpoint steps."""
    state, cfg = r.state, r.cfg
    r.model.train()
    t_log, samples_since_log = time.perf_counter(), 0
    while state.step < r.total and not state.stopped_early:
        batch = r.batches.next(state)
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
                **_mean_losses(r, state.loss_sums, state.loss_count),
                "lr": r.optimizers[0].param_groups[0]["lr"],
                "samples_per_s": samples_since_log * r.dist.world / max(now - t_log, 1e-9),
            }
            state.loss_sums, state.loss_count, t_log, samples_since_log = {}, 0, now, 0
            if r.dist.is_main:
                r.run.append_metrics(rec)
            r.reporter.record(rec)
        if r.val is not None and (step % r.eval_every == 0 or step == r.total):
            _evaluate(r, step)
        if step % r.ckpt_every == 0 and step < r.total and not state.stopped_early:
            r.save_last()


def _mean_losses(r: _Run, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
    """The logged training losses: the mean over micro-batches since the last log, and over ranks."""
    if not sums:
        return {}
    keys = list(sums)
    flat = r.dist.all_reduce_sum(torch.stack([sums[k].float().reshape(()) for k in keys]))
    return {k: float(v) / count / r.dist.world for k, v in zip(keys, flat.tolist())}


def _evaluate(r: _Run, step: int) -> None:
    """Validation metrics, the task's pictures, and the best checkpoint / early stopping on ``monitor``."""
    state, cfg = r.state, r.cfg
    r.guard.check()
    r.dist.average_buffers(r.model)
    rec = {
        "step": step,
        "epoch": state.epoch,
        "kind": "eval",
        **evaluate_split(
            r.model,
            r.task,
            r.val_during,
            batch_size=r.eval_bs,
            device=r.device,
            precision=r.precision.precision,
            dist=r.dist,
        ),
    }
    if r.val_during is r.val:
        r.last_eval = rec
    if r.dist.is_main:
        r.run.append_metrics(rec)
        r.reporter.record(rec)
        for name, picture in r.task.on_evaluate(r.model, step).items():  # e.g. a GAN's fixed-noise grid
            r.reporter.picture(name, picture)
    if r.monitor not in rec:
        raise ConfigError(
            f"monitor={r.monitor!r} is not a metric of this run; have {sorted(k for k in rec if k.startswith('val_'))}"
        )
    value = rec[r.monitor]
    better = state.best_value is None or (
        value < state.best_value - cfg.min_delta if r.mode == "min" else value > state.best_value + cfg.min_delta
    )
    if better:
        state.best_value, state.best_step, state.bad_evals = value, step, 0
        if r.dist.is_main:
            write_checkpoint(r.run.best, r.model, extra={"step": step, "monitor": r.monitor, "value": value})
    else:
        state.bad_evals += 1
        state.stopped_early = cfg.patience is not None and state.bad_evals >= cfg.patience
    if r.dist.is_main and r.reporter.stop_requested():  # e.g. a pruned search trial
        state.stopped_early = True


def _finish(r: _Run, data: DataBundle, train_time: float, train_cpu: float) -> RunResult:
    """Final weights (best or last), evaluation on val and test, final_metrics.json, the task's end pictures."""
    state, cfg = r.state, r.cfg
    best_dir = find_checkpoint(r.run.path, RunDir.BEST)
    use_best = cfg.restore_best and best_dir is not None
    if use_best:
        load_model_weights(best_dir, r.model)
    final: dict[str, Any] = {
        "step": state.step,
        "epoch": state.epoch,
        "best_step": state.best_step,
        "monitor": r.monitor,
        "best_" + r.monitor: state.best_value,
        "stopped_early": state.stopped_early,
        "precision": r.precision.precision,
        "precision_choice": r.precision.to_dict(),
        "device": str(r.device),
        "train_time_s": round(train_time, 3),
        "train_cpu_s": round(train_cpu, 3),
        "weights": RunDir.BEST if use_best else RunDir.LAST,
    }
    if r.dist.active:
        final["world_size"] = r.dist.world
    # The final weights are those of the last whole-split evaluation: its val metrics are these
    # weights' (a second pass over a large validation split would cost as much again).
    seen = r.last_eval is not None and r.last_eval["step"] == (state.best_step if use_best else state.step)
    for prefix, split in (("val", data.val), ("test", data.test)):
        if prefix == "val" and seen:
            final.update({k: v for k, v in r.last_eval.items() if k.startswith("val_")})
        elif split is not None:
            final.update(
                evaluate_split(
                    r.model,
                    r.task,
                    split,
                    batch_size=r.eval_bs,
                    device=r.device,
                    precision=r.precision.precision,
                    prefix=prefix,
                    dist=r.dist,
                )
            )
    if r.dist.is_main:
        atomic_write_json(r.run.final_metrics_path, final)

        r.run.append_metrics({"kind": "final", **final})
        r.reporter.record({"kind": "final", **final})
        for name, picture in r.task.on_fit_end(r.model, data).items():  # e.g. a forecaster's forecast vs actual
            r.reporter.picture(name, picture)
    r.dist.barrier()  # metrics.jsonl is complete before any rank reads it
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
