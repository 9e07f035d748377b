"""The design search: an Optuna study over the advisor's families, their size and the recipe.

Define-by-run (Akiba et al. 2019, "Optuna: A Next-generation Hyperparameter Optimization
Framework"): each trial picks a family (the advisor's presets, sized to the budgets), a width
(the fitted size or half of it), a learning rate around the family's range-test rate, a weight
decay and a batch size, then trains an ordinary run directory under ``trials/``. TPE proposes
the trials after the first ones; the first trials are the advisor's presets in rank order with
the default recipe (``enqueue_trial``), so the advisor's ranking is the prior, not the answer.

Budget. Time is turned into steps before the study starts (:class:`SearchPlan`): every trial of
a family has the same ``max_steps``, and the successive-halving pruner (Li et al. 2020, ASHA)
stops a trial at a rung (a third, a ninth of its steps; or after its first fold under
cross-validation) when it is behind the trials that reached that rung. A family that fails gets
its first rung and no more. Trials are taken while the seconds the study has spent training
(summed over trials, whichever worker ran them) are under the search's share of the budget.

Storage. The study lives in an Optuna storage: by default ``study.db`` (SQLite) in the design
directory; ``storage=URL`` puts it in a database server (PostgreSQL) that other workers join
(:func:`join_study`). The plan, the design directory and the arguments are the study's user
attributes, so a worker needs only the URL and the study name. Run directories live under the
design directory, which every worker must see.

Kills. A trial's run directory is named by the trial that first ran it. When the design is
resumed, the trials this design's own process left RUNNING are marked FAIL and enqueued again
with ``retry_of``: the new trial resumes the old run directory from its last checkpoint, and
only the new trial counts. Workers that die are found by Optuna's heartbeat and retried the
same way.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archlab.data.base import DataBundle
from archlab.errors import ArchlabError, ConfigError, require
from archlab.rundir import DesignDir
from archlab.train.progress import Reporter, Reporters
from archlab.train.task_protocol import Selection

log = logging.getLogger("archlab.runs.search")

#: successive halving: a rung every ``REDUCTION`` x fewer steps, ``RUNGS`` rungs below the top
REDUCTION, RUNGS = 3, 2
#: fewest steps at a rung: a model compared after fewer steps is judged on its initialisation
MIN_RUNG = 10
#: the most trials one study takes, whatever the budget
MAX_TRIALS = 60
OWNER = "owner"


@dataclass
class FamilyPlan:
    """What every trial of one preset shares, fixed before the first trial runs."""

    name: str
    family: str
    rank: int
    overrides: dict[str, Any]
    data_options: dict[str, Any]
    params: int | None
    latency_ms: float | None
    lr: float
    lr_note: str
    seconds_per_step: float
    overhead_s: float
    max_steps: int
    eval_every: int
    #: the precision the family's steps were measured in; every trial of it runs in it
    precision: str = "auto"


@dataclass
class SearchPlan:
    """The study's fixed part: families, metric, budget (``design.json`` and the study's attributes)."""

    families: list[FamilyPlan]
    metric: str
    mode: str
    budget_s: float
    batch_size: int
    seed: int
    folds: int | None
    train: dict[str, Any] = field(default_factory=dict)
    #: (H, W) of image inputs of a classification task: the search then tries augmentation
    image_hw: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchPlan:
        return cls(**{**d, "families": [FamilyPlan(**f) for f in d["families"]]})

    def family(self, name: str) -> FamilyPlan:
        return next(f for f in self.families if f.name == name)

    @property
    def selection(self) -> Selection:
        return Selection(self.metric.removeprefix("val_"), self.mode)  # type: ignore[arg-type]


@dataclass
class TrialRow:
    """One trial as the design's table and report show it."""

    number: int
    state: str  # complete, pruned, failed, running
    name: str
    family: str
    params: dict[str, Any]
    value: float | None
    steps: int | None
    seconds: float | None
    run_dir: str | None
    rung: int | None
    retry_of: int | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def optuna():
    """The optuna module, or MissingExtraError naming archlab[search]."""
    return require("optuna", "search", "the design search")


# ------------------------------------------------------------------------------- storage
def storage_for(url: str, heartbeat: bool = True) -> Any:
    """An Optuna RDB storage (SQLite file or a database server) with a heartbeat, so trials of a
    worker that died are failed and retried by another (its ``run_dir`` attribute goes with the
    retry, so the run directory is resumed)."""
    opt = optuna()
    kwargs: dict[str, Any] = {}
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", opt.exceptions.ExperimentalWarning)
            retry = opt.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        kwargs = dict(heartbeat_interval=20, grace_period=90, heartbeat_stale_trial_callback=retry)
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", opt.exceptions.ExperimentalWarning)
            return opt.storages.RDBStorage(url, **kwargs)
    except Exception as exc:
        raise ConfigError(f"cannot open the study storage {url!r}: {type(exc).__name__}: {exc}") from None


def create_study(storage: Any, name: str, plan: SearchPlan, attrs: dict[str, Any]) -> Any:
    """A new study (or the one of that name, when resuming) holding the plan in its attributes."""
    opt = optuna()
    sampler = opt.samplers.TPESampler(seed=plan.seed, n_startup_trials=max(4, len(plan.families)))
    study = opt.create_study(
        storage=storage,
        study_name=name,
        direction="maximize" if plan.mode == "max" else "minimize",
        sampler=sampler,
        pruner=_pruner(plan),
        load_if_exists=True,
    )
    if "plan" not in study.user_attrs:
        study.set_user_attr("plan", plan.to_dict())
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        for f in sorted(plan.families, key=lambda f: f.rank):  # the advisor's ranking as the prior
            study.enqueue_trial(_default_params(f), user_attrs={"prior": True})
    return study


def load_study(storage: Any, name: str) -> Any:
    """An existing study with its plan; ConfigError naming the studies there when it is missing."""
    opt = optuna()
    try:
        study = opt.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in opt.get_all_study_summaries(storage)]
        raise ConfigError(f"no study {name!r} in that storage; it holds {names or 'none'}") from None
    plan = SearchPlan.from_dict(study.user_attrs["plan"])
    return opt.load_study(study_name=name, storage=storage, sampler=opt.samplers.TPESampler(), pruner=_pruner(plan))


def _pruner(plan: SearchPlan) -> Any:
    opt = optuna()
    if plan.folds:
        return opt.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION)
    shortest = min(f.max_steps for f in plan.families)
    if shortest < MIN_RUNG * REDUCTION:  # a budget this small leaves nothing to judge a rung on
        return opt.pruners.NopPruner()
    first = max(shortest // REDUCTION**RUNGS, MIN_RUNG)
    return opt.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=REDUCTION)


def _default_params(f: FamilyPlan) -> dict[str, Any]:
    return {"family": f.name, "width": 1.0, "lr_mult": 1.0, "weight_decay": 1e-4, "batch_mult": 1.0}


def retry_stale(study: Any, worker: str = OWNER) -> list[int]:
    """Retry the trials ``worker`` left unfinished: RUNNING (the process was killed) or FAIL
    without an error of their own (interrupted with Ctrl-C). Each is enqueued again with its run
    directory and ``retry_of``, so a new trial resumes that directory and the run is counted once."""
    opt = optuna()
    trials = study.get_trials(deepcopy=False)
    handed_on = {t.user_attrs.get("retry_of") for t in trials}
    retried = []
    for t in trials:
        attrs = t.user_attrs
        if t.state.name not in ("RUNNING", "FAIL") or attrs.get("worker") != worker:
            continue
        if attrs.get("error") or t.number in handed_on:
            continue
        if t.state.name == "RUNNING":
            study._storage.set_trial_state_values(t._trial_id, state=opt.trial.TrialState.FAIL)
        keep = {k: attrs[k] for k in ("run_dir", "prior") if k in attrs}
        study.enqueue_trial(t.params, user_attrs={**keep, "retry_of": t.number})
        retried.append(t.number)
    if retried:
        log.info("design search: trials %s were stopped before they finished; they resume", retried)
    return retried


# ------------------------------------------------------------------------------- one trial
class _Prune(Reporter):
    """Feeds the evaluation records a run writes to the pruner; when told to prune, asks the
    engine to stop the run there (it finishes as an early-stopped run: an ordinary run
    directory with final metrics) and remembers why.

    Under cross-validation a rung is a fold: after each fold the mean so far is reported."""

    def __init__(self, trial: Any, key: str, folds: bool):
        self.trial, self.key, self.folds = trial, key, folds
        self.fold_values: list[float] = []
        self.rung: int | None = None
        self.pruned: str | None = None

    def record(self, rec: dict[str, Any]) -> None:
        kind = "final" if self.folds else "eval"
        if self.pruned or rec.get("kind") != kind or not isinstance(rec.get(self.key), (int, float)):
            return
        if self.folds:
            self.fold_values.append(float(rec[self.key]))
            step, value = len(self.fold_values), sum(self.fold_values) / len(self.fold_values)
        else:
            step, value = int(rec["step"]), float(rec[self.key])
        if not math.isfinite(value):
            return
        self.trial.report(value, step)
        self.rung = step
        if self.trial.should_prune():
            self.pruned = f"{self.key} {value:.4g} at {'fold' if self.folds else 'step'} {step}"
            if self.folds:  # the folds left are not trained
                raise optuna().TrialPruned(self.pruned)

    def stop_requested(self) -> bool:
        return self.pruned is not None


def trial_config(trial: Any, plan: SearchPlan) -> tuple[FamilyPlan, dict[str, Any], dict[str, Any]]:
    """The trial's family, model overrides and training config (define-by-run)."""
    from archlab.advise.knobs import apply, knobs_for
    from archlab.registry import get_entry

    f = plan.family(trial.suggest_categorical("family", [f.name for f in plan.families]))
    width = trial.suggest_categorical("width", [0.5, 1.0])
    lr_mult = trial.suggest_float("lr_mult", 0.1, 3.0, log=True)
    wd = trial.suggest_float("weight_decay", 1e-6, 0.1, log=True)
    batch_mult = trial.suggest_categorical("batch_mult", [0.5, 1.0, 2.0])
    overrides = dict(f.overrides)
    entry = get_entry(f.name)
    if "dropout" in entry.config.model_fields:
        overrides["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
    if width != 1.0:
        base = {**entry.defaults, **overrides}
        knobs = knobs_for(entry, base)
        scaled = apply(knobs, base, width, 1.0, entry.family)
        overrides.update({k.field: scaled[k.field] for k in knobs if k.role == "width" and k.field in scaled})
    train = {
        "lr": f.lr * lr_mult,
        "weight_decay": wd,
        "batch_size": max(2, int(round(plan.batch_size * batch_mult))),
        "seed": plan.seed,
        "max_steps": f.max_steps,
        "eval_every": f.eval_every,
        "precision": f.precision,
        **plan.train,
    }
    if plan.image_hw and "augment" not in plan.train:
        train["augment"] = _augment(trial.suggest_categorical("augment", ["none", "crop", "crop+mixup"]), plan.image_hw)
    return f, overrides, train


def _augment(choice: str, hw: list[int]) -> dict[str, Any] | None:
    """Batch augmentation of image classification (no flips: they change what digits and text mean)."""
    if choice == "none":
        return None
    pad = 1 if max(hw) <= 16 else 4  # an eighth of a small image, 4 pixels of a larger one
    return {"crop_padding": pad, **({"mixup_alpha": 0.2} if "mixup" in choice else {})}


@dataclass
class TrialContext:
    """What a worker needs to run trials: the plan, the data, where runs go, who it is."""

    plan: SearchPlan
    root: Path
    bundle_for: Callable[[FamilyPlan], DataBundle]
    data_spec_for: Callable[[FamilyPlan], dict[str, Any]]
    task: str | None
    worker: str = OWNER
    reporter: Reporter | None = None
    tell: Callable[[str], None] = lambda line: None


def run_trial(trial: Any, ctx: TrialContext) -> float:
    """Train one trial's run directory; its validation metric (the fold mean under CV)."""
    from archlab.runs.cv import cross_validate, run_member

    plan = ctx.plan
    f, overrides, train = trial_config(trial, plan)
    failed = _failed_before(trial.study, f.name)
    if failed is not None:  # a family that cannot train on this data fails the same way every time
        raise optuna().TrialPruned(f"{f.name} failed in trial {failed}; not tried again")
    # a retry resumes its origin's run directory
    run_dir = trial.user_attrs.get("run_dir") or f"{DesignDir.TRIALS}/t{trial.number:03d}"
    trial.set_user_attr("worker", ctx.worker)
    trial.set_user_attr("run_dir", run_dir)
    trial.set_user_attr("steps", f.max_steps)
    pruner = _Prune(trial, plan.metric, bool(plan.folds))
    reporter = Reporters(ctx.reporter, pruner)
    ctx.tell(f"trial {trial.number}: {f.name} width {trial.params['width']} lr {train['lr']:.2g} ({run_dir})")
    t0 = time.perf_counter()
    try:
        if plan.folds:
            cv = cross_validate(
                f.name, ctx.bundle_for(f), ctx.task, k=plan.folds, seed=train.pop("seed"),
                data_options=ctx.data_spec_for(f)["options"], model_overrides=overrides,
                out_dir=ctx.root / DesignDir.TRIALS, run_name=Path(run_dir).name, reporter=reporter, **train,
            )  # fmt: skip
            value = cv.summary.get(plan.metric, {}).get("mean")
        else:
            metrics, _, _ = run_member(
                ctx.root / run_dir, f.name, ctx.bundle_for(f), ctx.task, reporter,
                model_overrides=overrides, data_spec=ctx.data_spec_for(f), **train,
            )  # fmt: skip
            value = metrics.get(plan.metric)
    finally:
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        trial.set_user_attr("rung", pruner.rung)
    if pruner.pruned:
        raise optuna().TrialPruned(pruner.pruned)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArchlabError(f"{f.name} ended without a finite {plan.metric}")
    return float(value)


# ------------------------------------------------------------------------------- the worker loop
def _failed_before(study: Any, family: str) -> int | None:
    """The number of a trial of ``family`` that failed with an error of its own, if any."""
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "FAIL" and t.user_attrs.get("error") and t.params.get("family") == family:
            return t.number
    return None


def spent_s(study: Any) -> float:
    """Seconds of training the study has used, over every worker's finished and running trials."""
    return sum(float(t.user_attrs.get("seconds") or 0.0) for t in study.get_trials(deepcopy=False))


def work(study: Any, ctx: TrialContext, max_trials: int = MAX_TRIALS) -> int:
    """Take trials from ``study`` until the budget or ``max_trials`` is spent; trials run here."""
    opt = optuna()
    done = 0

    def objective(trial: Any) -> float:
        try:
            return run_trial(trial, ctx)
        except opt.TrialPruned:
            raise
        except Exception as exc:  # a preset that cannot train on this data: the trial fails, the study goes on
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            trial.set_user_attr("error", error)
            if isinstance(exc, ArchlabError):
                raise
            raise ArchlabError(f"trial {trial.number} failed: {error}") from exc

    def stop_when_spent(study: Any, trial: Any) -> None:
        nonlocal done
        done += 1
        row = trial_row(trial)
        value = "" if row.value is None else f" {ctx.plan.metric} {row.value:.4g}"
        ctx.tell(f"trial {row.number} {row.state}: {row.name}{value} ({row.seconds or 0:.0f} s)")
        counted = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and not _retried(t)]
        every_family_failed = all(_failed_before(study, f.name) is not None for f in ctx.plan.families)
        if (spent_s(study) >= ctx.plan.budget_s and not _owed(study)) or len(counted) >= max_trials:
            study.stop()
        elif every_family_failed:
            study.stop()

    if spent_s(study) < ctx.plan.budget_s or _owed(study):
        study.optimize(objective, callbacks=[stop_when_spent], catch=(ArchlabError,), gc_after_trial=True)
    return done


def _owed(study: Any) -> bool:
    """Trials that run whatever the budget: each family's first (to its first rung at least) and
    the retries of trials that a kill stopped."""
    return any(
        t.state.name == "WAITING" and (t.user_attrs.get("prior") or "retry_of" in t.user_attrs)
        for t in study.get_trials(deepcopy=False)
    )


def _retried(t: Any) -> bool:
    """A trial that was stopped and handed to a new trial (by a resume, or Optuna's heartbeat)."""
    return t.state.name == "FAIL" and not t.user_attrs.get("error")


def trial_row(t: Any) -> TrialRow:
    """A finished or running trial as a row of the design's table."""
    state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}.get(
        t.state.name, t.state.name.lower()
    )
    value = t.value
    if value is None and t.intermediate_values:  # pruned: its last reported value
        value = t.intermediate_values[max(t.intermediate_values)]
    return TrialRow(
        number=t.number,
        state=state,
        name=str(t.params.get("family", "")),
        family="",
        params={k: v for k, v in t.params.items() if k != "family"},
        value=value,
        steps=t.user_attrs.get("steps"),
        seconds=t.user_attrs.get("seconds"),
        run_dir=t.user_attrs.get("run_dir"),
        rung=t.user_attrs.get("rung"),
        retry_of=t.user_attrs.get("retry_of"),
        error=t.user_attrs.get("error") or (None if state != "failed" else "stopped and retried"),
    )


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the complete trials; {} with too few of them."""
    opt = optuna()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == opt.trial.TrialState.COMPLETE]
    if len(complete) < 3:
        return {}
    try:
        with warnings.catch_warnings():  # "few trials in a regime": the figures say what they can
            warnings.simplefilter("ignore", UserWarning)
            values = opt.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:  # e.g. every trial with the same parameters
        log.info("design search: no parameter importances (%s)", exc)
        return {}
    return {k: round(float(v), 4) for k, v in values.items()}


def worker_id() -> str:
    """A name for a joining worker: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"
