"""Runs mirrored to experiment trackers: MLflow and TensorBoard, as :class:`Reporter` s.

``metrics.jsonl`` stays the source of truth; a tracker is a copy of it. Turning MLflow on:

- ``archlab train ... --track mlflow`` (the tracking URI from ``ARCHLAB_TRACKING_URI``,
  else MLflow's own default) or ``--track mlflow:http://127.0.0.1:5000``;
- ``run: {track: "mlflow:URI"}`` in a run file;
- ``ARCHLAB_TRACKING_URI=...`` in the environment alone (``--track none`` turns it off).

What an MLflow run holds: the run's ``config.yaml`` flattened into params
(``train.lr``, ``model.config.channels``), every record of ``metrics.jsonl`` as metrics named
``KIND/KEY`` (``train/loss``, ``eval/val_accuracy``, ``final/test_accuracy``) at its step, tags
for the model, its family, the dataset and the archlab version, and as artifacts the task's
pictures, ``curves.png``, ``config.yaml``, ``data_info.json``, ``metrics.jsonl``,
``final_metrics.json``, ``report.html`` when present and the saved model (``best/`` or ``last/``).

Resuming: the MLflow run id is kept in ``RUN_DIR/mlflow.json``; a resumed run reopens that run,
logs whatever of ``metrics.jsonl`` the tracker lacks (a kill between the file and the server
loses nothing) and skips every (metric, step) the tracker already holds (a resumed run redoes
the steps after its checkpoint with the same values), so no step is logged twice.

A design search logs one parent run with a child run per trial::

    parent = open_parent_run("mlflow:http://127.0.0.1:5000", "design digits", params={...})
    fit(..., track=parent.child())      # each trial: a child run (tag mlflow.parentRunId)
    close_parent_run(parent, metrics={"best_val_accuracy": 0.98}, files=[report_html])
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from archlab._version import __version__
from archlab.errors import ConfigError, MissingExtraError, require
from archlab.io import atomic_write_json
from archlab.rundir import RunDir
from archlab.train.progress import Reporter

log = logging.getLogger("archlab.runs")

ENV_URI = "ARCHLAB_TRACKING_URI"
#: The run-directory file that names the MLflow run a run directory is mirrored to.
MLFLOW_FILE = RunDir.MLFLOW
DEFAULT_EXPERIMENT = "archlab"
_OFF = ("none", "off", "")
# MLflow's log_batch limits (per request): 1000 metrics, 100 params; a param value of 6000 chars.
_METRICS_PER_BATCH, _PARAMS_PER_BATCH, _PARAM_CHARS = 1000, 100, 6000
_ARTIFACT_FILES = (
    RunDir.CONFIG,
    RunDir.DATA_INFO,
    RunDir.METRICS,
    RunDir.FINAL_METRICS,
    RunDir.CURVES,
    RunDir.REPORT,
)


@dataclass(frozen=True)
class TrackTarget:
    """Where a run is mirrored: an MLflow tracking URI, an experiment and, for a design trial,
    the parent run it belongs to.

    Attributes:
        uri: the tracking URI (``None``: MLflow's default, e.g. ``MLFLOW_TRACKING_URI``).
        experiment: the experiment's name (created when missing).
        parent_run_id: the MLflow run this one is a child of (a design trial), or ``None``.
    """

    uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    parent_run_id: str | None = None


def resolve_track(track: str | TrackTarget | None, run_dir: Path | None = None) -> TrackTarget | None:
    """What ``--track`` / ``run.track`` / the environment ask for, as a :class:`TrackTarget`.

    Precedence: the value given; then, for a resumed run, the URI its ``mlflow.json`` recorded;
    then ``ARCHLAB_TRACKING_URI``. ``"none"`` turns tracking off whatever the environment says.

    Raises:
        ConfigError: a value other than ``mlflow``, ``mlflow:URI`` or ``none``.
    """
    if isinstance(track, TrackTarget):
        return track
    if track is None:
        recorded = read_run_link(run_dir) if run_dir is not None else None
        if recorded is not None:
            return TrackTarget(
                uri=recorded.get("tracking_uri"), experiment=recorded.get("experiment", DEFAULT_EXPERIMENT)
            )
        env = os.environ.get(ENV_URI, "").strip()
        return TrackTarget(uri=env) if env else None
    text = track.strip()
    if text.lower() in _OFF:
        return None
    kind, _, given = text.partition(":")
    if kind.lower() != "mlflow":
        raise ConfigError(f"track must be 'mlflow', 'mlflow:URI' or 'none'; got {track!r}")
    return TrackTarget(uri=given.strip() or os.environ.get(ENV_URI, "").strip() or None)


def read_run_link(run_dir: Path) -> dict[str, Any] | None:
    """``RUN_DIR/mlflow.json`` (the MLflow run this run directory is mirrored to), or ``None``."""
    path = Path(run_dir) / MLFLOW_FILE
    if not path.is_file():
        return None
    try:
        link = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path} is not the JSON archlab wrote ({exc}); remove it to start a new MLflow run"
        ) from None
    if not isinstance(link, dict) or not isinstance(link.get("run_id"), str):
        raise ConfigError(f"{path}: expected a mapping with a string 'run_id'; got {link!r:.80}")
    return link


def _client(uri: str | None) -> Any:
    # MLflow's usage telemetry posts to the internet from a thread that also sets and unsets an
    # environment variable (a concurrent reader of os.environ then fails): archlab sends nothing
    # at run time, so it is off unless the user has set it
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    require("mlflow", "mlflow", "tracking runs in MLflow")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.01}}`` -> ``{"train.lr": "0.01"}`` (lists and scalars as text)."""
    out: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = (json.dumps(value) if not isinstance(value, str) else value)[:_PARAM_CHARS]
    return out


def metric_points(rec: dict[str, Any]) -> dict[str, float]:
    """The numeric values of one metrics.jsonl record, named ``KIND/KEY`` (step and epoch are axes)."""
    kind = rec.get("kind", "train")
    return {
        f"{kind}/{k}": float(v)
        for k, v in rec.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch")
    }


class MlflowReporter(Reporter):
    """Mirrors a run directory to one MLflow run (see the module docstring for what it logs).

    Args:
        run_dir: the run directory (its ``config.yaml`` exists when training starts).
        target: the tracking URI, experiment and parent run.
    """

    def __init__(self, run_dir: Path, target: TrackTarget):
        self.run = RunDir(run_dir)
        self.target = target
        self.client = _client(target.uri)
        self.run_id: str | None = None
        self.logged: set[tuple[str, int]] = set()
        self.finished = False

    # ---------------------------------------------------------------------------- the run
    def start(self, total_steps: int, start_step: int, title: str) -> None:
        link = read_run_link(self.run.path)
        if link is not None and link.get("tracking_uri") != self.client.tracking_uri:
            log.warning(
                "MLflow: %s names a run at %s, not %s; starting a new run there",
                MLFLOW_FILE,
                link.get("tracking_uri"),
                self.client.tracking_uri,
            )
            link = None
        if link is not None:
            self.run_id = link["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged = self._logged_points()
            log.info("MLflow: continuing run %s", self.run_id)
        else:
            self.run_id = self._create_run()
            log.info("MLflow: run %s at %s", self.run_id, self.client.tracking_uri)
        # metrics.jsonl is the truth: what the tracker lacks of it (a kill between the two) goes now
        for rec in self.run.read_metrics():
            self.record(rec)

    def _create_run(self) -> str:
        config = self.run.read_config()
        tags = run_tags(config)
        if self.target.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.target.parent_run_id
        experiment = _experiment_id(self.client, self.target.experiment)
        run_id: str = self.client.create_run(experiment, run_name=self.run.path.name, tags=tags).info.run_id
        atomic_write_json(
            self.run.path / MLFLOW_FILE,
            {
                "tracking_uri": self.client.tracking_uri,
                "experiment": self.target.experiment,
                "experiment_id": experiment,
                "run_id": run_id,
            },
        )
        log_params(self.client, run_id, flatten(config))
        return run_id

    def _logged_points(self) -> set[tuple[str, int]]:
        """Every (metric, step) the MLflow run already holds."""
        assert self.run_id is not None
        keys = self.client.get_run(self.run_id).data.metrics.keys()
        return {(k, m.step) for k in keys for m in self.client.get_metric_history(self.run_id, k)}

    # ---------------------------------------------------------------------------- reporting
    def record(self, rec: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        step = int(rec.get("step", 0))
        fresh = [(k, v) for k, v in metric_points(rec).items() if (k, step) not in self.logged]
        if not fresh:
            return
        stamp = _now_ms()
        metrics = [Metric(k, v, stamp, step) for k, v in fresh]
        for i in range(0, len(metrics), _METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + _METRICS_PER_BATCH])
        self.logged.update((k, step) for k, _ in fresh)
        self.finished = self.finished or rec.get("kind") == "final"

    def picture(self, name: str, picture: Any) -> None:
        # drawn into RUN_DIR/NAME.png by the picture writer, which reports before this one
        self.log_files([self.run.picture_path(name)], "pictures")

    def close(self) -> None:
        if self.run_id is None:
            return
        self.log_files([self.run.path / f for f in _ARTIFACT_FILES])
        model_dir = self.run.best if (self.run.best / "COMPLETE").is_file() else self.run.last
        if model_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(model_dir), "model")
        self.client.set_terminated(self.run_id, status="FINISHED" if self.finished else "KILLED")

    def log_files(self, paths: Iterable[Path], folder: str | None = None) -> None:
        """Upload the files that exist as artifacts (also after :meth:`close`, e.g. ``curves.png``)."""
        if self.run_id is None:
            return
        for path in paths:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path), folder)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def run_tags(config: dict[str, Any]) -> dict[str, str]:
    """Tags of a run from its config.yaml: model, model family, dataset, task, archlab version."""
    model = config.get("model") or {}
    data = config.get("data") or {}
    tags = {
        "archlab.version": __version__,
        "archlab.model": str(model.get("name")),
        "archlab.dataset": str(data.get("name")),
        "archlab.task": str((config.get("task") or {}).get("name")),
    }
    try:
        from archlab.registry import get_entry

        tags["archlab.family"] = get_entry(str(model.get("name"))).family
    except Exception:  # your own nn.Module: no registry entry, no family
        tags["archlab.family"] = "custom"
    return tags


def log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    """Params in batches of MLflow's limit."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[i : i + _PARAMS_PER_BATCH])


# -------------------------------------------------------------------------------- design runs
@dataclass(frozen=True)
class ParentRun:
    """An MLflow run that groups others (a design search and its trials).

    Attributes:
        target: where it lives; ``target.parent_run_id`` is its own run id.
    """

    target: TrackTarget

    @property
    def run_id(self) -> str:
        assert self.target.parent_run_id is not None
        return self.target.parent_run_id

    def child(self) -> TrackTarget:
        """The target to pass as ``fit(..., track=...)`` for a run logged as this run's child."""
        return self.target


def open_parent_run(
    track: str | TrackTarget | None,
    name: str,
    *,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
) -> ParentRun | None:
    """Start (or, with ``run_id``, reopen) a parent run; ``None`` when tracking is off.

    Args:
        track: as ``fit``'s ``track`` (``"mlflow[:URI]"``, a :class:`TrackTarget`, or ``None``
            for ``ARCHLAB_TRACKING_URI``).
        name: the run's name (e.g. ``design digits``).
        params: flattened into params (``budget.latency_ms``); logged once, when created.
        tags: more tags (``archlab.version`` is always set).
        run_id: a parent run of an interrupted design to continue.
    """
    target = resolve_track(track)
    if target is None:
        return None
    client = _client(target.uri)
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
        return ParentRun(replace(target, parent_run_id=run_id))
    all_tags = {"archlab.version": __version__, **(tags or {})}
    run = client.create_run(_experiment_id(client, target.experiment), run_name=name, tags=all_tags)
    log_params(client, run.info.run_id, flatten(params or {}))
    return ParentRun(replace(target, parent_run_id=run.info.run_id))


def close_parent_run(
    parent: ParentRun | None,
    *,
    metrics: dict[str, float] | None = None,
    files: Iterable[Path] = (),
    status: str = "FINISHED",
) -> None:
    """Log the parent's summary metrics and files (e.g. the design report) and end it."""
    if parent is None:
        return
    client = _client(parent.target.uri)
    for key, value in (metrics or {}).items():
        client.log_metric(parent.run_id, key, float(value), step=0)
    for path in files:
        if Path(path).is_file():
            client.log_artifact(parent.run_id, str(path))
    client.set_terminated(parent.run_id, status=status)


# -------------------------------------------------------------------------------- TensorBoard
class TensorBoardWriter(Reporter):
    """Mirrors a run to TensorBoard under ``RUN_DIR/tb``: every numeric value of every record as
    a scalar, the task's pictures as images, and the "data" block (the inferred preprocessing)
    and the config as text."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingExtraError(
                "tensorboard=True needs the tensorboard package: pip install 'archlab[tensorboard]'"
            ) from None
        self.run = RunDir(run_dir)
        self.tb = SummaryWriter(str(self.run.path / RunDir.TENSORBOARD))
        self.step = 0

    def start(self, total_steps: int, start_step: int, title: str) -> None:
        self.step = start_step
        if start_step == 0:  # once per run, not again on resume
            self.tb.add_text("data", _markdown_lines(data_block(self.run.path)), 0)
            config = self.run.config_path
            if config.is_file():
                self.tb.add_text("config", "```\n" + config.read_text(encoding="utf-8") + "\n```", 0)

    def record(self, rec: dict[str, Any]) -> None:
        self.step = int(rec.get("step", self.step))
        for name, value in metric_points(rec).items():
            self.tb.add_scalar(name, value, self.step)

    def picture(self, name: str, picture: Any) -> None:
        path = self.run.picture_path(name)  # drawn by the picture writer, which reports before this one
        if path.is_file():
            import numpy as np
            from PIL import Image

            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
            self.tb.add_image(name, pixels, self.step, dataformats="HWC")

    def close(self) -> None:
        self.tb.close()


def data_block(run_dir: Path) -> list[str]:
    """The "data" block logged when training started (the inferred preprocessing), from data_info.json."""
    from archlab.data.preprocess import Preprocessing

    path = RunDir(run_dir).data_info_path
    try:
        prep = json.loads(path.read_text(encoding="utf-8")).get("preprocessing")
    except (OSError, ValueError, AttributeError):
        prep = None
    if not isinstance(prep, dict):
        return ["no preprocessing recorded"]
    p = Preprocessing.from_json(prep)
    return [f"{k}: {v}" for k, v in p.choices.items() if k != "preprocessing"] + [f"step: {s}" for s in p.describe()]


def _markdown_lines(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)
