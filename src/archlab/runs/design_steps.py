"""The steps of ``archlab design`` (:mod:`archlab.runs.design`): each reads what the steps
before it left in ``design.json`` and returns its own JSON-able result.

:class:`DesignState` carries the manifest from step to step and writes it atomically
(``save``); it also keeps the time budget (``spend``, ``budget_left_s``) and tells the caller's
progress callback and the log where the design is (``tell``).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab.data.base import DataBundle
from archlab.errors import ArchlabError, ConfigError
from archlab.io import atomic_write_json
from archlab.report.choice import CandidateRow
from archlab.rundir import DesignDir
from archlab.runs.adapt import build_model
from archlab.runs.cost import choose_run_precision
from archlab.runs.cv import run_member
from archlab.runs.design_budget import (
    CALIBRATION_MIN_S,
    CALIBRATION_SHARE,
    MAX_STEPS,
    RECIPE,
    search_seconds,
    starting_lr,
    steps_for,
)
from archlab.runs.search import (
    MIN_RUNG,
    OWNER,
    REDUCTION,
    RUNGS,
    FamilyPlan,
    SearchPlan,
    TrialContext,
    create_study,
    importances,
    optuna,
    retry_stale,
    spent_s,
    storage_for,
    trial_config,
    trial_row,
    work,
)
from archlab.tasks import get_task
from archlab.train import TrainConfig, train_model
from archlab.train.task_protocol import Selection, selection_of

log = logging.getLogger("archlab.runs.design")

SCHEMA_VERSION = 1
STEPS = (
    "inspect", "recommend", "autosize", "baselines", "search", "select", "winner", "benchmark", "export", "report",
)  # fmt: skip
#: below this many validation samples candidates are compared by k-fold CV
MIN_VAL = 50
#: fewest training windows the first forward-chaining fold of a series may have
MIN_FOLD_TRAIN = 20

#: ``progress(event)``: ``{"step", "index", "total", "state", "budget_left_s", "detail"}``
Progress = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------------- the manifest
class DesignState:
    """The state a design carries from step to step; ``save`` writes ``design.json`` atomically."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        bundle: DataBundle,
        progress: Progress | None,
        reporter: Any,
        write: bool = True,
    ):
        self.path, self.m, self.bundle, self.write = path, manifest, bundle, write
        self.progress, self.reporter = progress, reporter
        self.args = manifest["arguments"]
        self._bundles: dict[str, DataBundle] = {}

    def options_for(self, c: dict[str, Any]) -> dict[str, Any]:
        """The loader options of candidate ``c``: the user's, plus the layout its family reads
        (the advisor's ``data_options``, e.g. ``{"layout": "sequence"}`` for an RNN on a signal)."""
        return {**(self.args.get("data_options") or {}), **(c.get("data_options") or {})}

    def bundle_for(self, c: dict[str, Any]) -> DataBundle:
        """The data as candidate ``c`` reads it (loaded once per distinct set of options)."""
        if not c.get("data_options") or not isinstance(self.args.get("data"), str):
            return self.bundle
        from archlab.runs.training import as_bundle

        options = self.options_for(c)
        key = json.dumps(options, sort_keys=True)
        if key not in self._bundles:
            self._bundles[key] = as_bundle(self.args["data"], options)
        return self._bundles[key]

    def data_spec_for(self, c: dict[str, Any]) -> dict[str, Any]:
        """config.yaml's ``data`` for candidate ``c``: evaluate / predict reload it the same way."""
        return {"name": self.args["data"], "options": self.options_for(c)}

    def save(self) -> None:
        """Write ``design.json`` (atomically: a kill leaves the previous version or this one); a
        worker that joined another's design writes nothing of it."""
        if self.write:
            atomic_write_json(self.path / DesignDir.MANIFEST, self.m)

    def step(self, name: str) -> dict[str, Any]:
        return self.m["steps"][name]

    def result(self, name: str) -> dict[str, Any]:
        return self.m["steps"][name].get("result") or {}

    @property
    def budget_left_s(self) -> float:
        return max(0.0, self.args["budget_s"] - self.m["budget"]["spent_s"])

    def spend(self, seconds: float) -> None:
        self.m["budget"]["spent_s"] = round(self.m["budget"]["spent_s"] + seconds, 3)

    def tell(self, name: str, state: str, detail: str = "") -> None:
        """Log a step event and pass it to the progress callback (``state``: start, progress,
        skipped, done)."""
        event = {
            "step": name,
            "index": STEPS.index(name) + 1,
            "total": len(STEPS),
            "state": state,
            "budget_left_s": round(self.budget_left_s, 1),
            "detail": detail,
        }
        log.info("design step %d/%d %s %s%s", event["index"], len(STEPS), name, state, f": {detail}" if detail else "")
        if self.progress is not None:
            self.progress(event)


def new_manifest(arguments: dict[str, Any]) -> dict[str, Any]:
    """A fresh ``design.json``: the arguments (what resume reruns with), the budget, every step pending."""
    return {
        "schema_version": SCHEMA_VERSION,
        "arguments": arguments,
        "budget": {"budget_s": arguments["budget_s"], "spent_s": 0.0},
        "steps": {name: {"state": "pending"} for name in STEPS},
    }


# ------------------------------------------------------------------------------- steps
def _inspect(d: DesignState) -> dict[str, Any]:
    from archlab.advise import inspect_data

    facts = inspect_data(d.bundle, d.args.get("task"))
    folds, selection = _selection_split(d)
    return {
        "facts": facts.to_dict(),
        "splits": {k: len(v) for k, v in d.bundle.splits().items()},
        "selection": selection,
        "cv_folds": folds,
    }


def _selection_split(d: DesignState) -> tuple[int | None, str]:
    """(k folds or None, in words) what trials are compared on: the validation split, or k-fold
    cross-validation on the training split when validation is small; forward-chaining folds for
    time-ordered data, as many as leave each fold :data:`MIN_FOLD_TRAIN` training windows."""
    from archlab.data.folds import time_ordered, window_gap

    val = 0 if d.bundle.val is None else len(d.bundle.val)
    if val >= MIN_VAL:
        return None, f"the validation split ({val} samples)"
    if not d.bundle.train.indexable:  # node classification: one graph, its nodes masked into splits
        return None, f"the validation nodes ({val}): the graph is one sample, so folds cannot split it"
    k, n = d.args["folds"], len(d.bundle.train)
    if not time_ordered(d.bundle):
        return (
            k,
            f"{k}-fold cross-validation on the training split: the validation split has {val} samples (< {MIN_VAL})",
        )
    gap = window_gap(d.bundle)
    fits = [j for j in range(k, 1, -1) if n // (j + 1) - gap >= MIN_FOLD_TRAIN]
    if not fits:
        return None, (
            f"the validation split ({val} samples, < {MIN_VAL}): {n} time-ordered training windows are too few "
            f"for forward-chaining folds with a gap of {gap}"
        )
    return fits[0], (
        f"{fits[0]} forward-chaining folds on the training split (a gap of {gap} windows): the validation split "
        f"has {val} samples (< {MIN_VAL})"
    )


def _recommend(d: DesignState) -> dict[str, Any]:
    from archlab.advise import recommend

    # Ranked without budgets (no latency measured for every preset); the top ones are sized next.
    rec = recommend(d.bundle, task=d.args.get("task"), top=d.args["candidates"])
    out = rec.to_dict()
    atomic_write_json(d.path / DesignDir.RECOMMENDATION, out)
    return {"candidates": [c.name for c in rec.candidates], "recommendation": DesignDir.RECOMMENDATION}


def _budgets(args: dict[str, Any]) -> dict[str, Any]:
    keys = ("params_max", "latency_ms", "memory_mb")
    return {k: args[k] for k in keys if args.get(k) is not None}


def _autosize(d: DesignState) -> dict[str, Any]:
    from archlab.advise import autosize, measure_latency_ms

    rec = json.loads((d.path / DesignDir.RECOMMENDATION).read_text(encoding="utf-8"))
    budgets = _budgets(d.args)
    rows = []
    for c in rec["candidates"]:
        row = {
            "name": c["name"],
            "family": c["family"],
            "rank": c["rank"],
            "reasons": c["reasons"],
            "data_options": c.get("data_options") or {},
        }
        if budgets:
            s = autosize(c["name"], d.bundle_for(row), task=d.args.get("task"), **budgets)
            row.update(
                overrides=s.overrides,
                params=s.params,
                flops=s.flops,
                memory_mb=s.memory_mb,
                latency_ms=s.latency_ms,
                fits=s.fits,
                sizing=s.stop_reason,
            )
        else:
            row.update(overrides=c["overrides"], params=c["params"], flops=c["flops"], latency_ms=c["latency_ms"])
            row.update(fits=True, sizing="no budget given: the preset as fitted to the data")
        if row.get("latency_ms") is None:  # the candidates' table plots metric against latency
            row["latency_ms"], _ = measure_latency_ms(c["name"], row["overrides"])
        rows.append(row)
        d.tell("autosize", "progress", f"{c['name']}: {row['params']:,} parameters, fits={row['fits']}")
    atomic_write_json(d.path / DesignDir.SIZED, {"budgets": budgets, "candidates": rows})
    if not any(r["fits"] for r in rows):
        raise ConfigError(
            f"design: no candidate meets the budgets {budgets} "
            f"({', '.join(r['name'] + ': ' + r['sizing'] for r in rows)}); loosen a budget"
        )
    return {"budgets": budgets, "candidates": rows}


def _train_kwargs(d: DesignState, max_steps: int) -> dict[str, Any]:
    """The one recipe: :data:`RECIPE`, a batch size that gives small data several batches an
    epoch (:func:`archlab.advise.recipe.default_batch_size`), the user's ``train`` on top."""
    from archlab.advise.recipe import default_batch_size

    bs = {"batch_size": default_batch_size(len(d.bundle.train))}
    return {**RECIPE, **bs, **(d.args.get("train") or {}), "seed": d.args["seed"], "max_steps": max_steps}


def _seconds_per_step(d: DesignState, c: dict[str, Any], affordable: float) -> tuple[float, float, str]:
    """Train ``name`` a few steps in a scratch directory: (seconds per step, seconds per run
    outside the steps: building, checkpoints, evaluations, pictures; the precision the steps ran
    in). The precision is chosen as every run chooses it (``precision: auto`` measures the step in
    each precision the machine has natively) and every trial of the family then uses it.

    Each step is logged (``log_every=1``, this scratch run only) and the per-step figure is the
    median after the first steps, so one-time costs (lazy imports, allocator warm-up) land in
    the overhead rather than in every step. The overhead measured leaves out what ``runs.fit``
    adds to a real run (pictures, ``curves.png``): the candidates' real runs may overrun a little.
    ``affordable`` is how many steps the calibration's share of the budget buys (from the range
    test's own step time): a slow family is timed on fewer steps, down to four.
    """
    kwargs = {**_train_kwargs(d, 1), "log_every": 1}
    per_epoch = math.ceil(len(d.bundle.train) / kwargs["batch_size"])
    k = max(4, min(12, per_epoch + 1, int(affordable)))  # a few steps: the median needs about ten
    t0 = time.perf_counter()
    # the engine itself: a scratch run needs no config.yaml, pictures or curves
    bundle = d.bundle_for(c)
    task = get_task(d.args.get("task") or bundle.task)
    model = build_model(c["name"], bundle, task, c["overrides"])
    cfg = TrainConfig.build({**kwargs, "max_steps": k})
    choice = choose_run_precision(model, task, bundle, cfg, steps=MAX_STEPS)  # as a long run would
    with tempfile.TemporaryDirectory(prefix="archlab-calibrate-") as tmp:
        res = train_model(model, bundle, task, cfg, run_dir=tmp, precision=choice)
    total = time.perf_counter() - t0
    train = [r for r in res.history if r.get("kind") == "train" and r.get("samples_per_s") and r["step"] > 2]
    if train:  # samples_per_s is over the step's own batch: the last one of an epoch may be short
        per_step = statistics.median(kwargs["batch_size"] / r["samples_per_s"] for r in train)
    else:
        per_step = max(res.metrics["train_time_s"], 1e-3) / k
    return per_step, max(0.0, total - per_step * k), choice.precision


def _selection(d: DesignState) -> Selection:
    """The task's declared selection metric (never a baseline's figure such as ``val_naive_mae``)."""
    return selection_of(get_task(d.args.get("task") or d.bundle.task))


def _baselines(d: DesignState) -> dict[str, Any]:
    from archlab.advise.baselines import fit_baselines

    rows = fit_baselines(d.bundle, d.args.get("task") or d.bundle.task)
    for b in rows:
        d.tell("baselines", "progress", f"{b.name}: " + (f"val {b.val:.4g}" if b.val is not None else b.note))
    return {"rows": [b.to_dict() for b in rows]}


def _family_plan(d: DesignState, c: dict[str, Any], seconds: float, folds: int | None) -> FamilyPlan:
    """Calibrate a preset: seconds per step, overhead, the range-test learning rate, its steps."""
    bundle = d.bundle_for(c)
    task = get_task(d.args.get("task") or bundle.task)
    model = build_model(c["name"], bundle, task, c["overrides"])
    batch = _train_kwargs(d, 1)["batch_size"]
    share = max(CALIBRATION_MIN_S, CALIBRATION_SHARE * seconds)  # each of the sweep and the timing
    lr = starting_lr(model, bundle, task, batch_size=batch, seed=d.args["seed"], max_seconds=share)
    per_step, overhead, precision = _seconds_per_step(d, c, share / (lr.seconds_per_step or share))
    steps = steps_for(seconds, per_step, overhead, folds or 1)
    return FamilyPlan(
        name=c["name"], family=c["family"], rank=c["rank"], overrides=c["overrides"],
        data_options=c.get("data_options") or {}, params=c.get("params"), latency_ms=c.get("latency_ms"),
        lr=lr.lr, lr_note=lr.note or f"range test: loss lowest at {lr.lr_at_min:.2g}, a tenth of it",
        seconds_per_step=per_step, overhead_s=round(overhead, 3), max_steps=steps,
        eval_every=min(steps, max(steps // REDUCTION**RUNGS, MIN_RUNG)),  # an evaluation at each rung
        precision=precision,
    )  # fmt: skip


def _plan(d: DesignState) -> SearchPlan:
    sized = [c for c in d.result("autosize")["candidates"] if c["fits"]]
    folds = d.result("inspect").get("cv_folds")
    search_s = search_seconds(d.args["budget_s"], d.args.get("candidate_share"), len(sized), folds)
    per_trial = search_s / (len(sized) + 1)  # every family's first trial in full, and one more; pruning frees more
    families = []
    for c in sized:
        try:
            families.append(_family_plan(d, c, per_trial, folds))
        except ArchlabError as exc:  # a preset that cannot even take a step: left out, said why
            log.warning("design: %s cannot train on this data, left out of the search: %s", c["name"], exc)
    if not families:
        raise ConfigError("design: no candidate could take a training step on this data")
    sel = _selection(d)
    train = {k: v for k, v in (d.args.get("train") or {}).items() if k not in ("lr", "weight_decay", "batch_size")}
    return SearchPlan(
        families=families, metric=sel.key("val"), mode=sel.mode, budget_s=search_s,
        batch_size=_train_kwargs(d, 1)["batch_size"], seed=d.args["seed"], folds=folds, train=train,
        image_hw=_image_hw(d),
    )  # fmt: skip


def _image_hw(d: DesignState) -> list[int] | None:
    """(H, W) of image inputs when the task is classification (augmentation joins the search)."""
    x = d.bundle.train.inputs[0] if d.bundle.modality == "image" and d.bundle.train.inputs else None
    task = d.args.get("task") or d.bundle.task
    return [int(x.shape[-2]), int(x.shape[-1])] if x is not None and x.ndim == 4 and task == "classification" else None


def trial_context(d: DesignState, plan: SearchPlan, worker: str = OWNER) -> TrialContext:
    def as_candidate(f: FamilyPlan) -> dict[str, Any]:
        return {"name": f.name, "data_options": f.data_options}

    return TrialContext(
        plan=plan,
        root=d.path,
        bundle_for=lambda f: d.bundle_for(as_candidate(f)),
        data_spec_for=lambda f: d.data_spec_for(as_candidate(f)),
        task=d.args.get("task"),
        worker=worker,
        reporter=d.reporter,
        tell=lambda line: d.tell("search", "progress", line),
    )


def open_design_study(d: DesignState, plan: SearchPlan) -> Any:
    search = d.args.get("search") or {}
    url = search.get("storage") or f"sqlite:///{(d.path / DesignDir.STUDY_DB).resolve()}"
    attrs = {"design_dir": str(d.path.resolve()), "arguments": d.args}
    return create_study(storage_for(url), search.get("study") or "design", plan, attrs)


def _search(d: DesignState) -> dict[str, Any]:
    st = d.step("search").setdefault("result", {})
    if "plan" not in st:  # fixed once, before the first trial, so a resume keeps it
        t0 = time.perf_counter()
        st["plan"] = _plan(d).to_dict()
        st["calibration_s"] = round(time.perf_counter() - t0, 3)
        d.save()
    plan = SearchPlan.from_dict(st["plan"])
    study = open_design_study(d, plan)
    retry_stale(study)
    try:
        work(study, trial_context(d, plan))
    finally:
        d.m["budget"]["spent_s"] = round(spent_s(study), 3)
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    return {**st, "trials": [r.to_dict() for r in rows], "study": study.study_name, "importances": importances(study)}


def _run_one(d: DesignState, path: Path, c: dict[str, Any], train: dict[str, Any]) -> dict[str, float]:
    """Start, resume or skip the run at ``path`` (:func:`archlab.runs.cv.run_member`); its numeric
    final metrics."""
    metrics, _, _ = run_member(
        path,
        c["name"],
        d.bundle_for(c),
        d.args.get("task"),
        d.reporter,
        model_overrides=c["overrides"],
        data_spec=d.data_spec_for(c),
        **train,
    )
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def pareto_front(rows: list[dict[str, Any]], mode: str) -> list[bool]:
    """Which rows are non-dominated on (validation metric, batch-1 latency): no other row is at
    least as good on both and better on one. Parameters are shown beside, not ranked on."""

    def costs(r: dict[str, Any]) -> tuple[float, float]:
        v = r["value"] if r["value"] is not None else -math.inf if mode == "max" else math.inf
        return (-v if mode == "max" else v, r.get("latency_ms") or 0.0)

    cs = [costs(r) for r in rows]
    return [not any(all(b <= a for a, b in zip(ci, cj)) and cj != ci for cj in cs) for ci in cs]


def _trial_rows(d: DesignState, plan: SearchPlan) -> list[CandidateRow]:
    """The trials as the candidates table shows them (one row a trial), best metric first."""
    out = []
    for t in d.result("search").get("trials", []):
        if t["state"] not in ("complete", "pruned", "failed", "running") or (t["state"] == "failed" and not t["error"]):
            continue  # waiting, or stopped by a kill and retried as another trial
        f = next((f for f in plan.families if f.name == t["name"]), None)
        out.append(
            CandidateRow(
                name=f"{t['name']} #{t['number']}",
                preset=t["name"],
                trial=t["number"],
                family=f.family if f else "",
                rank=f.rank if f else None,
                params=f.params if f else None,
                latency_ms=f.latency_ms if f else None,
                fits=True,
                metric=plan.metric,
                mode=plan.mode,
                value=t["value"] if t["state"] == "complete" else None,
                reached=t["value"],
                state=t["state"],
                recipe=t["params"],
                trained=t["state"] == "complete",
                error=t.get("error"),
                cv={"k": plan.folds} if plan.folds else None,
            )
        )
    return out


def _select(d: DesignState) -> dict[str, Any]:
    plan = SearchPlan.from_dict(d.result("search")["plan"])
    rows = _trial_rows(d, plan)
    trained = [r for r in rows if r.trained and r.value is not None]
    if not trained:
        raise ConfigError("design: no trial finished training with a validation metric")
    for r, p in zip(trained, pareto_front([r.to_dict() for r in trained], plan.mode)):
        r.pareto = p
    best = trained[plan.selection.best_index(r.value for r in trained) or 0]
    pruned = sum(r.state == "pruned" for r in rows)
    why = (
        f"best {plan.metric} ({best.value:.4g}, {'higher' if plan.mode == 'max' else 'lower'} is better) of "
        f"{len(trained)} trials trained to the end ({pruned} pruned early), {best.preset} with lr "
        f"{plan.family(best.preset).lr * best.recipe['lr_mult']:.2g}, width {best.recipe['width']}"
    )
    return {
        "winner": best.preset,
        "winner_trial": best.trial,
        "winner_params": best.recipe,
        "metric": plan.metric,
        "mode": plan.mode,
        "why": why,
        "compared_on": d.result("inspect").get("selection"),
        "rows": [r.to_dict() for r in rows],
    }


def _winner(d: DesignState) -> dict[str, Any]:
    sel = d.result("select")
    plan = SearchPlan.from_dict(d.result("search")["plan"])
    f, overrides, train = trial_config(
        optuna().trial.FixedTrial({"family": sel["winner"], **sel["winner_params"]}), plan
    )
    run = d.step("winner").setdefault("result", {})
    if "max_steps" not in run:
        run.update(max_steps=_winner_steps(d, f, plan), run_dir=DesignDir.WINNER, overrides=overrides)
        d.save()
    d.tell("winner", "progress", f"training {sel['winner']} (trial {sel['winner_trial']}) for {run['max_steps']} steps")
    train = {**train, "max_steps": run["max_steps"], "eval_every": None}
    c = {"name": f.name, "overrides": run["overrides"], "data_options": f.data_options}
    t0 = time.perf_counter()
    try:
        run["metrics"] = _run_one(d, d.path / DesignDir.WINNER, c, train)
    finally:
        d.spend(time.perf_counter() - t0)
    run["verdict"] = baseline_verdict(run["metrics"], d.result("baselines").get("rows", []), _selection(d))
    return run


def _winner_steps(d: DesignState, f: FamilyPlan, plan: SearchPlan) -> int:
    """Steps of the winner's run.

    With cross-validated trials (small data) the winner trains exactly as its trial did: a longer
    run would choose its best step on a validation split too small to trust, which the folds
    were there to avoid. Otherwise it trains for what the budget left buys, never fewer steps
    than its trial.
    """
    sel = d.result("select")
    trial = next((t for t in d.result("search")["trials"] if t["number"] == sel["winner_trial"]), {})
    validated = int(trial.get("steps") or f.max_steps)
    if plan.folds:
        log.info("design: the winner trains %d steps, as its cross-validated trial did", validated)
        return validated
    steps = steps_for(d.budget_left_s, f.seconds_per_step, f.overhead_s)
    if steps < validated:
        log.info(
            "design: %d s of budget left buys %d steps; the winner trains %d, as its trial did",
            d.budget_left_s,
            steps,
            validated,
        )
    return max(steps, validated)


TIE = 1e-6  # relative difference under which a network and a baseline score the same


def baseline_verdict(metrics: dict[str, Any], baselines: list[dict[str, Any]], sel: Selection) -> str:
    """One line: whether the best network beats the baselines on the test split (val without one)."""
    split = "test" if sel.key("test") in metrics else "val"
    mine = metrics.get(sel.key(split))
    scored = [b for b in baselines if b.get(split) is not None]
    if mine is None or not scored:
        return ""
    best = scored[sel.best_index(b[split] for b in scored) or 0]
    margin = abs(best[split] - mine)
    if margin <= TIE * max(1.0, abs(mine)):  # float32 metrics against float64 baselines: equal counts
        return f"The network ties the best baseline on {split}_{sel.metric}: {mine:.4g}, as {best['name']}"
    if sel.better(best[split], mine):
        return (
            f"The baseline is better: {best['name']} {split}_{sel.metric} {best[split]:.4g} against "
            f"{mine:.4g} for the best network (by {margin:.3g}); the network is delivered all the same"
        )
    return (
        f"The network beats every baseline on {split}_{sel.metric}: {mine:.4g} against {best['name']} {best[split]:.4g}"
    )


def _benchmark(d: DesignState) -> dict[str, Any]:
    from archlab.bench import benchmark

    res = benchmark(
        d.path / DesignDir.WINNER, batch_sizes=(1, 8), backends=("eager", "onnxruntime"), min_time_s=0.3, mfu=False
    )
    atomic_write_json(d.path / DesignDir.BENCH, res.to_dict())
    ok = [r for r in res.rows if r.ok and r.p50_ms is not None]
    b1 = min((r for r in ok if r.batch_size == 1), key=lambda r: r.p50_ms, default=None)
    return {
        "file": DesignDir.BENCH,
        "latency_ms_b1": b1.p50_ms if b1 else None,
        "backend_b1": b1.backend if b1 else None,
    }


def _export(d: DesignState) -> dict[str, Any]:
    from archlab.deploy import export

    res = export(d.path / DesignDir.WINNER, "onnx", d.path / DesignDir.EXPORT_DIR)
    atomic_write_json(d.path / DesignDir.EXPORT, res.to_dict())
    worst = max((v.max_abs_diff for v in res.verification), default=None)
    return {
        "dir": DesignDir.EXPORT_DIR,
        "file": res.model_file,
        "size_bytes": res.size_bytes,
        "parity_ok": res.ok,
        "max_abs_diff": worst,
    }


def _report(d: DesignState) -> dict[str, Any]:
    from archlab.report.document import build_report
    from archlab.report.output import write_report

    budgets = {k: d.args.get(k) for k in ("latency_ms", "memory_mb")}
    rep = build_report(d.path, **budgets, **(d.args.get("report_options") or {}))
    out = write_report(rep, d.path / DesignDir.REPORT)
    return {"file": out.name, "skipped": dict(rep.skipped)}


STEP_FNS: dict[str, Callable[[DesignState], dict[str, Any]]] = {
    "inspect": _inspect,
    "recommend": _recommend,
    "autosize": _autosize,
    "baselines": _baselines,
    "search": _search,
    "select": _select,
    "winner": _winner,
    "benchmark": _benchmark,
    "export": _export,
    "report": _report,
}
#: steps whose failure is recorded and the design goes on (the report says what is missing)
OPTIONAL = ("baselines", "benchmark", "export")
