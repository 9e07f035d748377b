"""K-fold cross-validation as a group of ordinary runs, resumable fold by fold.

Layout::

    RUN/                    the parent (``out_dir/run_name``, or a name fixed by the arguments)
      group.json            what the group is: kind, arguments, members (written first)
      fold-0/ ... fold-K-1/ one ordinary run directory per fold (config.yaml, checkpoints, ...)
      cv_summary.json       per-fold final metrics and, per metric, mean / std / 95% t-interval

Resume. Calling :func:`cross_validate` again with the same arguments finds the same parent (the
default name carries a hash of the arguments; an explicit ``run_name`` is checked against
``group.json``). A fold whose ``final_metrics.json`` exists is finished and skipped; a fold with a
``config.yaml`` but no final metrics is continued with :func:`archlab.runs.resume` from its last
complete checkpoint, so a killed CV run resumes at the fold and step where it stopped; any other
fold starts. Folds are rebuilt from the seed (:func:`archlab.data.folds.kfold` is deterministic).

Folds are shuffled (stratified and grouped as they apply) for independent samples and
forward-chaining for time-ordered data (forecasting, language modelling), where ``split="auto"``
(the default, and what ``--cv K`` uses) switches to them and logs it; see :mod:`archlab.data.folds`.
``cv_summary.json`` records each fold's train / val / test sizes, and each metric's interval is
the Nadeau-Bengio corrected t (:func:`archlab.runs.stats.summarize`), which needs their ratio.
The folds train as one vmapped stack when ``train.stack`` is auto and the model allows it
(:mod:`archlab.runs.stacked`), else one at a time; the layout is the same either way.

Each fold's validation part is what the fold run evaluates on; its test split is the bundle's,
the same in every fold. Model selection inside a fold follows the engine's small-validation rule
(:mod:`archlab.train.small_data`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from archlab.data.base import DataBundle
from archlab.data.folds import kfold
from archlab.errors import ConfigError
from archlab.io import atomic_write_json
from archlab.rundir import RunDir
from archlab.runs import stacked
from archlab.runs.stats import summarize_metrics
from archlab.runs.training import as_bundle, fit, resume
from archlab.train import RunResult
from archlab.train.progress import Reporter

log = logging.getLogger("archlab.runs")


@dataclass
class GroupResult:
    """A finished group of runs (folds or seeds).

    Attributes:
        run_dir: the parent directory.
        member_dirs: one run directory per member, in order.
        member_metrics: each member's ``final_metrics.json``.
        summary: per numeric metric, :func:`archlab.runs.stats.summarize` over the members.
        skipped, resumed: member indices found finished / continued from a checkpoint.
        results: the members trained or resumed in this call (skipped ones have none).
    """

    run_dir: Path
    member_dirs: list[Path]
    member_metrics: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    skipped: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    results: dict[int, RunResult] = field(default_factory=dict)

    def mean_std(self, metric: str) -> str:
        """``"0.953 ± 0.021 (n=5)"`` for ``metric``."""
        s = self.summary[metric]
        return f"{s['mean']:.4g} ± {s['std']:.2g} (n={s['n']})"


@dataclass
class CVResult(GroupResult):
    """:class:`GroupResult` of a cross-validation; ``k`` folds."""

    k: int = 0
    split: str = "shuffled"
    fold_sizes: list[dict[str, int]] = field(default_factory=list)


# ------------------------------------------------------------------------------- group machinery
def _model_name(model: nn.Module | str) -> str:
    return model if isinstance(model, str) else getattr(model, "registry_name", type(model).__name__)


def group_dir(
    kind: str,
    model: nn.Module | str,
    bundle: DataBundle,
    arguments: dict[str, Any],
    out_dir: str | Path,
    run_name: str | None,
) -> Path:
    """The parent directory: ``out_dir/run_name``, or a name fixed by the arguments.

    Raises:
        ConfigError: ``run_name`` holds a group made with other arguments.
    """
    digest = hashlib.sha1(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()[:8]
    name = run_name or re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{_model_name(model)}-{bundle.name}-{kind}-{digest}")
    path = Path(out_dir) / name
    manifest = path / RunDir.GROUP
    if manifest.is_file():
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        if saved.get("digest") != digest:
            raise ConfigError(
                f"{path} holds a {saved.get('kind')} group made with other arguments "
                f"({saved.get('arguments')}); pick another run_name or rerun with those"
            )
    else:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            manifest, {"kind": kind, "digest": digest, "arguments": json.loads(json.dumps(arguments, default=str))}
        )
    return path


def run_member(
    path: Path, model: nn.Module | str, data: DataBundle, task: Any, reporter: Reporter | None, **fit_kwargs: Any
) -> tuple[dict[str, Any], str, RunResult | None]:
    """Skip, resume or start the run at ``path``; returns (final metrics, what was done, result).

    ``fit_kwargs`` go to :func:`archlab.runs.fit` when the run starts (``out_dir`` / ``run_name``
    come from ``path``); a resumed run keeps the config it saved.
    """
    run = RunDir(path)
    if run.final_metrics_path.is_file():
        return json.loads(run.final_metrics_path.read_text(encoding="utf-8")), "skipped", None
    if run.has_config:
        log.info("resuming %s", path)
        result = resume(path, data=data, reporter=reporter)
        return result.metrics, "resumed", result
    result = fit(
        fresh_model(model), data, task, out_dir=path.parent, run_name=path.name, reporter=reporter, **fit_kwargs
    )
    return result.metrics, "started", result


def finish_group(
    cls: type[GroupResult],
    path: Path,
    summary_name: str,
    dirs: list[Path],
    metrics: list[dict[str, Any]],
    done: list[str],
    results: dict[int, RunResult],
    extra: dict[str, Any],
    test_train_ratio: dict[str, float] | None = None,
) -> GroupResult:
    """Summarise the members, write ``summary_name``, return the result.

    ``test_train_ratio`` (metric -> n_test / n_train of a fold) makes a cross-validation's
    intervals the Nadeau-Bengio corrected ones.
    """
    summary = summarize_metrics(metrics, test_train_ratio=test_train_ratio)
    atomic_write_json(
        path / summary_name,
        {**extra, "members": [{"run_dir": d.name, "metrics": m} for d, m in zip(dirs, metrics)], "metrics": summary},
    )
    return cls(
        run_dir=path,
        member_dirs=dirs,
        member_metrics=metrics,
        summary=summary,
        skipped=[i for i, d in enumerate(done) if d == "skipped"],
        resumed=[i for i, d in enumerate(done) if d == "resumed"],
        results=results,
        **extra,
    )


def fresh_model(model: nn.Module | str) -> nn.Module | str:
    """A registry name as it is (each run builds its own); a module deep-copied, so runs don't share weights."""
    if isinstance(model, str):
        return model
    import copy

    return copy.deepcopy(model)


# ---------------------------------------------------------------------------------- cross-validation
def cross_validate(
    model: nn.Module | str,
    data: DataBundle | str,
    task: Any = None,
    *,
    k: int = 5,
    seed: int = 0,
    stratify: bool = True,
    groups: Sequence[Any] | None = None,
    normalize: str = "refit",
    split: str = "auto",
    data_options: dict[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    out_dir: str | Path = "runs",
    run_name: str | None = None,
    reporter: Reporter | None = None,
    **train_config: Any,
) -> CVResult:
    """Train ``model`` once per fold of ``data``'s training split; summarise the folds' metrics.

    >>> cv = archlab.runs.cv.cross_validate("mlp_tabular", "wine", k=5, max_steps=300)
    >>> cv.mean_std("test_accuracy"), cv.summary["val_accuracy"]["ci95_low"]

    Args:
        model: a registry name (adapted to the data in each fold) or a module (copied per fold).
        data: a DataBundle, or a name / path loaded with ``data_options``.
        task: a task name or object (default: the data's task).
        k: folds (>= 2).
        seed: fold assignment; also the training seed unless ``train_config`` gives ``seed``.
        stratify, groups, normalize, split: see :func:`archlab.data.folds.kfold` (``split="auto"``:
            forward-chaining folds for time-ordered data, shuffled otherwise).
        out_dir, run_name: the parent directory (default name: model, data, ``cv`` and a hash
            of the arguments, so the same call finds the same directory and resumes it).
        reporter: progress of each fold run.
        **train_config: fields of :class:`archlab.TrainConfig`, the same for every fold.

    Returns:
        A :class:`CVResult`; ``cv_summary.json`` holds the same numbers.
    """
    bundle = as_bundle(data, data_options)
    train_config.setdefault("seed", seed)
    how = _FoldSettings(k, seed, stratify, groups, normalize, split)
    options = {"data_options": data_options, "task_options": task_options, "model_overrides": model_overrides}
    folds = kfold(bundle, k, seed=seed, stratify=stratify, groups=groups, normalize=normalize, split=split)
    arguments = _cv_arguments(model, bundle, task, how, options, train_config)
    path = group_dir("cv", model, bundle, arguments, out_dir, run_name)
    split = folds[0].info["fold"]["split"]
    log.info("cross-validation: %d %s folds of %d training samples in %s", k, split, len(bundle.train), path)
    members = [
        stacked.GroupMember(path / f"fold-{i}", fold, spec)
        for i, (fold, spec) in enumerate(zip(folds, _fold_specs(bundle, how, split, data_options)))
    ]
    trainer = _MemberTraining(model, task, task_options, model_overrides, reporter, train_config)
    metrics, done, results = _train_folds(trainer, path, members)
    sizes = [dict(f.info["split_sizes"]) for f in folds]
    extra = {"k": k, "split": split, "fold_sizes": sizes}
    ratios = fold_test_train_ratios(sizes, metrics[0] if metrics else {})
    dirs = [m.run_dir for m in members]
    return finish_group(CVResult, path, RunDir.CV_SUMMARY, dirs, metrics, done, results, extra, ratios)


@dataclass(frozen=True)
class _FoldSettings:
    """How :func:`cross_validate` makes its folds (see :func:`archlab.data.folds.kfold`)."""

    k: int
    seed: int
    stratify: bool
    groups: Sequence[Any] | None
    normalize: str
    split: str


@dataclass(frozen=True)
class _MemberTraining:
    """What every member run of a group is trained with (the data and directory are its own)."""

    model: nn.Module | str
    task: Any
    task_options: dict[str, Any] | None
    model_overrides: dict[str, Any] | None
    reporter: Reporter | None
    train_config: dict[str, Any]


def _cv_arguments(
    model: nn.Module | str,
    bundle: DataBundle,
    task: Any,
    how: _FoldSettings,
    options: dict[str, Any],
    train_config: dict[str, Any],
) -> dict[str, Any]:
    """``group.json``'s arguments (their hash names the default directory): the call as given."""
    groups = how.groups
    return {
        "model": _model_name(model),
        "data": bundle.name,
        "data_options": options["data_options"],
        "task": task if task is None or isinstance(task, str) else getattr(task, "name", str(task)),
        "task_options": options["task_options"],
        "model_overrides": options["model_overrides"],
        "k": how.k,
        "seed": how.seed,
        "stratify": how.stratify,
        "groups": None if groups is None else hashlib.sha1(json.dumps([str(g) for g in groups]).encode()).hexdigest(),
        "normalize": how.normalize,
        "split": how.split,
        "splitter": "sklearn",  # fold assignment by scikit-learn's splitters (older groups dealt their own)
        "train": train_config,
    }


def _fold_specs(
    bundle: DataBundle, how: _FoldSettings, split: str, data_options: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Each fold run's config.yaml ``data``: the dataset and how to rebuild the fold (``split``
    as the folds resolved it)."""
    # "grouped": groups are not saved, such a fold cannot be rebuilt
    fold_of = {
        "k": how.k,
        "seed": how.seed,
        "stratify": how.stratify,
        "normalize": how.normalize,
        "split": split,
        "splitter": "sklearn",
        "grouped": how.groups is not None,
    }
    return [{"name": bundle.name, "options": data_options or {}, "fold": {"index": i, **fold_of}} for i in range(how.k)]


def _train_folds(
    t: _MemberTraining, path: Path, members: list[stacked.GroupMember]
) -> tuple[list[dict[str, Any]], list[str], dict[int, RunResult]]:
    """Train the folds as one stack when they allow it, else one at a time; (final metrics, what
    was done, results by index) of every fold."""
    outcome = stacked.fit_members(
        t.model,
        t.task,
        members,
        group_dir=path,
        task_options=t.task_options,
        model_overrides=t.model_overrides,
        reporter=t.reporter,
        **t.train_config,
    )
    if outcome.stacked:
        return stacked.unpack(outcome)
    metrics, done, results = [], [], {}
    for i, member in enumerate(members):
        m, what, result = run_member(
            member.run_dir,
            t.model,
            member.data,
            t.task,
            t.reporter,
            task_options=t.task_options,
            model_overrides=t.model_overrides,
            data_spec=member.data_spec,
            **t.train_config,
        )
        log.info(
            "fold %d/%d %s: %s",
            i + 1,
            len(members),
            what,
            ", ".join(f"{key}={m[key]:.4g}" for key in ("val_accuracy", "test_accuracy") if key in m),
        )
        metrics.append(m)
        done.append(what)
        if result is not None:
            results[i] = result
    return metrics, done, results


def fold_test_train_ratios(sizes: list[dict[str, int]], metrics: dict[str, Any]) -> dict[str, float]:
    """Per metric, the mean over folds of ``n_test / n_train`` (Nadeau-Bengio's correction).

    A ``test_*`` metric is measured on the bundle's test split and a ``val_*`` one on the fold's
    validation part; other figures (steps, training loss) and empty parts get no ratio.
    """
    ratios = {}
    for name in metrics:
        part = "test" if name.startswith("test") else "val" if name.startswith("val") else None
        if part is None:
            continue
        each = [s[part] / s["train"] for s in sizes if s.get("train") and s.get(part)]
        if len(each) == len(sizes) and each:
            ratios[name] = sum(each) / len(each)
    return ratios
