"""Usefulness of the advisor: does ``archlab recommend``'s top-1, trained with defaults, do the job?

For every bundled dataset with a classification or forecasting task (``archlab datasets``; graph
node / graph classification and the CTR task of ``affairs`` count as classification), this

1. asks :func:`archlab.recommend` for its top-1 model (no budgets),
2. trains it with :func:`archlab.runs.fit` exactly as adapted by the advisor, with every optimiser
   default of ``TrainConfig`` and only the length set by :func:`archlab.advise.train_recipe` (a
   rule of the data size: 50 epochs clamped to [400, 800] steps, batch <= 64 with >= 4 batches an
   epoch, and a compute cap of ``FLOPS_BUDGET`` training FLOPs) — no per-dataset tuning,
3. compares its test figure with
   - the best hand-written example in ``examples/`` for that dataset, read from
     ``benchmarks/results/learning.json`` (the figures ``bench_learning.py`` measured; not re-run):
     met when within 2 points of accuracy (AUROC for CTR) or 10% of the MAE;
   - the task's baseline on the same test split: majority class (classification), seasonal
     naive (forecasting; the task reports it beside the model), scikit-learn
     HistGradientBoosting for tabular rows (tabular and 2-D points; AUROC for CTR): met when
     strictly better.

Every row is reported, met or not. ``co2`` loads with ``fill="interpolate"`` (its loader refuses
the gaps otherwise). Usage::

    python benchmarks/bench_advisor.py              # every dataset (~20 min on 2 shared cores)
    python benchmarks/bench_advisor.py iris sunspots

Writes ``benchmarks/results/advisor.md`` and ``advisor.json`` (a subset run merges into them).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "bench_advisor"
FLOPS_BUDGET = 1e12  # training FLOPs per dataset: the time cap with the step clamp
TASKS = ("classification", "node_classification", "graph_classification", "ctr", "forecasting")
EXPENSIVE = ("ucr:OSULeaf", "ucr:ACSF1", "digits", "mnist1d", "shakespeare_genre")
DATA_OPTIONS = {"co2": {"fill": "interpolate"}}
#: dataset -> its hand-written examples (examples/NAME.yaml), whose figures learning.json holds.
EXAMPLES = {
    "digits": ["digits_cnn", "digits_resnet"],
    "mnist1d": ["mnist1d_mlp", "mnist1d_cnn", "mnist1d_gru", "mnist1d_resnet1d", "mnist1d_ssm"],
    "ucr:GunPoint": ["gunpoint_fcn", "gunpoint_resnet1d", "gunpoint_inception_time"],
    "ucr:ArrowHead": ["arrowhead_rocket"],
    "airline": ["airline_dlinear", "airline_nbeats"],
    "wine": ["wine_ft_transformer"],
    "breast_cancer": ["breast_cancer_tabular_resnet"],
    "sunspots": ["sunspots_lstm", "sunspots_ssm", "sunspots_tcn"],
    "karate": ["karate_gcn", "karate_gat"],
    "graph_motifs": ["graph_motifs_gcn"],
    "affairs": ["affairs_wide_deep", "affairs_dlrm"],
}


def datasets() -> list[tuple[str, str]]:
    """(name, task) for every bundled dataset with a classification or forecasting task."""
    from archlab.data.bundled import list_datasets

    out = []
    for d in list_datasets():
        task = next((t for t in TASKS if t in d["tasks"]), None)
        if task:
            out.append((d["name"], task))
    return out


def example_figure(name: str) -> tuple[str, float] | None:
    """(example name, its test figure) of the best example for ``name``, from learning.json."""
    store = RESULTS / "learning.json"
    if name not in EXAMPLES or not store.is_file():
        return None
    recorded = json.loads(store.read_text())
    best = None
    for ex in EXAMPLES[name]:
        text = str(recorded.get(ex, {}).get("result", ""))
        m = (
            re.search(r"test accuracy ([\d.]+)%", text)
            or re.search(r"test MAE ([\d.]+)", text)
            or re.search(r"test_(?:accuracy|auroc) ([\d.]+)", text)
        )
        if not m:
            continue
        value = float(m.group(1)) / (100 if "%" in m.group(0) else 1)
        lower_better = "MAE" in m.group(0)
        if best is None or (value < best[1] if lower_better else value > best[1]):
            best = (ex, value)
    return best


def _labels(split) -> torch.Tensor:
    y = split.target
    if split.mask is not None:
        y = y[split.mask]
    return y.reshape(-1).long()


def baseline(bundle, task: str, metrics: dict[str, Any]) -> tuple[str, float | None]:
    """The task's baseline on the test split (the val split when there is none)."""
    from archlab.advise.recommend import hgb_baseline

    split = bundle.test if bundle.test is not None else bundle.val
    if task == "forecasting":
        return "seasonal naive", metrics.get("test_naive_mae", metrics.get("val_naive_mae"))
    if task == "ctr":
        return "gradient boosting", _gbm_auroc(bundle, split)
    if bundle.modality in ("tabular", "points"):
        hgb = hgb_baseline(bundle, "classification")
        return "gradient boosting", None if hgb is None else hgb["value"]
    train_y, test_y = _labels(bundle.train), _labels(split)
    majority = int(torch.bincount(train_y[train_y >= 0]).argmax())
    return "majority class", float((test_y == majority).float().mean())


def _gbm_auroc(bundle, split) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    x = torch.cat([t.reshape(len(t), -1).float() for t in bundle.train.inputs], 1).numpy()
    xt = torch.cat([t.reshape(len(t), -1).float() for t in split.inputs], 1).numpy()
    model = HistGradientBoostingClassifier(random_state=0).fit(x, bundle.train.target.numpy())
    return float(roc_auc_score(split.target.numpy(), model.predict_proba(xt)[:, 1]))


def bench(name: str, task: str) -> dict[str, Any]:
    from archlab.advise import recommend, train_recipe
    from archlab.data import load
    from archlab.runs import fit

    options = DATA_OPTIONS.get(name, {})
    rec = recommend(name, task=task, top=1, data_options=options)
    top = rec.top
    settings, why = train_recipe(rec.facts.n_samples, flops_per_sample=top.flops, flops_budget=FLOPS_BUDGET)
    options = {**options, **top.data_options}  # e.g. layout="sequence" for an RNN on a signal
    bundle = load(name, **options)
    result = fit(
        top.name,
        bundle,
        task,
        model_overrides=top.overrides,
        data_spec={"name": name, "options": options},
        out_dir=str(RUNS),
        seed=0,
        **settings,
    )
    m = result.metrics
    split = "test" if bundle.test is not None else "val"
    key = {"forecasting": "mae", "ctr": "auroc"}.get(task, "accuracy")
    value = m.get(f"{split}_{key}")
    lower = task == "forecasting"
    ex = example_figure(name)
    base_name, base = baseline(bundle, task, m)
    row: dict[str, Any] = {
        "task": task,
        "model": top.name,
        "params": top.params,
        "metric": f"{split} {key.upper() if lower else key}",
        "value": value,
        "steps": result.steps,
        "batch_size": settings["batch_size"],
        "length": why,
        "baseline": base_name,
        "baseline_value": base,
        "example": ex[0] if ex else None,
        "example_value": ex[1] if ex else None,
        "run": str(result.run_dir),
    }
    if value is not None and ex:
        row["met_example"] = value <= ex[1] * 1.10 if lower else value >= ex[1] - 0.02
    if value is not None and base is not None:
        row["met_baseline"] = value < base if lower else value > base
    return row


def _fmt(v: float | None, lower: bool) -> str:
    if v is None:
        return "—"
    return f"{v:.4f}" if lower else f"{v:.2%}"


def _met(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "—"
    return "yes" if row[key] else "**no**"


def render(results: dict[str, dict[str, Any]]) -> str:
    from archlab.advise import recipe

    lines = [
        "# Advisor usefulness",
        "",
        "`python benchmarks/bench_advisor.py` - for every bundled dataset with a classification or "
        "forecasting task, `archlab recommend`'s top-1 model is trained with archlab's defaults "
        "(`TrainConfig`'s optimiser; length from `archlab.advise.train_recipe`: "
        f"{recipe.EPOCHS} epochs clamped to [{recipe.MIN_STEPS}, {recipe.MAX_STEPS}] steps, batch <= 64, "
        f"at most {FLOPS_BUDGET:.0e} training FLOPs — the time cap) and "
        "scored on the test split. 'example' is the best hand-written `examples/` config for the "
        "dataset as measured by `bench_learning.py` (read from `benchmarks/results/learning.json`, "
        "not re-run); met = within 2 points (accuracy / AUROC) or 10% (MAE, normalised units). "
        "'baseline' is the task's: majority class, seasonal naive (forecasting), gradient boosting "
        "(tabular rows); met = strictly better. CPU, `torch.set_num_threads(1)`, a 2-core machine "
        "shared with other jobs. 'measured' is when the row was last run (UTC): a subset run "
        "(`bench_advisor.py NAME ...`) re-measures its rows and keeps the others.",
        "",
        "| dataset | task | top-1 (params) | steps | result | example | within example | baseline "
        "| beats baseline | wall | measured |",
        "|---|---|---|---:|---|---|---|---|---|---:|---|",
    ]
    total = 0.0
    for name, r in results.items():
        total += r.get("wall_s", 0)
        if "error" in r:
            lines.append(
                f"| {name} | {r.get('task', '')} | error: {r['error']} | | | | **no** | | **no** | "
                f"{r.get('wall_s', 0):.0f} s | {r.get('measured', '—')} |"
            )
            continue
        lower = r["task"] == "forecasting"
        ex = f"{r['example']} {_fmt(r['example_value'], lower)}" if r["example"] else "no example"
        lines.append(
            f"| {name} | {r['task']} | {r['model']} ({r['params']:,}) | {r['steps']} | {r['metric']} "
            f"{_fmt(r['value'], lower)} | {ex} | {_met(r, 'met_example')} | {r['baseline']} "
            f"{_fmt(r['baseline_value'], lower)} | {_met(r, 'met_baseline')} | {r['wall_s']:.0f} s "
            f"| {r.get('measured', '—')} |"
        )
    rows = [r for r in results.values() if "error" not in r]
    n_ex = [r for r in rows if "met_example" in r]
    n_base = [r for r in rows if "met_baseline" in r]
    lines += [
        "",
        f"Within the example: {sum(r['met_example'] for r in n_ex)} of {len(n_ex)} datasets with an example. "
        f"Beats the baseline: {sum(r['met_baseline'] for r in n_base)} of {len(n_base)}. "
        f"Errors: {len(results) - len(rows)}. Total wall time: {total:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    from archlab.io import atomic_write_text

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    todo = datasets()
    if argv:
        known = dict(todo)
        unknown = [n for n in argv if n not in known]
        if unknown:
            print(f"unknown datasets {unknown}; known: {list(known)}")
            return 2
        todo = [(n, known[n]) for n in argv]
    store = RESULTS / "advisor.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    order = [n for n, _ in datasets()]
    # cheap datasets first: a run cut short by the clock still leaves most rows
    todo.sort(key=lambda nt: EXPENSIVE.index(nt[0]) + 1 if nt[0] in EXPENSIVE else 0)
    for name, task in todo:
        t0 = time.perf_counter()
        torch.manual_seed(0)
        try:
            res = bench(name, task)
        except Exception as exc:  # a failing row is reported, not hidden
            res = {"task": task, "error": f"{type(exc).__name__}: {exc}"[:200]}
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        res["measured"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        results[name] = res
        print(f"{name}: {res.get('model', res.get('error'))} {res.get('value')} [{res['wall_s']:.0f} s]", flush=True)
        atomic_write_text(store, json.dumps(results, indent=1))
        atomic_write_text(RESULTS / "advisor.md", render({k: results[k] for k in order if k in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
