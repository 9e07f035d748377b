"""The same run with N training seeds, reported as mean ± std; resumable seed by seed.

Layout: ``RUN/group.json``, ``RUN/seed-<s>/`` (one ordinary run per seed) and
``RUN/seeds_summary.json`` (per metric mean / std / 95% t-interval over the seeds). The data is
loaded once, so every seed sees the same train / val / test split and only the training seed
(initial weights, batch order, dropout) varies: the spread measured is the training's, not the
split's (use :func:`archlab.runs.cv.cross_validate` for the latter). The seeds train as one vmapped
stack when ``train.stack`` is auto and the model allows it (:mod:`archlab.runs.stacked`), else one
at a time; the directories are the same either way. Resume follows
:mod:`archlab.runs.cv`: finished seeds are skipped, an unfinished one continues from its checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from archlab.data.base import DataBundle
from archlab.errors import ConfigError
from archlab.rundir import RunDir
from archlab.runs.cv import GroupResult, finish_group, group_dir, run_member
from archlab.runs.stacked import GroupMember, fit_members, unpack
from archlab.runs.training import as_bundle
from archlab.train.progress import Reporter

log = logging.getLogger("archlab.runs")


@dataclass
class SeedsResult(GroupResult):
    """:class:`archlab.runs.cv.GroupResult` of a seed group; ``seeds`` in member order."""

    seeds: list[int] = field(default_factory=list)


def repeat_seeds(
    model: nn.Module | str,
    data: DataBundle | str,
    n: int = 3,
    task: Any = None,
    *,
    seeds: Sequence[int] | None = None,
    base_seed: int = 0,
    data_options: dict[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    out_dir: str | Path = "runs",
    run_name: str | None = None,
    reporter: Reporter | None = None,
    **train_config: Any,
) -> SeedsResult:
    """Train ``model`` on ``data`` with ``n`` seeds (``base_seed .. base_seed + n - 1``, or ``seeds``).

    >>> r = archlab.runs.seeds.repeat_seeds("mlp_tabular", "iris", n=5, max_steps=200)
    >>> r.mean_std("test_accuracy")

    Args:
        n: number of seeds (ignored when ``seeds`` is given).
        seeds: the training seeds themselves.
        Others: as :func:`archlab.runs.cv.cross_validate`; ``train_config`` must not hold ``seed``.
    """
    if "seed" in train_config:
        raise ConfigError("repeat_seeds sets the seed of each run; pass seeds=[...] or base_seed= instead of seed=")
    seeds = list(seeds) if seeds is not None else list(range(base_seed, base_seed + n))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one; got {seeds}")
    bundle = as_bundle(data, data_options)
    arguments = {
        "model": model if isinstance(model, str) else getattr(model, "registry_name", type(model).__name__),
        "data": bundle.name,
        "data_options": data_options,
        "task": task if task is None or isinstance(task, str) else getattr(task, "name", str(task)),
        "task_options": task_options,
        "model_overrides": model_overrides,
        "seeds": seeds,
        "train": train_config,
    }
    path = group_dir("seeds", model, bundle, arguments, out_dir, run_name)
    spec = {"name": bundle.name, "options": data_options or {}}
    dirs, metrics, done, results = [path / f"seed-{s}" for s in seeds], [], [], {}
    members = [GroupMember(d, bundle, spec, {"seed": s}) for d, s in zip(dirs, seeds)]
    common = {"task_options": task_options, "model_overrides": model_overrides, "reporter": reporter}
    outcome = fit_members(model, task, members, group_dir=path, **common, **train_config)
    if outcome.stacked:
        metrics, done, results = unpack(outcome)
    for i, s in enumerate(seeds if not outcome.stacked else []):
        member = path / f"seed-{s}"
        m, what, result = run_member(
            member,
            model,
            bundle,
            task,
            reporter,
            task_options=task_options,
            model_overrides=model_overrides,
            data_spec=spec,
            seed=s,
            **train_config,
        )
        log.info("seed %d (%d/%d) %s", s, i + 1, len(seeds), what)
        metrics.append(m)
        done.append(what)
        if result is not None:
            results[i] = result
    return finish_group(SeedsResult, path, RunDir.SEEDS_SUMMARY, dirs, metrics, done, results, {"seeds": seeds})
