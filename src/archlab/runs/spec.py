"""The YAML run file as a typed :class:`RunSpec`, and the ``--set`` overrides on top of it.

A run file has four sections, and an optional fifth; ``model``, ``data`` and ``task`` may be
plain names::

    model: cnn1d_mnist1d        # or {name: cnn1d_mnist1d, channels: [32, 64], ...}
    data: mnist1d               # or {name: mnist1d, seed: 1}
    task: classification        # optional (default: the dataset's task), or {name: gan, loss: hinge}
    train: {lr: 0.01, batch_size: 100, max_steps: 6000, shuffle: false}
    run: {out_dir: runs, name: my_run, tensorboard: false, track: mlflow}   # optional: where the run goes

Older run files kept ``out_dir`` / ``run_name`` / ``tensorboard`` / ``quiet`` in ``train``; they
are moved to ``run`` (``quiet`` is dropped: showing progress is the caller's choice) with a log
line saying so.

Unknown sections are rejected; a run directory's own ``config.yaml`` is a valid run file too
(its sections are ``{name, config}`` / ``{name, options}`` mappings). ``--set`` scheme::

    --set model.hidden_sizes=[64,64]   model config field
    --set train.lr=0.01                TrainConfig field
    --set data.seed=1                  option of archlab.data.load
    --set task.kind=binary             option of the task
    --set lr=0.01                      bare key: a TrainConfig field if one has that name, else a model field
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from archlab.config import parse_override, set_dotted
from archlab.errors import ConfigError
from archlab.train.config import TrainConfig

log = logging.getLogger("archlab.runs")
_LEGACY_RUN_KEYS = {"out_dir": "out_dir", "run_name": "name", "tensorboard": "tensorboard", "quiet": None}
SECTIONS = ("model", "data", "task", "train", "run")


class RunOptions(BaseModel):
    """Where a run is written and what it logs besides metrics.jsonl (not training settings)."""

    model_config = ConfigDict(extra="forbid")
    out_dir: str = "runs"
    name: str | None = None
    tensorboard: bool = False
    #: ``mlflow``, ``mlflow:URI`` or ``none`` (see :mod:`archlab.runs.tracking`)
    track: str | None = None


class Section(BaseModel):
    """A named thing with options: ``model``, ``data`` or ``task``."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, what: str) -> Section:
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(name=value)
        if isinstance(value, dict):
            value = dict(value)
            name = value.pop("name", None)
            if name is not None and not isinstance(name, str):
                raise ConfigError(f"run file section {what!r}: name must be a string; got {type(name).__name__}")
            for nested in ("config", "options"):  # a run directory's config.yaml nests them
                if len(value) == 1 and nested in value:
                    value = value[nested] if isinstance(value[nested], dict) else {}
            return cls(name=name, options=value)
        raise ConfigError(f"run file section {what!r} must be a name or a mapping; got {type(value).__name__}")


class RunSpec(BaseModel):
    """What to train: the model, the data, the task and the training config."""

    model_config = ConfigDict(extra="forbid")
    model: Section = Field(default_factory=Section)
    data: Section = Field(default_factory=Section)
    task: Section = Field(default_factory=Section)
    train: dict[str, Any] = Field(default_factory=dict)
    run: RunOptions = Field(default_factory=RunOptions)

    @field_validator("train", mode="before")
    @classmethod
    def _train_mapping(cls, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping of TrainConfig fields; got {type(value).__name__}")
        return value

    @classmethod
    def from_dict(cls, doc: Any, source: str = "run file") -> RunSpec:
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected a mapping with model/data/task/train; got {type(doc).__name__}")
        unknown = sorted(set(doc) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"{source}: unknown sections {unknown}; allowed: {', '.join(SECTIONS)}")
        train, run = doc.get("train"), doc.get("run") if doc.get("run") is not None else {}
        run = dict(run) if isinstance(run, dict) else run
        if isinstance(train, dict) and isinstance(run, dict):
            train = dict(train)
            for old, new in _LEGACY_RUN_KEYS.items():
                if old in train:
                    value = train.pop(old)
                    if new is not None:
                        run.setdefault(new, value)
                    log.info(
                        "%s: train.%s is not a training setting; %s",
                        source,
                        old,
                        f"using it as run.{new}" if new else "ignored (progress display is the caller's choice)",
                    )
        try:
            return cls(
                model=Section.parse(doc.get("model"), "model"),
                data=Section.parse(doc.get("data"), "data"),
                task=Section.parse(doc.get("task"), "task"),
                train=train,
                run=run,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{source}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> RunSpec:
        """Parse a YAML run file; every failure is a ConfigError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"run file {path} does not exist")
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"run file {path} is not UTF-8 text") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"run file {path} is not valid YAML{line}: {problem}") from None
        return cls.from_dict(doc if doc is not None else {}, str(path))

    def with_sets(self, sets: Iterable[str]) -> RunSpec:
        """A copy with ``--set`` overrides applied (see the module docstring for the scheme)."""
        spec = self.model_copy(deep=True)
        sections = {
            "model": spec.model.options,
            "data": spec.data.options,
            "task": spec.task.options,
            "train": spec.train,
        }
        for item in sets:
            key, value = parse_override(item)
            head, _, rest = key.partition(".")
            if head in sections and rest:
                set_dotted(sections[head], rest, value)
            elif key in TrainConfig.model_fields:
                spec.train[key] = value
            else:
                set_dotted(spec.model.options, key, value)
        return spec
