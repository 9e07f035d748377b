"""``archlab.fit`` and ``archlab.resume``: names to objects, a run directory laid out, the engine run.

:func:`fit` accepts registry and dataset names (a named model is adapted to the data, see
:mod:`archlab.runs.adapt`), writes ``config.yaml`` (model, data, task, train) and
``data_info.json`` before the first step, then calls the engine (:func:`archlab.train.train_model`) with
reporters that draw the task's pictures into the run directory and, when asked, mirror records
to TensorBoard. After training it draws ``curves.png``.

Under ``torchrun`` (``archlab train --nproc N``; see :mod:`archlab.runs.launch`) every rank runs
:func:`fit`: rank 0 chooses the run directory and tells the others, only rank 0 writes
``config.yaml``, ``data_info.json``, ``launch.json``, the pictures and ``curves.png`` and reports
progress, and the engine shards each batch and averages gradients
(:mod:`archlab.train.distributed`). A worker restarted by torchrun after a failure resumes the run
its launch started instead of starting a new one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab import errors
from archlab.checkpoint import INIT_ARGS_ATTR, module_source, rebuild_module, registry_entry
from archlab.data.base import DataBundle
from archlab.data.preprocess import record_preprocessing
from archlab.errors import ConfigError, MissingExtraError
from archlab.io import atomic_write_json
from archlab.rundir import RunDir, find_checkpoint, read_marker
from archlab.runs import launch
from archlab.runs.cost import choose_run_precision, eval_floor, log_estimate
from archlab.runs.hf_model import is_hf_name, resolve_hf_name
from archlab.runs.spec import pop_moved
from archlab.runs.tracking import MlflowReporter, TensorBoardWriter, TrackTarget, resolve_track
from archlab.tasks import get_task
from archlab.train import NonFiniteLossError, RunResult, TrainConfig, distributed, train_model
from archlab.train.distributed import Dist
from archlab.train.precision import PrecisionChoice, resolve_device
from archlab.train.progress import Reporter, Reporters
from archlab.train.small_data import apply_policy
from archlab.train.state import seed_everything

log = logging.getLogger("archlab.runs")


class PictureWriter(Reporter):
    """Draws each picture a task reports as ``RUN_DIR/NAME.png`` (matplotlib; skipped with a warning if missing)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.warned = False

    def picture(self, name: str, picture: Any) -> None:
        try:
            from archlab.report.plots import draw

            draw(picture, RunDir(self.run_dir).picture_path(name))
        except MissingExtraError as exc:
            if not self.warned:
                log.warning("pictures are not drawn: %s", exc)
                self.warned = True


def as_bundle(data: DataBundle | str, options: dict[str, Any] | None = None) -> DataBundle:
    """A DataBundle as given, or loaded by name / path with ``archlab.data.load``."""
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, (str, Path)):
        from archlab.data import load

        return load(str(data), **(options or {}))
    raise ConfigError(f"data must be a DataBundle, a dataset name or a path; got {type(data).__name__}")


def check_fits(name: str, bundle: DataBundle, task: Any) -> None:
    """Before anything is built: the registry model takes the data's modality and the task.

    Raises:
        ConfigError: naming both, the models that do fit, and ``archlab recommend``.
    """
    from archlab.registry import get_entry, list_models

    entry = get_entry(name)
    problems = []
    if entry.modalities and bundle.modality not in entry.modalities:
        problems.append(f"takes {'/'.join(entry.modalities)} data; dataset {bundle.name!r} is {bundle.modality}")
    if entry.tasks and task.name not in entry.tasks:
        problems.append(f"is trained for {'/'.join(entry.tasks)}; the task is {task.name}")
    if problems:
        fitting = list_models(modality=bundle.modality, task=task.name)
        more = " ..." if len(fitting) > 6 else ""
        hint = f"models that fit: {', '.join(fitting[:6])}{more}" if fitting else "no registry model fits this"
        raise ConfigError(f"{name} {' and '.join(problems)}; {hint} (see `archlab recommend {bundle.name}`)")


def default_run_name(model_name: str, data_name: str) -> str:
    """``MODEL-DATA-TIMESTAMP``, the name of a run directory when none is given."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model_name}-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _run_path(out_dir: str | Path, run_name: str | None, model_name: str, data_name: str) -> Path:
    root = Path(out_dir)
    if run_name:
        path = root / run_name
        if RunDir(path).config_path.exists():
            raise ConfigError(
                f"run directory {path} already holds a run; resume it (--resume {path}) or pick another name"
            )
        return path
    base = default_run_name(model_name, data_name)
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


def _reporters(
    run_dir: Path, reporter: Reporter | None, tensorboard: bool, dist: Dist, track: str | TrackTarget | None = None
) -> Reporters | None:
    """The caller's reporter, the pictures, TensorBoard and MLflow: rank 0's (the other ranks are
    silent). The trackers come after the picture writer: they read the pictures it draws."""
    if not dist.is_main:
        return None
    target = resolve_track(track, run_dir)
    return Reporters(
        reporter,
        PictureWriter(run_dir),
        TensorBoardWriter(run_dir) if tensorboard else None,
        MlflowReporter(run_dir, target) if target is not None else None,
    )


def _main_decides(dist: Dist, work) -> str:
    """``work()`` on rank 0 and its text (a path) on every rank; an error on rank 0 is raised on
    every rank with the same type and message (so no rank waits for a step rank 0 never reaches)."""
    text, failure = "", None
    if dist.is_main:
        try:
            text = work()
        except Exception as exc:
            if not dist.active:
                raise
            failure = exc
    if not dist.active:
        return text
    said = dist.broadcast_text("ok\0" + text if failure is None else f"{type(failure).__name__}\0{failure}")
    if failure is not None:
        raise failure
    kind, _, body = said.partition("\0")
    if kind == "ok":
        return body
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.ArchlabError):
        raise cls(body)
    raise errors.ArchlabError(f"rank 0 failed: {kind}: {body}")


def _restarted_run(dist: Dist, out_dir: str | Path, run_name: str | None) -> Path | None:
    """The run this torchrun launch started, when torchrun restarted the workers after a failure."""
    restart = launch.elastic_restart()
    if restart is None:
        return None
    run_id, count = restart

    def find() -> str:
        found = launch.find_launched_run(out_dir, run_name, run_id)
        if found is None or not RunDir(found).config_path.exists():
            log.warning("elastic restart %d: no run of launch %s under %s yet; starting it", count, run_id, out_dir)
            return ""
        log.warning("elastic restart %d of launch %s: resuming %s", count, run_id, found)
        return str(found)

    found = _main_decides(dist, find)
    return Path(found) if found else None


def _draw_curves(run_dir: Path, history: list[dict[str, Any]], reporters: Reporters | None = None) -> None:
    curves = RunDir(run_dir).curves_path
    try:
        from archlab.report.plots import plot_curves

        plot_curves(history, curves)
    except MissingExtraError as exc:
        log.warning("no curves.png: %s", exc)
    for r in reporters.reporters if reporters is not None else ():
        if isinstance(r, MlflowReporter):  # drawn after training closed the reporters
            r.log_files([curves])


def fit(
    model: nn.Module | str,
    data: DataBundle | str,
    task: Any = None,
    *,
    task_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
    data_spec: dict[str, Any] | None = None,
    out_dir: str | Path = "runs",
    run_name: str | None = None,
    tensorboard: bool = False,
    track: str | TrackTarget | None = None,
    reporter: Reporter | None = None,
    **train_config: Any,
) -> RunResult:
    """Train ``model`` on ``data`` for ``task`` and write a run directory.

    >>> result = archlab.fit("mlp_tabular", "breast_cancer", max_steps=200, lr=1e-3)
    >>> result.metrics["test_accuracy"], result.run_dir

    Args:
        model: a registry name (its config is adapted to the data, with ``model_overrides`` on
            top), a module built from the registry, or any ``nn.Module`` of yours: its weights
            are saved as safetensors and its class's import path is recorded.
        model_args: for your own module, the keyword arguments that build it again
            (``fit(MyNet(width=64), "digits", model_args={"width": 64})``, checked against the
            module now). Recorded in the run, they let ``load_run``, ``evaluate``, ``predict``
            and ``resume`` rebuild it once its module is imported (CLI: ``--plugin``); without
            them the run says that reloading needs your class (``load_run(run, model=MyNet())``).
        data: a DataBundle, or a dataset name / file path for ``archlab.data.load``.
        task: a task name or object (default: the data's task).
        task_options: options of a task given by name (e.g. ``{"kind": "binary"}``).
        data_spec: how to reload the data, recorded in config.yaml (default ``{"name": data.name}``).
        out_dir, run_name: where the run directory goes (default ``runs/MODEL-DATA-TIMESTAMP``).
        tensorboard: also write TensorBoard logs (needs ``archlab[tensorboard]``).
        track: mirror the run to MLflow: ``"mlflow"``, ``"mlflow:URI"``, a
            :class:`archlab.runs.tracking.TrackTarget`, or ``"none"`` (default: MLflow when
            ``ARCHLAB_TRACKING_URI`` is set; see :mod:`archlab.runs.tracking`).
        reporter: receives progress (the CLI passes a progress bar; default silent).
        **train_config: fields of :class:`archlab.TrainConfig`. ``quiet``, an option that left
            the training settings, is accepted and ignored with a warning (fit is silent unless
            given a ``reporter``).
    """
    pop_moved(train_config, "archlab.fit({key}=...)")  # only quiet can arrive: the others are keywords
    cfg = TrainConfig.build(train_config)
    resolve_track(track)  # a bad value is an error before any run directory exists
    dist = distributed.init_from_env(cfg.device)
    restarted = _restarted_run(dist, out_dir, run_name)
    if restarted is not None:  # torchrun restarted the workers: continue this launch's run
        return resume(
            restarted,
            data if isinstance(data, DataBundle) else None,
            model=model if isinstance(model, nn.Module) else None,
            reporter=reporter,
            tensorboard=tensorboard,
            track=track,
        )
    if is_hf_name(model):  # "hf:SOURCE": the hf_classifier preset, with the data tokenised by SOURCE
        model, model_overrides, data_spec = resolve_hf_name(model, data, model_overrides, data_spec)
    seed_everything(cfg.seed)  # before the model is built, so a resumed run rebuilds the same weights
    bundle = as_bundle(data, (data_spec or {}).get("options"))
    if task is None or isinstance(task, str):
        task = get_task(task or bundle.task, **(task_options or {}))
    module = _build_model(model, bundle, task, model_overrides)
    p = _settle(module, model_args, bundle, task, cfg, data_spec)
    run = RunDir(_main_decides(dist, lambda: _lay_out(p, out_dir, run_name, dist)))
    return _train(p, run, dist, _reporters(run.path, reporter, tensorboard, dist, track))


@dataclass
class _Prepared:
    """What :func:`fit` settled before the run directory is laid out: what the engine trains, and
    what config.yaml records of it.

    Attributes:
        model, bundle, task, cfg: the engine's arguments (``cfg`` after the small-data rules).
        model_section: config.yaml's ``model``.
        data_spec: config.yaml's ``data``.
        total_steps: the steps of the run, as the engine will count them.
        precision: the precision rank 0 measured for its cost line (the engine trains in it);
            None on the other ranks and under torchrun, where the engine applies the static rule.
    """

    model: nn.Module
    bundle: DataBundle
    task: Any
    cfg: TrainConfig
    model_section: dict[str, Any]
    data_spec: dict[str, Any]
    total_steps: int
    precision: PrecisionChoice | None = None


def _build_model(model: nn.Module | str, bundle: DataBundle, task: Any, overrides: dict[str, Any] | None) -> nn.Module:
    """A registry name built for the data and task (checked to fit first); a module as given."""
    if isinstance(model, str):
        from archlab.runs.adapt import build_model

        check_fits(model, bundle, task)
        return build_model(model, bundle, task, overrides)
    if overrides:
        raise ConfigError("model_overrides apply to registry names; this model is already built")
    # what the task infers from the data (e.g. the classification kind), as building a
    # registry model does: config.yaml must record it for evaluate / predict
    task.model_overrides(bundle.info, bundle)
    return model


def _settle(
    model: nn.Module,
    model_args: dict[str, Any] | None,
    bundle: DataBundle,
    task: Any,
    cfg: TrainConfig,
    data_spec: dict[str, Any] | None,
) -> _Prepared:
    """The config the run trains with, settled before config.yaml records it: model selection
    on small data, a wrapped framework's adapter, the evaluation interval, the preprocessing."""
    model_section = _model_section(model, model_args)
    # The small-validation rule (archlab.train.small_data): no checkpoint selection or early
    # stopping on a handful of samples. Applied here so config.yaml records what is used.
    cfg, policy = apply_policy(cfg, 0 if bundle.val is None else len(bundle.val))
    log.info("model selection: %s", policy.reason)
    bundle.info["model_selection"] = policy.to_dict()
    steps_per_epoch, total_steps = _steps(bundle, cfg)
    before_fit = getattr(model, "before_fit", None)  # a wrapped framework's seeding and checks (models/keras_adapter)
    if callable(before_fit):
        model_section = {**model_section, "adapter": before_fit(total_steps, cfg.seed)}
    every = eval_floor(steps_per_epoch, total_steps) if cfg.eval_every is None and bundle.val is not None else None
    if every is not None:  # tiny data: not an evaluation every few steps (see archlab.runs.cost)
        cfg = cfg.replace(eval_every=every)
        log.info(
            "evaluating every %d steps, not every epoch (%d steps); set eval_every to choose", every, steps_per_epoch
        )
    record_preprocessing(bundle)  # logs the "data" block; data_info.json keeps it for predict / export
    spec = data_spec or {"name": bundle.name}
    return _Prepared(model, bundle, task, cfg, model_section, spec, total_steps)


def _lay_out(p: _Prepared, out_dir: str | Path, run_name: str | None, dist: Dist) -> str:
    """Rank 0 only (the other ranks get the path when it is written): the run directory, its
    launch record, config.yaml and data_info.json, and the cost line; returns the path."""
    run = RunDir(_run_path(out_dir, run_name, p.model_section["name"], p.bundle.name))
    run.path.mkdir(parents=True, exist_ok=True)
    launch.write_launch_record(run.path, dist.world)  # first: a restart finds the run by it
    config = {
        "model": p.model_section,
        "data": p.data_spec,
        "task": {"name": p.task.name, "options": p.task.options()},
        "train": p.cfg.to_dict(),
    }
    run.write_config(config)
    atomic_write_json(run.data_info_path, _jsonable(p.bundle.info))
    # The estimate and the precision's measurement draw random numbers (example inputs, a
    # timing matmul once per process, dropout in the timed steps): forked, so training's RNG
    # stream is the same as without them, in every run of a process, on resume, and on every rank.
    with torch.random.fork_rng():
        if not dist.active:  # ranks must agree: the engine applies the static rule there
            p.precision = choose_run_precision(p.model, p.task, p.bundle, p.cfg, p.total_steps)
            if p.cfg.precision == "auto":  # the measurement behind the choice, beside the request
                run.write_config({**config, "precision": p.precision.to_dict()})
        batch = _one_batch(p.model, p.bundle, p.cfg)
        log_estimate(p.model, batch, p.total_steps, resolve_device(p.cfg.device), p.precision)
    return str(run.path)


def _train(p: _Prepared, run: RunDir, dist: Dist, reporters: Reporters | None) -> RunResult:
    """The engine on the laid-out run; a run that failed before learning anything is removed,
    a finished one gets its curves."""
    try:
        # seeded before the model was built: the engine continues that RNG stream
        result = train_model(
            p.model, p.bundle, p.task, p.cfg, run_dir=run.path, reporter=reporters, seed=False, precision=p.precision
        )
    except NonFiniteLossError:
        raise  # the run and its last good checkpoint stay, as the error says
    except Exception:
        if dist.is_main:
            _remove_if_nothing_learned(run)
        raise
    if dist.is_main:
        _draw_curves(run.path, result.history, reporters)
    return result


def _model_section(model: nn.Module, model_args: dict[str, Any] | None) -> dict[str, Any]:
    """config.yaml's ``model``: a registry name and config, or a module's import path and arguments."""
    entry = registry_entry(model)
    if entry is not None:
        if model_args is not None:
            raise ConfigError(f"model_args rebuild your own nn.Module; {entry.name} is rebuilt from its config")
        return {"name": entry.name, "config": model.config.to_dict()}
    if model_args is not None:
        _check_model_args(model, model_args)
        setattr(model, INIT_ARGS_ATTR, dict(model_args))
    source = module_source(model)
    say = log.warning if source["args"] is None else log.info
    say("model: %s:%s is not from the registry; %s", source["module"], source["qualname"], source["reload"])
    return {"name": type(model).__name__, "config": None, "source": source}


def _check_model_args(model: nn.Module, model_args: dict[str, Any]) -> None:
    """``type(model)(**model_args)`` builds a module with the same tensors (on the meta device: no memory)."""
    cls = type(model)
    if not isinstance(model_args, dict):
        raise ConfigError(f"model_args must be a mapping of {cls.__name__}'s keyword arguments; got {model_args!r:.60}")
    try:
        with torch.device("meta"):
            probe = cls(**model_args)
    except Exception as exc:  # the user's constructor
        raise ConfigError(f"model_args: {cls.__name__}(**{model_args}) failed ({type(exc).__name__}: {exc})") from None
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    if want != got:
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise ConfigError(
            f"model_args: {cls.__name__}(**{model_args}) builds other tensors than the model given "
            f"({', '.join(f'{k}: {got.get(k)} vs {want.get(k)}' for k in diff[:3])})"
        )


def _steps(bundle: DataBundle, cfg: TrainConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, steps of the run), as the engine will count them."""
    n, bs = len(bundle.train), cfg.batch_size
    batches = 1 if not bundle.train.indexable else max(1, n // bs if cfg.drop_last else math.ceil(n / bs))
    return max(1, batches // cfg.grad_accum), cfg.total_steps(batches)


def _one_batch(model: nn.Module, bundle: DataBundle, cfg: TrainConfig) -> tuple[torch.Tensor, ...]:
    """The arguments of one training forward: a registry model's example input at the batch size
    (right for tasks that call it with more than the data, e.g. diffusion's timestep), else the
    first batch of the training split."""
    if hasattr(model, "example_input") and registry_entry(model) is not None:
        args = model.example_input(batch_size=cfg.batch_size)
        return args if isinstance(args, tuple) else (args,)
    train = bundle.train
    return train.take(torch.arange(min(cfg.batch_size, len(train)))).inputs if train.indexable else train.inputs


def _remove_if_nothing_learned(run: RunDir) -> None:
    """A run that failed before its first periodic checkpoint (a model that does not fit the data,
    a bad option found at the first evaluation) has nothing worth resuming: remove it, so its name
    can be reused."""
    import shutil

    last = find_checkpoint(run.path, RunDir.LAST)
    if (last is None or not read_marker(last).get("step")) and find_checkpoint(run.path, RunDir.BEST) is None:
        log.info("removing %s: the run failed before its first step", run.path)
        shutil.rmtree(run.path, ignore_errors=True)


def finished(run_dir: str | Path) -> dict[str, Any] | None:
    """A finished run's final metrics, else None.

    Finished: ``final_metrics.json`` is written (the engine's last file) and its step is the
    step of ``last/``, so resuming has no step left to run. A run whose last/ fell back to an
    older twin is not finished: resuming redoes the steps the lost checkpoint held.
    """
    path = RunDir(run_dir).final_metrics_path
    try:
        final = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    last = find_checkpoint(Path(run_dir), RunDir.LAST)
    if not isinstance(final, dict) or last is None or last.name != RunDir.LAST:
        return None
    return final if final.get("step") == read_marker(last).get("step") else None


def _finished_result(run: RunDir, final: dict[str, Any], model: nn.Module | None) -> RunResult:
    """The result of a finished run, read from its files (nothing is written)."""
    from archlab.runs.use import load_run, saved_train

    log.warning("%s is finished (step %s): nothing to resume; no file changed", run.path, final.get("step"))
    loaded = load_run(run.path, model=model)
    monitor = TrainConfig.build(saved_train(loaded.saved)).monitor
    return RunResult(
        run_dir=run.path,
        model=loaded.model,
        metrics=final,
        steps=int(final["step"]),
        best_step=final.get("best_step"),
        best_value=final.get(f"best_{monitor}"),
        stopped_early=bool(final.get("stopped_early")),
        history=run.read_metrics(),
    )


def resume(
    run_dir: str | Path,
    data: DataBundle | None = None,
    *,
    model: nn.Module | None = None,
    reporter: Reporter | None = None,
    tensorboard: bool = False,
    track: str | TrackTarget | None = None,
    **changes: Any,
) -> RunResult:
    """Continue the run in ``run_dir`` exactly where its last complete checkpoint left it.

    The model is rebuilt from config.yaml after seeding (so a run killed before its first
    checkpoint restarts with the same initial weights); the data is reloaded by name unless given.
    A resumed run keeps its saved config: any other keyword raises ConfigError. A run of your
    own ``nn.Module`` is rebuilt from its recorded import path and arguments, or filled into
    ``model`` (a fresh instance of your class) when given. A run mirrored to MLflow continues
    its MLflow run (``track`` as in :func:`fit`; by default the one its ``mlflow.json`` names).

    A finished run (see :func:`finished`) is left as it is: no file is written, a log line says
    so, and the result is read from the run (final metrics, history, final weights).
    """
    if changes:
        raise ConfigError(f"a resumed run keeps its saved config; cannot change {sorted(changes)}")
    from archlab.registry import create_from_config
    from archlab.runs.use import saved_train

    run = RunDir(run_dir)
    saved = run.read_config()
    final = finished(run.path)
    if final is not None:
        return _finished_result(run, final, model)
    cfg = TrainConfig.build(saved_train(saved))
    dist = distributed.init_from_env(cfg.device)
    if dist.is_main:
        launch.write_launch_record(run.path, dist.world)  # under torchrun: its restarts resume this run
    seed_everything(cfg.seed)
    spec = saved.get("data") or {}
    bundle = data if data is not None else as_bundle(spec.get("name"), spec.get("options"))
    task_saved = saved.get("task") or {}
    task = get_task(task_saved.get("name") or bundle.task, **(task_saved.get("options") or {}))
    model_saved = saved.get("model") or {}
    source = model_saved.get("source")
    if model is not None and isinstance(source, dict) and source.get("args") is not None:
        setattr(model, INIT_ARGS_ATTR, source["args"])  # its checkpoints keep recording them
    elif model is None and source is not None:
        model = rebuild_module(source, str(run.config_path))
    elif model is None:
        model = create_from_config({"model": model_saved.get("name"), "config": model_saved.get("config") or {}})
    # Seeded, data loaded and model built in the same order as fit(): a run killed before its
    # first checkpoint continues from the same RNG state.
    reporters = _reporters(run.path, reporter, tensorboard, dist, track)
    result = train_model(model, bundle, task, cfg, run_dir=run.path, resume=True, seed=False, reporter=reporters)
    if dist.is_main:
        _draw_curves(run.path, result.history, reporters)
    return result
