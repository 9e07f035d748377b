"""The YAML run file as a typed :class:`RunSpec`, and the ``--set`` overrides on top of it.

A run file has four sections, and an optional fifth; ``model``, ``data`` and ``task`` may be
plain names::

    model: cnn1d_mnist1d        # or {name: cnn1d_mnist1d, channels: [32, 64], ...}
    data: mnist1d               # or {name: mnist1d, seed: 1}
    task: classification        # optional (default: the dataset's task), or {name: gan, loss: hinge}
    train: {lr: 0.01, batch_size: 100, max_steps: 6000, shuffle: false}
    run: {out_dir: runs, name: my_run, tensorboard: false, track: mlflow}   # optional: where the run goes

Older run files kept ``out_dir`` / ``run_name`` / ``tensorboard`` / ``quiet`` in ``train``. Wherever
one still arrives there (a run file, ``--set train.KEY=V``, ``archlab.fit(KEY=...)``) it is accepted
with one warning naming its place now (:data:`MOVED_TRAIN_KEYS`): ``out_dir`` / ``run_name`` /
``tensorboard`` are used as ``run.out_dir`` / ``run.name`` / ``run.tensorboard``; ``quiet`` is
ignored, as showing progress is the caller's choice (``-q`` on the CLI, no ``reporter`` in Python).

Unknown sections are rejected; a run directory's own ``config.yaml`` is a valid run file too
(its sections are ``{name, config}`` / ``{name, options}`` mappings). ``--set`` scheme::

    --set model.hidden_sizes=[64,64]   model config field
    --set train.lr=0.01                TrainConfig field
    --set data.seed=1                  option of archlab.data.load
    --set task.kind=binary             option of the task
    --set run.tensorboard=true         RunOptions field (where the run goes, what it logs)
    --set lr=0.01                      bare key: a TrainConfig field if one has that name, else a model field
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from archlab.config import parse_override, set_dotted
from archlab.errors import ConfigError
from archlab.train.config import TrainConfig

log = logging.getLogger("archlab.runs")
SECTIONS = ("model", "data", "task", "train", "run")


@dataclass(frozen=True)
class Moved:
    """Where an option that left ``train`` lives now, in each entry point."""

    run_key: str | None  # field of RunOptions; None: not a setting of the run at all
    flag: str  # the CLI's option
    keyword: str  # archlab.fit's keyword

    def say(self, where: str) -> str:
        """The one warning line for the option met at ``where`` (``run file x.yaml: train.quiet``)."""
        places = f"CLI {self.flag}; archlab.fit({self.keyword})"
        if self.run_key is None:
            return f"{where} is not a training setting; ignored (showing progress is the caller's choice: {places})"
        return f"{where} is not a training setting; used as run.{self.run_key} (a run file's place for it; {places})"


#: Options older versions kept in ``train``, and their places now.
MOVED_TRAIN_KEYS = {
    "out_dir": Moved("out_dir", "--out-dir DIR", "out_dir=..."),
    "run_name": Moved("name", "--name NAME", "run_name=..."),
    "tensorboard": Moved("tensorboard", "--tensorboard", "tensorboard=True"),
    "quiet": Moved(None, "-q/--quiet", "reporter=None, the default"),
}


def pop_moved(train: dict[str, Any], where: str) -> dict[str, Any]:
    """Take the options that left ``train`` out of it, with one warning each naming the new place.

    Args:
        train: a mapping of TrainConfig fields, changed in place.
        where: how the warning names the option, ``{key}`` standing for its name
            (``"run file x.yaml: train.{key}"``, ``"archlab.fit({key}=...)"``).

    Returns:
        The RunOptions fields they stand for (``quiet`` has none: it is dropped).
    """
    run: dict[str, Any] = {}
    for key, moved in MOVED_TRAIN_KEYS.items():
        if key in train:
            value = train.pop(key)
            log.warning(moved.say(where.replace("{key}", key)))
            if moved.run_key is not None:
                run[moved.run_key] = value
    return run


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
            for key, value in pop_moved(train, f"{source}: train.{{key}}").items():
                run.setdefault(key, value)  # the run section wins over the old place
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
        run = spec.run.model_dump()
        for item in sets:
            key, value = parse_override(item)
            head, _, rest = key.partition(".")
            if head == "train" and rest in MOVED_TRAIN_KEYS or key in MOVED_TRAIN_KEYS:
                run.update(pop_moved({key.removeprefix("train."): value}, f"--set {key}"))  # as typed
            elif head == "run" and rest:
                run[rest] = value
            elif head in sections and rest:
                set_dotted(sections[head], rest, value)
            elif key in TrainConfig.model_fields:
                spec.train[key] = value
            else:
                set_dotted(spec.model.options, key, value)
        try:
            spec.run = RunOptions.model_validate(run)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(
                f"--set run.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}; "
                f"run fields: {', '.join(RunOptions.model_fields)}"
            ) from None
        return spec
