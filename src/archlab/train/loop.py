"""``archlab.fit``: the training loop, top to bottom in one function.

The loop batches in-memory tensors by indexing (a ``torch.randperm`` from its own generator per
epoch, or in-order slices with ``shuffle=False``), lets the task take each step (one optimizer
by default, several for e.g. a GAN), keeps running losses on the device and syncs with the host
only at logging, evaluation and checkpoint steps. Every checkpoint holds what an exact resume
needs (weights, optimizer, scheduler, scaler, step, data order, RNG states); a run killed at any
moment and resumed ends with the same weights, bitwise, as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.data.base import DataBundle
from archlab.errors import ArchlabError, CheckpointError, ConfigError
from archlab.io import atomic_write_json
from archlab.train.config import TrainConfig
from archlab.train.evaluate import evaluate_split, metric_mode
from archlab.train.precision import resolve_device, resolve_precision
from archlab.train.state import (RunDir, TrainState, find_checkpoint, load_model_weights, restore_checkpoint,
                                 seed_everything, write_checkpoint)

log = logging.getLogger("archlab.train")

# Keys a resumed run may change (they do not alter the computation).
RESUME_OVERRIDABLE = {"quiet", "tensorboard", "out_dir"}


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
            where = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint had been written yet"
            raise NonFiniteLossError(
                f"training loss became NaN/Inf at step {bad}; training stopped and {where}. "
                "Try a lower lr, grad_clip, or precision='fp32'.")
        self.steps.clear()


def _as_bundle(data: DataBundle | str, options: dict[str, Any] | None = None) -> DataBundle:
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, str):
        from archlab.data import load  # the data package provides load(name, **options)

        return load(data, **(options or {}))
    raise ConfigError(f"data must be a DataBundle or a dataset name; got {type(data).__name__}")


def _run_path(cfg: TrainConfig, model_name: str, data_name: str) -> Path:
    root = Path(cfg.out_dir)
    if cfg.run_name:
        path = root / cfg.run_name
        if (path / "config.yaml").exists():
            raise ConfigError(f"run directory {path} already holds a run; resume it (--resume {path}) or pick another run_name")
        return path
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model_name}-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = root / base, 1
    while path.exists():
        path, i = root / f"{base}-{i}", i + 1
    return path


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in info.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            if isinstance(v, torch.Tensor):
                out[k] = v.tolist()
    return out


@contextlib.contextmanager
def _deterministic(on: bool):
    before = torch.are_deterministic_algorithms_enabled()
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def fit(model: nn.Module | str, data: DataBundle | str, task: Any = None, *, resume: str | Path | None = None,
        task_options: dict[str, Any] | None = None, model_overrides: dict[str, Any] | None = None,
        data_spec: dict[str, Any] | None = None, **train_config: Any) -> RunResult:
    """Train ``model`` on ``data`` for ``task`` and write a run directory.

    Args:
        model: a module from the registry, or a registry name (then its config is adapted to the
            data, see :mod:`archlab.train.adapt`, with ``model_overrides`` on top).
        data: a DataBundle, or a dataset name for ``archlab.data.load``.
        task: a task name or object (default ``data.task``).
        resume: a run directory to continue exactly; its saved config is used.
        task_options: options of a task given by name (e.g. ``{"kind": "binary"}``).
        data_spec: how to reload the data, recorded in config.yaml (default ``{"name": data.name}``).
        **train_config: fields of :class:`TrainConfig`.

    Returns:
        A :class:`RunResult` with the run directory, the trained model and the final metrics.
    """
    from archlab.tasks import get_task
    from archlab.tasks.base import StepContext
    from archlab.train.progress import Reporter

    # -- config, data, task, model -------------------------------------------------------------
    run = RunDir(resume) if resume is not None else None
    saved = run.read_config() if run is not None else {}
    if run is not None:
        bad = sorted(set(train_config) - RESUME_OVERRIDABLE)
        if bad:
            raise ConfigError(f"a resumed run keeps its saved config; cannot change {bad} (allowed: {sorted(RESUME_OVERRIDABLE)})")
        cfg = TrainConfig.build({**saved["train"], **train_config})
        task = task or saved["task"]["name"]
        task_options = task_options or saved["task"].get("options") or {}
    else:
        cfg = TrainConfig.build(train_config)
    seed_everything(cfg.seed)  # before a model built here is initialised
    data = _as_bundle(data, (data_spec or {}).get("options"))
    task = get_task(task or data.task, **(task_options or {})) if task is None or isinstance(task, str) else task
    if isinstance(model, str):
        from archlab.train.adapt import build_model

        model = build_model(model, data, task, model_overrides)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model.to(device)
    task.setup(data, cfg, device)
    train = data.train.to(device)
    val = data.val.to(device) if data.val is not None else None

    # -- batching, length, optimizers ------------------------------------------------------------
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
    ckpt_every = cfg.checkpoint_every or eval_every
    eval_bs = cfg.eval_batch_size or max(bs, 512)
    optimizers, schedulers = task.configure_optimizers(model, cfg, total)
    ctx = StepContext(device, precision, cfg.grad_clip, cfg.grad_accum)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    mode = cfg.mode if cfg.mode != "auto" else metric_mode(task, cfg.monitor)
    if cfg.patience is not None and val is None:
        raise ConfigError(f"early stopping (patience={cfg.patience}) needs a validation split; dataset {data.name!r} has none")

    # -- run directory: new, or resumed from its last complete checkpoint ------------------------
    state = TrainState()
    model_name = getattr(model, "registry_name", type(model).__name__)
    if run is None:
        run = RunDir(_run_path(cfg, model_name, data.name))
        run.write_config({
            "model": {"name": model_name, "config": model.config.to_dict() if hasattr(model, "config") else None},
            "data": data_spec or {"name": data.name},
            "task": {"name": task.name, "options": task.options()},
            "train": cfg.to_dict(),
        })
        atomic_write_json(run.path / "data_info.json", _jsonable(data.info))
    else:
        run.clean_partial()
        ckpt = find_checkpoint(run.path, "last")
        if ckpt is not None:
            restore_checkpoint(ckpt, model, state, optimizers, schedulers, ctx.scaler, data_gen, device)
            log.info("resuming %s from step %d", run.path, state.step)
        else:  # killed before its first checkpoint: start over with the same seed
            log.info("no complete checkpoint in %s; starting it again from step 0", run.path)
        run.truncate_metrics(state.step)
    last_ckpt = find_checkpoint(run.path, "last")
    reporter = Reporter(total, state.step, quiet=cfg.quiet, tb_dir=run.path / "tb" if cfg.tensorboard else None,
                        title=f"{model_name} on {data.name}")
    guard = _FiniteGuard(cfg.log_every, device)
    guard.last_good = last_ckpt

    def save_last() -> None:
        nonlocal last_ckpt
        guard.check()
        write_checkpoint(run.last, model, state=state, optimizers=optimizers, schedulers=schedulers,
                         scaler=ctx.scaler, data_gen=data_gen)
        last_ckpt = guard.last_good = run.last

    # -- the loop ---------------------------------------------------------------------------------
    model.train()
    t_start, t_log, samples_since_log = time.perf_counter(), time.perf_counter(), 0
    cpu_start = time.process_time()
    try:
        with _deterministic(cfg.deterministic):
            while state.step < total and not state.stopped_early:
                # Next micro-batch, in the order fixed by the data generator.
                if not train.indexable:
                    batch = train
                elif cfg.shuffle:
                    if state.perm is None:
                        state.perm = torch.randperm(n, generator=data_gen).to(device)
                    batch = train.take(state.perm[state.pos * bs:(state.pos + 1) * bs])
                else:
                    batch = train.take(slice(state.pos * bs, (state.pos + 1) * bs))
                state.pos += 1
                if state.pos >= batches_per_epoch:
                    state.epoch, state.pos, state.perm = state.epoch + 1, 0, None
                state.micro += 1
                samples_since_log += len(batch)
                ctx.sync = state.micro % cfg.grad_accum == 0

                # Forward, backward and (on the last micro-batch) the optimizer step: the task's.
                losses = task.training_step(model, batch, optimizers, ctx)
                guard.record(losses, state.step + 1)
                for k, v in losses.items():
                    state.loss_sums[k] = state.loss_sums[k] + v if k in state.loss_sums else v.float()
                state.loss_count += 1
                if not ctx.sync:
                    continue
                ctx.end_step()
                for sched in schedulers:
                    if sched is not None:
                        sched.step()
                state.step += 1
                step = state.step

                # Log, evaluate, checkpoint: the only host syncs.
                if step % cfg.log_every == 0 or step == total:
                    guard.check()
                    now = time.perf_counter()
                    rec = {"step": step, "epoch": state.epoch, "kind": "train",
                           **{k: float(v) / state.loss_count for k, v in state.loss_sums.items()},
                           "lr": optimizers[0].param_groups[0]["lr"],
                           "samples_per_s": samples_since_log / max(now - t_log, 1e-9)}
                    state.loss_sums, state.loss_count, t_log, samples_since_log = {}, 0, now, 0
                    run.append_metrics(rec)
                    reporter.record(rec)
                if val is not None and (step % eval_every == 0 or step == total):
                    guard.check()
                    rec = {"step": step, "epoch": state.epoch, "kind": "eval",
                           **evaluate_split(model, task, val, batch_size=eval_bs, device=device, precision=precision)}
                    run.append_metrics(rec)
                    reporter.record(rec)
                    if hasattr(task, "on_evaluate"):  # e.g. a GAN's fixed-noise sample grid
                        task.on_evaluate(model, run.path, step)
                    if cfg.monitor not in rec:
                        raise ConfigError(f"monitor={cfg.monitor!r} is not a metric of this run; have "
                                          f"{sorted(k for k in rec if k.startswith('val_'))}")
                    value = rec[cfg.monitor]
                    better = state.best_value is None or (
                        value < state.best_value - cfg.min_delta if mode == "min" else value > state.best_value + cfg.min_delta)
                    if better:
                        state.best_value, state.best_step, state.bad_evals = value, step, 0
                        write_checkpoint(run.best, model, extra={"step": step, "monitor": cfg.monitor, "value": value})
                    else:
                        state.bad_evals += 1
                        state.stopped_early = cfg.patience is not None and state.bad_evals >= cfg.patience
                if step % ckpt_every == 0 and step < total and not state.stopped_early:
                    save_last()
            train_time, train_cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
            if last_ckpt is None or state.step > _ckpt_step(last_ckpt):
                save_last()
    finally:
        reporter.close()

    # -- final evaluation and the run's summary -----------------------------------------------------
    best_dir = find_checkpoint(run.path, "best")
    if cfg.restore_best and best_dir is not None:
        load_model_weights(best_dir, model)
    final: dict[str, Any] = {"step": state.step, "epoch": state.epoch, "best_step": state.best_step,
                             "best_" + cfg.monitor: state.best_value, "stopped_early": state.stopped_early,
                             "precision": precision, "device": str(device), "train_time_s": round(train_time, 3),
                             "train_cpu_s": round(train_cpu, 3),
                             "weights": "best" if cfg.restore_best and best_dir is not None else "last"}
    for prefix, split in (("val", data.val), ("test", data.test)):
        if split is not None:
            final.update(evaluate_split(model, task, split, batch_size=eval_bs, device=device, precision=precision,
                                        prefix=prefix))
    atomic_write_json(run.path / "final_metrics.json", final)
    run.append_metrics({"kind": "final", **final})
    history = run.read_metrics()
    try:
        from archlab.train.plots import plot_curves

        plot_curves(history, run.path / "curves.png")
        if hasattr(task, "on_fit_end"):  # e.g. a forecaster's prediction-vs-actual plot
            task.on_fit_end(model, data, run.path)
    except ImportError as exc:  # matplotlib missing: the run is still complete
        log.warning("no plots: %s", exc)
    return RunResult(run_dir=run.path, model=model, metrics=final, steps=state.step, best_step=state.best_step,
                     best_value=state.best_value, stopped_early=state.stopped_early, history=history)


def _ckpt_step(directory: Path) -> int:
    try:
        return int(json.loads((directory / "COMPLETE").read_text())["step"] or 0)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{directory} has an unreadable COMPLETE marker ({exc})") from None


def resume(run_dir: str | Path, data: DataBundle | None = None, **overrides: Any) -> RunResult:
    """Continue the run in ``run_dir`` exactly where its last complete checkpoint left it.

    The model is rebuilt from config.yaml; the data is reloaded by name (``archlab.data.load``)
    unless given.
    """
    from archlab.registry import create_from_config

    run = RunDir(run_dir)
    saved = run.read_config()
    model = create_from_config({"model": saved["model"]["name"], "config": saved["model"]["config"]})
    spec = saved.get("data") or {}
    if data is None:
        data = _as_bundle(spec.get("name"), spec.get("options"))
    return fit(model, data, resume=run_dir, data_spec=spec, **overrides)
