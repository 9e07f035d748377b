"""``archlab.fit`` and ``archlab.resume``: names to objects, a run directory laid out, the engine run.

:func:`fit` accepts registry and dataset names (a named model is adapted to the data, see
:mod:`archlab.runs.adapt`), writes ``config.yaml`` (model, data, task, train) and
``data_info.json`` before the first step, then calls the engine (:func:`archlab.train.fit`) with
reporters that draw the task's pictures into the run directory and, when asked, mirror records
to TensorBoard. After training it draws ``curves.png``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.data.base import DataBundle
from archlab.errors import ConfigError, MissingExtraError
from archlab.io import atomic_write_json
from archlab.rundir import RunDir, find_checkpoint, read_marker
from archlab.tasks import get_task
from archlab.train import NonFiniteLossError, RunResult, TrainConfig
from archlab.train import fit as engine_fit
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

            draw(picture, self.run_dir / f"{name}.png")
        except MissingExtraError as exc:
            if not self.warned:
                log.warning("pictures are not drawn: %s", exc)
                self.warned = True


class TensorBoardWriter(Reporter):
    """Mirrors every numeric value of every record to TensorBoard under ``RUN_DIR/tb``."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingExtraError("tensorboard=True needs the tensorboard package: pip install tensorboard") from None
        self.tb = SummaryWriter(str(run_dir / "tb"))

    def record(self, rec: dict[str, Any]) -> None:
        step = rec.get("step", 0)
        for k, v in rec.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch"):
                self.tb.add_scalar(f"{rec.get('kind', 'train')}/{k}", v, step)

    def close(self) -> None:
        self.tb.close()


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


def _run_path(out_dir: str | Path, run_name: str | None, model_name: str, data_name: str) -> Path:
    root = Path(out_dir)
    if run_name:
        path = root / run_name
        if (path / "config.yaml").exists():
            raise ConfigError(
                f"run directory {path} already holds a run; resume it (--resume {path}) or pick another name"
            )
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


def _reporters(run_dir: Path, reporter: Reporter | None, tensorboard: bool) -> Reporter:
    return Reporters(reporter, PictureWriter(run_dir), TensorBoardWriter(run_dir) if tensorboard else None)


def _draw_curves(run_dir: Path, history: list[dict[str, Any]]) -> None:
    try:
        from archlab.report.plots import plot_curves

        plot_curves(history, run_dir / "curves.png")
    except MissingExtraError as exc:
        log.warning("no curves.png: %s", exc)


def fit(
    model: nn.Module | str,
    data: DataBundle | str,
    task: Any = None,
    *,
    task_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    data_spec: dict[str, Any] | None = None,
    out_dir: str | Path = "runs",
    run_name: str | None = None,
    tensorboard: bool = False,
    reporter: Reporter | None = None,
    **train_config: Any,
) -> RunResult:
    """Train ``model`` on ``data`` for ``task`` and write a run directory.

    >>> result = archlab.fit("mlp_tabular", "breast_cancer", max_steps=200, lr=1e-3)
    >>> result.metrics["test_accuracy"], result.run_dir

    Args:
        model: a registry name (its config is adapted to the data, with ``model_overrides`` on
            top) or a module built from the registry.
        data: a DataBundle, or a dataset name / file path for ``archlab.data.load``.
        task: a task name or object (default: the data's task).
        task_options: options of a task given by name (e.g. ``{"kind": "binary"}``).
        data_spec: how to reload the data, recorded in config.yaml (default ``{"name": data.name}``).
        out_dir, run_name: where the run directory goes (default ``runs/MODEL-DATA-TIMESTAMP``).
        tensorboard: also write TensorBoard logs (needs the tensorboard package).
        reporter: receives progress (the CLI passes a progress bar; default silent).
        **train_config: fields of :class:`archlab.TrainConfig`.
    """
    cfg = TrainConfig.build(train_config)
    seed_everything(cfg.seed)  # before the model is built, so a resumed run rebuilds the same weights
    bundle = as_bundle(data, (data_spec or {}).get("options"))
    if task is None or isinstance(task, str):
        task = get_task(task or bundle.task, **(task_options or {}))
    if isinstance(model, str):
        from archlab.runs.adapt import build_model

        check_fits(model, bundle, task)
        model = build_model(model, bundle, task, model_overrides)
    elif model_overrides:
        raise ConfigError("model_overrides apply to registry names; this model is already built")
    # The small-validation rule (archlab.train.small_data): no checkpoint selection or early
    # stopping on a handful of samples. Applied here so config.yaml records what is used.
    cfg, policy = apply_policy(cfg, 0 if bundle.val is None else len(bundle.val))
    log.info("model selection: %s", policy.reason)
    bundle.info["model_selection"] = policy.to_dict()
    model_name = getattr(model, "registry_name", type(model).__name__)
    run = RunDir(_run_path(out_dir, run_name, model_name, bundle.name))
    run.write_config(
        {
            "model": {"name": model_name, "config": model.config.to_dict() if hasattr(model, "config") else None},
            "data": data_spec or {"name": bundle.name},
            "task": {"name": task.name, "options": task.options()},
            "train": cfg.to_dict(),
        }
    )
    atomic_write_json(run.path / "data_info.json", _jsonable(bundle.info))
    try:
        # seeded above, before the model was built: the engine continues that RNG stream
        result = engine_fit(
            model, bundle, task, cfg, run_dir=run.path, reporter=_reporters(run.path, reporter, tensorboard), seed=False
        )
    except NonFiniteLossError:
        raise  # the run and its last good checkpoint stay, as the error says
    except Exception:
        _remove_if_nothing_learned(run)
        raise
    _draw_curves(run.path, result.history)
    return result


def _remove_if_nothing_learned(run: RunDir) -> None:
    """A run that failed before its first periodic checkpoint (a model that does not fit the data,
    a bad option found at the first evaluation) has nothing worth resuming: remove it, so its name
    can be reused."""
    import shutil

    last = find_checkpoint(run.path, "last")
    if (last is None or not read_marker(last).get("step")) and find_checkpoint(run.path, "best") is None:
        log.info("removing %s: the run failed before its first step", run.path)
        shutil.rmtree(run.path, ignore_errors=True)


def resume(
    run_dir: str | Path,
    data: DataBundle | None = None,
    *,
    reporter: Reporter | None = None,
    tensorboard: bool = False,
    **changes: Any,
) -> RunResult:
    """Continue the run in ``run_dir`` exactly where its last complete checkpoint left it.

    The model is rebuilt from config.yaml after seeding (so a run killed before its first
    checkpoint restarts with the same initial weights); the data is reloaded by name unless given.
    A resumed run keeps its saved config: any other keyword raises ConfigError.
    """
    if changes:
        raise ConfigError(f"a resumed run keeps its saved config; cannot change {sorted(changes)}")
    from archlab.registry import create_from_config
    from archlab.runs.use import saved_train

    run = RunDir(run_dir)
    saved = run.read_config()
    cfg = TrainConfig.build(saved_train(saved))
    seed_everything(cfg.seed)
    spec = saved.get("data") or {}
    bundle = data if data is not None else as_bundle(spec.get("name"), spec.get("options"))
    task_saved = saved.get("task") or {}
    task = get_task(task_saved.get("name") or bundle.task, **(task_saved.get("options") or {}))
    model = create_from_config({"model": saved["model"]["name"], "config": saved["model"]["config"]})
    # Seeded, data loaded and model built in the same order as fit(): a run killed before its
    # first checkpoint continues from the same RNG state.
    result = engine_fit(
        model,
        bundle,
        task,
        cfg,
        run_dir=run.path,
        resume=True,
        seed=False,
        reporter=_reporters(run.path, reporter, tensorboard),
    )
    _draw_curves(run.path, result.history)
    return result
