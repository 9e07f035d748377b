"""``archlab.advise``: from data and budgets to a trained, measured, exported model and its report.

The pipeline, one step at a time, every result written into the design directory::

    inspect    read the data (modality, task, sizes); how trials are compared    design.json
    recommend  rank registry presets with the advisor (the search's prior)       recommendation.json
    autosize   size the top presets to the budgets                               sized.json
    baselines  the baselines a user would try first, on the same split          design.json
    search     an Optuna study: family x width x recipe, successive halving      study.db, trials/tNNN/
    select     the best trial on the task's selection metric                     design.json
    winner     train the winning configuration for the rest of the budget        winner/
    benchmark  latency and throughput of the winner                              bench.json
    export     ONNX export with a parity check against eager                     export/, export.json
    report     the design report (six deliverables + why this model)             report.html

The search is :mod:`archlab.runs.search` (its docstring says how the budget, the pruner, the
storage and the workers work); the steps are :mod:`archlab.runs.design_steps`.

Time budget. ``budget_s`` is the time of the training runs: the search has ``candidate_share``
of it (seconds of training summed over its trials, whichever worker ran them), the winner what
is left. By default the share is half; with cross-validated trials (small data) the winner
trains exactly as its trial did (one run, about ``1 / (k - 1)`` of a trial's time), so the
search gets the rest of the budget. Time is turned into step counts before any run starts (each family's seconds per step
are measured in a scratch run), so a resumed design trains exactly what it planned. Advice,
baselines, benchmark, export and the report are not in the budget; ``design.json`` records each
step's seconds.

Small data. With fewer than :data:`MIN_VAL` validation samples a trial is judged by k-fold
cross-validation on the training split (forward-chaining folds for a series) rather than by a
handful of validation samples.

Resume. ``design.json`` is rewritten atomically after every step; a design killed at any
moment and started again with :func:`resume_design` (``archlab design --resume DIR``) skips
finished steps, retries the trials its process left running (each resumes its run directory)
and continues the study.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.data.base import DataBundle
from archlab.display import NotebookDisplay
from archlab.errors import ConfigError
from archlab.rundir import DesignDir
from archlab.runs.design_budget import RECIPE
from archlab.runs.design_steps import (
    MIN_VAL,
    OPTIONAL,
    STEP_FNS,
    STEPS,
    DesignState,
    Progress,
    SearchPlan,
    new_manifest,
    pareto_front,
    trial_context,
)
from archlab.runs.training import as_bundle
from archlab.train import TrainConfig
from archlab.train.progress import Reporter

log = logging.getLogger("archlab.runs.design")


@dataclass
class DesignResult(NotebookDisplay):
    """A finished design: where everything is, and the manifest's main facts.

    Attributes:
        dir: the design directory.
        winner: the chosen registry preset.
        why: one line on why it was chosen.
        run_dir: the winner's run directory.
        report: ``report.html`` (None if the report failed; ``manifest`` says why).
        manifest: ``design.json`` as written.
    """

    dir: Path
    winner: str | None
    why: str
    run_dir: Path | None
    report: Path | None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """The network against the baselines, in one line ("" without a baseline)."""
        return (self.manifest["steps"]["winner"].get("result") or {}).get("verdict", "")

    @property
    def test_metrics(self) -> dict[str, float]:
        """The winner's test metrics."""
        m = (self.manifest["steps"]["winner"].get("result") or {}).get("metrics") or {}
        return {k: v for k, v in m.items() if k.startswith("test_") and isinstance(v, (int, float))}


# ------------------------------------------------------------------------------- entry points
def design(
    data: DataBundle | str,
    *,
    out_dir: str | Path,
    task: str | None = None,
    latency_ms: float | None = None,
    params_max: int | None = None,
    memory_mb: float | None = None,
    budget_s: float = 120.0,
    candidates: int = 3,
    candidate_share: float | None = None,
    folds: int = 3,
    seed: int = 0,
    train: dict[str, Any] | None = None,
    data_options: dict[str, Any] | None = None,
    report_options: dict[str, Any] | None = None,
    storage: str | None = None,
    study: str | None = None,
    progress: Progress | None = None,
    reporter: Reporter | None = None,
) -> DesignResult:
    """Design a model for ``data`` within the budgets, end to end, into ``out_dir``.

    >>> res = archlab.design("digits", out_dir="runs/design", latency_ms=2, budget_s=60)
    >>> res.winner, res.why, res.test_metrics, res.report

    Args:
        data: a dataset name or path (recorded, so that ``resume_design`` reloads it) or a DataBundle.
        out_dir: the design directory (a finished or partial design there is an error: resume it).
        task: the task when the data serves several.
        latency_ms, params_max, memory_mb: budgets every candidate is sized to (see ``autosize``).
        budget_s: seconds of training in all (see the module docstring).
        candidates: how many of the advisor's top presets are sized and trained.
        candidate_share: the part of ``budget_s`` the search has (default: see the module docstring).
        folds: k of the cross-validation used when validation is small (< ``MIN_VAL`` samples).
        seed: the one training seed of every run.
        train: training-config fields on top of :data:`RECIPE` (the same for every run).
        report_options: options of :func:`archlab.report.document.build_report`.
        storage, study: the Optuna storage URL (e.g. ``postgresql+psycopg://user@host/db``) and study
            name of the search, so that other workers can join it (:func:`join_design`); default a
            SQLite file ``study.db`` in ``out_dir`` and the study ``design``.
        progress: called with each step event (the CLI shows them; the library also logs them).
        reporter: receives the progress of each training run.

    Raises:
        ConfigError: bad arguments, a directory already holding a design, no candidate within budget.
    """
    path = Path(out_dir)
    _check_new_design(path, data, train, budget_s, candidates, candidate_share, folds)
    data_options = loader_options(data, task, data_options)
    bundle = as_bundle(data, data_options)
    arguments = {
        "data": str(data) if not isinstance(data, DataBundle) else bundle.name,
        "data_options": data_options,
        "task": task,
        "latency_ms": latency_ms,
        "params_max": params_max,
        "memory_mb": memory_mb,
        "budget_s": float(budget_s),
        "candidates": candidates,
        "candidate_share": candidate_share,
        "folds": folds,
        "seed": seed,
        "train": train,
        "report_options": report_options,
        "search": {"storage": storage, "study": study or "design"},
    }
    path.mkdir(parents=True, exist_ok=True)
    d = DesignState(path, new_manifest(arguments), bundle, progress, reporter)
    d.save()
    return _run(d)


def _check_new_design(
    path: Path,
    data: Any,
    train: dict[str, Any] | None,
    budget_s: float,
    candidates: int,
    candidate_share: float | None,
    folds: int,
) -> None:
    """Refuse, before anything is loaded or written, what :func:`design` cannot start: a bad
    budget or count, a directory already holding a design, data of another type, a bad
    training key (an error now, not a failed candidate later)."""
    share_ok = candidate_share is None or 0 < candidate_share < 1
    if budget_s <= 0 or candidates < 1 or not share_ok or folds < 2:
        raise ConfigError(
            "design: expected budget_s > 0, candidates >= 1, 0 < candidate_share < 1, folds >= 2; "
            f"got budget_s={budget_s}, candidates={candidates}, candidate_share={candidate_share}, folds={folds}"
        )
    if DesignDir(path).manifest_path.is_file():
        raise ConfigError(
            f"{path} already holds a design; resume it (archlab design --resume {path}) or pick another -o"
        )
    if not isinstance(data, (str, Path, DataBundle)):
        raise ConfigError(f"design: data must be a dataset name, a path or a DataBundle; got {type(data).__name__}")
    if train:
        TrainConfig.build({**RECIPE, **train})


def resume_design(
    out_dir: str | Path,
    data: DataBundle | None = None,
    *,
    progress: Progress | None = None,
    reporter: Reporter | None = None,
) -> DesignResult:
    """Continue the design in ``out_dir``: finished steps are skipped, unfinished runs resume.

    Args:
        data: the DataBundle, when the design was started from one (names are reloaded).
    """
    path = Path(out_dir)
    manifest_path = DesignDir(path).manifest_path
    if not manifest_path.is_file():
        raise ConfigError(f"--resume expects a design directory holding {DesignDir.MANIFEST}; {path} has none")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    args = manifest["arguments"]
    bundle = data if data is not None else as_bundle(args["data"], args.get("data_options"))
    return _run(DesignState(path, manifest, bundle, progress, reporter))


def loader_options(data: Any, task: str | None, options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The loader options, with the task a user named passed on to a file's loader (a CSV or
    array file reads its target as classes or values by it)."""
    from archlab.data.bundled import is_bundled_name

    if task is None or not isinstance(data, (str, Path)) or is_bundled_name(str(data)):
        return options
    if Path(data).suffix.lower() not in (".csv", ".tsv", ".npz") or "task" in (options or {}):
        return options
    return {**(options or {}), "task": task}


def join_design(storage: str, study: str, *, progress: Progress | None = None, reporter: Reporter | None = None) -> int:
    """Work on a design's search from another process or machine: take trials from the study
    ``study`` in ``storage`` until its budget is spent. The design directory recorded in the
    study must be reachable here (a shared file system). Returns how many trials ran here.
    """
    from archlab.runs.search import load_study, storage_for, work, worker_id

    st = load_study(storage_for(storage), study)
    path = Path(st.user_attrs["design_dir"])
    manifest_path = DesignDir(path).manifest_path
    if not manifest_path.is_file():
        raise ConfigError(f"the study's design directory {path} is not reachable from here (no {DesignDir.MANIFEST})")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    args = manifest["arguments"]
    d = DesignState(path, manifest, as_bundle(args["data"], args.get("data_options")), progress, reporter, write=False)
    plan = SearchPlan.from_dict(st.user_attrs["plan"])
    return work(st, trial_context(d, plan, worker=worker_id()))


def _run(d: DesignState) -> DesignResult:
    """Every step not yet done, in order; ``design.json`` saved before and after each.

    A step that raises is recorded as failed (its partial result kept) and the error goes on up,
    except benchmark and export: their failure is recorded and the report says what is missing.
    """
    for name in STEPS:
        st = d.step(name)
        if st["state"] == "done":
            d.tell(name, "skipped", "done in an earlier call")
            continue
        d.tell(name, "start")
        st.update(state="running", started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        st.pop("error", None)
        d.save()
        t0 = time.perf_counter()
        try:
            st["result"] = STEP_FNS[name](d)
            st["state"] = "done"
        except Exception as exc:
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
            if name not in OPTIONAL:
                st.update(state="failed", error=error)
                d.save()
                raise
            st.update(state="done", result=None, error=error)
            log.warning("design: %s failed, the design goes on: %s", name, st["error"])
        st["elapsed_s"] = round(st.get("elapsed_s", 0.0) + time.perf_counter() - t0, 3)
        d.save()
        d.tell(name, "done", st.get("error", ""))
    sel = d.result("select")
    rep = d.result("report")
    return DesignResult(
        dir=d.path,
        winner=sel.get("winner"),
        why=sel.get("why", ""),
        run_dir=d.path / DesignDir.WINNER,
        report=d.path / rep["file"] if rep.get("file") else None,
        manifest=d.m,
    )


__all__ = ["DesignResult", "MIN_VAL", "RECIPE", "STEPS", "design", "join_design", "pareto_front", "resume_design"]
