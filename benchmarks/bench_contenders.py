"""Contenders on their own modality: each new family beside the baseline that wins there today.

Three sections, one run, every model trained through ``archlab.fit`` (the CLI's path) on the
bundled data's own splits, CPU, ``torch.set_num_threads(1)``, short fixed step counts (below):

- forecasting, every bundled series (one-step-ahead MAE in standardised units, test split):
  ``dlinear``, ``nlinear``, ``nbeats_generic`` beside seasonal naive (the task's baseline) and
  statsmodels' Holt-Winters exponential smoothing (additive damped trend, additive season when
  the training part holds two seasons; parameters fitted on the training part, then one-step
  forecasts through the test part with those parameters). "best network" is the network with the
  lowest *validation* MAE; its test MAE is the one judged. Targets: beats naive on every series,
  beats ETS on at least half.
- series classification, every UCR problem shipped with sktime that archlab loads as equal-length
  classification: ``minirocket`` (its ridge head alone, right after ``fit_to_data``, and after the
  few training steps ``archlab.fit`` runs), ``inception_time`` and the existing ``resnet1d``; and
  sktime's own MiniRocket + RidgeClassifierCV when numba is installed (``archlab[rocket]``).
- tables, every bundled tabular set: ``ft_transformer_small`` and ``tabular_resnet`` beside
  scikit-learn's HistGradientBoosting (the advisor's baseline) on the same split. Accuracy for
  classification, MAE (standardised target) for regression. Targets: within 1 point of gradient
  boosting everywhere, better on at least half.

Usage::

    python benchmarks/bench_contenders.py            # all sections (~10+ min CPU on a shared machine)
    python benchmarks/bench_contenders.py --section tables

Writes ``benchmarks/results/contenders.md`` and ``contenders.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import archlab
from archlab.advise.recommend import hgb_baseline
from archlab.data import list_datasets, load
from archlab.data.ucr import ucr_names
from archlab.errors import ArchlabError
from archlab.runs.adapt import build_model
from archlab.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

SERIES_OPTIONS = {"co2": {"fill": "interpolate"}}
TABLE_OPTIONS = {"diabetes": {"normalize_target": True}}  # MAE in standardised units, like the series
ONLY: set[str] = set()  # --only NAME ...: re-measure these rows, keep the others
FORECASTERS = {  # name -> (model overrides, train config)
    "dlinear": ({}, {"max_steps": 200, "batch_size": 32, "lr": 1e-2}),
    "nlinear": ({}, {"max_steps": 200, "batch_size": 32, "lr": 1e-2}),
    "nbeats_generic": ({"width": 64}, {"max_steps": 200, "batch_size": 32, "lr": 1e-3}),
}
CLASSIFIERS = {
    "minirocket": ({}, {"max_steps": 20, "batch_size": 16, "lr": 1e-4}),
    "inception_time": ({}, {"max_steps": 100, "batch_size": 16, "lr": 1e-3}),
    "resnet1d": ({}, {"max_steps": 100, "batch_size": 16, "lr": 1e-3}),
}
TABULAR = {
    "ft_transformer_small": ({}, {"max_steps": 200, "batch_size": 32, "lr": 3e-4, "weight_decay": 1e-5}),
    "tabular_resnet": ({}, {"max_steps": 200, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-5}),
}


def machine() -> dict[str, Any]:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = {f for f in line.split(":", 1)[1].split() if f == "avx2" or f.startswith(("avx512", "amx"))}
                break
    except OSError:
        pass
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_flags": " ".join(sorted(flags)),
        "torch": torch.__version__,
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def train(name: str, bundle, overrides: dict, cfg: dict, out: Path) -> dict[str, float]:
    """``archlab.fit`` -> final metrics (and wall seconds)."""
    t0 = time.perf_counter()
    res = archlab.fit(name, bundle, model_overrides=overrides, out_dir=out, seed=0, **cfg)
    return {**res.metrics, "wall_s": time.perf_counter() - t0}


# -- forecasting --------------------------------------------------------------------------------


def ets_mae(bundle) -> float:
    """Holt-Winters fitted on the training part; one-step forecasts over the test part."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    info = bundle.info
    norm = info["normalization"]
    z = (np.asarray(info["series"]) - norm["mean"][0]) / norm["std"][0]
    train_end, val_end = info["split_index"]["train_end"], info["split_index"]["val_end"]
    season = int(info["season"])
    spec = dict(trend="add", damped_trend=True)
    if 2 * season <= train_end:
        spec.update(seasonal="add", seasonal_periods=season)
    fit = ExponentialSmoothing(z[:train_end], initialization_method="estimated", **spec).fit()
    p = fit.params
    known = dict(initial_level=p["initial_level"], initial_trend=p["initial_trend"])
    if "seasonal" in spec:
        known["initial_seasonal"] = p["initial_seasons"]
    full = ExponentialSmoothing(z, initialization_method="known", **known, **spec).fit(
        smoothing_level=p["smoothing_level"],
        smoothing_trend=p["smoothing_trend"],
        smoothing_seasonal=p.get("smoothing_seasonal") if "seasonal" in spec else None,
        damping_trend=p["damping_trend"],
        optimized=False,
    )
    pred = np.asarray(full.fittedvalues)[val_end:]  # one-step-ahead: made from the values before t
    return float(np.abs(pred - z[val_end:]).mean())


def forecasting_rows(out: Path, save) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in [d for d in list_datasets() if "forecasting" in d["tasks"]]:
        name = entry["name"]
        if ONLY and name not in ONLY:
            continue
        bundle = load(name, **SERIES_OPTIONS.get(name, {}))
        row: dict[str, Any] = {"series": name, "points": len(bundle.info["series"]), "season": bundle.info["season"]}
        for model, (over, cfg) in FORECASTERS.items():
            m = train(model, bundle, over, cfg, out)
            row[model] = {"val_mae": m["val_mae"], "test_mae": m["test_mae"], "wall_s": m["wall_s"]}
            row["naive"] = m["test_naive_mae"]
        row["ets"] = ets_mae(bundle)
        best = min(FORECASTERS, key=lambda k: row[k]["val_mae"])
        row["best"], row["best_mae"] = best, row[best]["test_mae"]
        logging.getLogger("bench").warning("forecasting %s: %s", name, row)
        rows.append(row)
        save(rows)
    return rows


# -- series classification ----------------------------------------------------------------------


def ridge_only_accuracy(bundle) -> tuple[float, dict]:
    """minirocket right after fit_to_data (biases + ridge head), before any training step."""
    model = build_model("minirocket", bundle, get_task("classification")).eval()
    with torch.no_grad():
        pred = torch.cat([model(x).argmax(1) for x in bundle.test.inputs[0].split(64)])
    return float((pred == bundle.test.target).float().mean()), bundle.info["fit_to_data"]


def sktime_minirocket(bundle) -> float | str:
    try:
        import numba  # noqa: F401
        from sklearn.linear_model import RidgeClassifierCV
        from sktime.transformations.panel.rocket import MiniRocket
    except ImportError as exc:
        return f"not run: {exc.name} is not installed (pip install 'archlab[rocket]')"
    x, y = bundle.train.inputs[0].numpy(), bundle.train.target.numpy()
    xt, yt = bundle.test.inputs[0].numpy(), bundle.test.target.numpy()
    rocket = MiniRocket(random_state=0).fit(x)
    clf = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(rocket.transform(x), y)
    return float((clf.predict(rocket.transform(xt)) == yt).mean())


def classification_rows(out: Path, save) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    bundles: list[tuple[str, Any]] = []
    for problem in ucr_names():
        if ONLY and problem not in ONLY:
            continue
        try:
            bundles.append((problem, load(f"ucr:{problem}")))
        except ArchlabError as exc:
            why = str(exc).split(";")[0].rsplit("/", 1)[-1]  # the loader's message without the install path
            rows.append({"problem": problem, "skipped": why[:160]})
    # smallest first (series x length): a run cut short still has most problems
    bundles.sort(key=lambda pb: pb[1].train.inputs[0].numel())
    for problem, bundle in bundles:
        row: dict[str, Any] = {"problem": problem}
        if bundle.task != "classification":
            rows.append({**row, "skipped": f"a {bundle.task} problem"})
            continue
        shape = tuple(bundle.train.inputs[0].shape)
        row.update(train=shape[0], channels=shape[1], length=shape[2], test=len(bundle.test))
        row["minirocket_ridge"], row["fit_to_data"] = ridge_only_accuracy(bundle)
        for model, (over, cfg) in CLASSIFIERS.items():
            m = train(model, bundle, over, cfg, out)
            row[model] = {"test_accuracy": m["test_accuracy"], "wall_s": m["wall_s"]}
        t0 = time.perf_counter()
        row["sktime_minirocket"] = sktime_minirocket(bundle)
        row["sktime_wall_s"] = time.perf_counter() - t0
        logging.getLogger("bench").warning("classification %s: %s", problem, row)
        rows.append(row)
        save(rows)
    return rows


# -- tables -------------------------------------------------------------------------------------


def table_rows(out: Path, save) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in [d for d in list_datasets() if d["modality"] == "tabular"]:
        name, task = entry["name"], entry["tasks"][0]
        if ONLY and name not in ONLY:
            continue
        if task not in ("classification", "regression"):
            rows.append({"table": name, "skipped": f"task {task}"})
            continue
        bundle = load(name, **TABLE_OPTIONS.get(name, {}))
        base = hgb_baseline(bundle, task)
        metric = "test_accuracy" if task == "classification" else "test_mae"
        row: dict[str, Any] = {"table": name, "task": task, "rows": len(bundle.train), "metric": metric}
        row["gradient_boosting"] = base["value"]
        for model, (over, cfg) in TABULAR.items():
            m = train(model, bundle, over, cfg, out)
            row[model] = {"value": m[metric], "wall_s": m["wall_s"]}
        logging.getLogger("bench").warning("tables %s: %s", name, row)
        rows.append(row)
        save(rows)
    return rows


# -- the table ----------------------------------------------------------------------------------


def _f(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def render_forecasting(rows: list[dict[str, Any]]) -> list[str]:
    nets = list(FORECASTERS)
    lines = [
        "## Forecasting: one-step test MAE (standardised units; lower is better)",
        "",
        "| series | points | season | "
        + " | ".join(nets)
        + " | best by val | seasonal naive | ETS | beats naive | beats ETS |",
        "|---|---:|---:|" + "---:|" * len(nets) + "---|---:|---:|---|---|",
    ]
    for r in rows:
        cells = " | ".join(_f(r[n]["test_mae"]) for n in nets)
        lines.append(
            f"| {r['series']} | {r['points']} | {r['season']} | {cells} | {r['best']} {_f(r['best_mae'])} | "
            f"{_f(r['naive'])} | {_f(r['ets'])} | {'yes' if r['best_mae'] < r['naive'] else '**no**'} | "
            f"{'yes' if r['best_mae'] < r['ets'] else '**no**'} |"
        )
    naive = sum(r["best_mae"] < r["naive"] for r in rows)
    ets = sum(r["best_mae"] < r["ets"] for r in rows)
    lines += [
        "",
        f"Target: beats seasonal naive on every series - {naive} of {len(rows)} "
        f"({'met' if naive == len(rows) else 'missed'}); beats ETS on at least half - {ets} of {len(rows)} "
        f"({'met' if 2 * ets >= len(rows) else 'missed'}).",
    ]
    return lines


def render_classification(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Series classification: test accuracy (UCR problems shipped with sktime)",
        "",
        "| problem | train x C x L | minirocket (ridge only) | minirocket (+20 steps) | inception_time | resnet1d "
        "| sktime MiniRocket | best of minirocket / inception_time vs resnet1d |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    wins = done = 0
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['problem']} | skipped: {r['skipped']} | | | | | | |")
            continue
        done += 1
        ours = max(r["minirocket"]["test_accuracy"], r["inception_time"]["test_accuracy"])
        base = r["resnet1d"]["test_accuracy"]
        verdict = "better" if ours > base else ("tie" if ours == base else "**worse**")
        wins += ours >= base
        sk = r["sktime_minirocket"]
        lines.append(
            f"| {r['problem']} | {r['train']} x {r['channels']} x {r['length']} | {r['minirocket_ridge']:.2%} | "
            f"{r['minirocket']['test_accuracy']:.2%} | {r['inception_time']['test_accuracy']:.2%} | "
            f"{r['resnet1d']['test_accuracy']:.2%} | {f'{sk:.2%}' if isinstance(sk, float) else sk} | "
            f"{verdict} |"
        )
    lines += [
        "",
        f"MiniRocket or InceptionTime (after training) at least as accurate as resnet1d on {wins} of {done} problems.",
    ]
    return lines


def render_tables(rows: list[dict[str, Any]]) -> list[str]:
    nets = list(TABULAR)
    lines = [
        "## Tables: test accuracy (classification) or MAE (regression, standardised target)",
        "",
        "| table | task | train rows | gradient boosting | "
        + " | ".join(nets)
        + " | best network | within 1 point | better |",
        "|---|---|---:|---:|" + "---:|" * len(nets) + "---|---|---|",
    ]
    within = better = done = 0
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['table']} | skipped: {r['skipped']} |" + " |" * (len(nets) + 5))
            continue
        done += 1
        cls = r["task"] == "classification"
        vals = {n: r[n]["value"] for n in nets}
        best = max(vals, key=vals.get) if cls else min(vals, key=vals.get)
        gap = (vals[best] - r["gradient_boosting"]) * (1 if cls else -1)  # > 0: the network is better
        point = 0.01 if cls else 0.01 * abs(r["gradient_boosting"])  # 1 point, or 1% of the trees' MAE
        w, b = gap >= -point, gap > 0
        within, better = within + w, better + b
        fmt = (lambda v: f"{v:.2%}") if cls else (lambda v: f"{v:.4f}")
        cells = " | ".join(fmt(vals[n]) for n in nets)
        lines.append(
            f"| {r['table']} | {r['task']} | {r['rows']} | {fmt(r['gradient_boosting'])} | {cells} | {best} | "
            f"{'yes' if w else '**no**'} | {'yes' if b else '**no**'} |"
        )
    lines += [
        "",
        f"Target: within 1 point of gradient boosting on every table - {within} of {done} "
        f"({'met' if within == done else 'missed'}); better on at least half - {better} of {done} "
        f"({'met' if 2 * better >= done else 'missed'}). Regression: 'within 1 point' reads as within 1% of the trees' MAE.",
    ]
    return lines


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    head = [
        "# Contenders on their own modality",
        "",
        "`python benchmarks/bench_contenders.py` - every model trained by `archlab.fit` on the bundled data's own "
        "splits, seed 0, CPU with `torch.set_num_threads(1)`, short fixed step counts so the run stays bounded on "
        "a shared 2-core machine: "
        + "; ".join(
            f"{k} {v[1]['max_steps']} steps (lr {v[1]['lr']})"
            for k, v in {**FORECASTERS, **CLASSIFIERS, **TABULAR}.items()
        )
        + ". Longer training may change the networks' rows; the baselines have no such knob.",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, flags {m['cpu_flags'] or 'n/a'}, torch {m['torch']}; load average "
        f"{m['load_before']} before, {m.get('load_after')} after the last (partial) run. Last row measured "
        f"{doc['measured']}. Wall time of whole sections: "
        + (", ".join(f"{k} {v:.0f} s" for k, v in (doc.get("section_wall_s") or {}).items()) or "see the docs page")
        + ".",
        "",
    ]
    body: list[str] = []
    if doc.get("forecasting"):
        body += render_forecasting(doc["forecasting"]) + [""]
    if doc.get("classification"):
        body += render_classification(doc["classification"]) + [""]
    if doc.get("tables"):
        body += render_tables(doc["tables"]) + [""]
    return "\n".join(head + body)


def _key(row: dict[str, Any]) -> str:
    return row.get("series") or row.get("problem") or row.get("table") or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=("forecasting", "classification", "tables"), action="append")
    parser.add_argument("--only", nargs="*", default=[], help="re-measure only these series / problems / tables")
    parser.add_argument("--render", action="store_true", help="only rewrite contenders.md from contenders.json")
    args = parser.parse_args()
    if args.render:
        (RESULTS / "contenders.md").write_text(render(json.loads((RESULTS / "contenders.json").read_text())))
        return
    sections = args.section or ["forecasting", "classification", "tables"]
    ONLY.update(args.only)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    path = RESULTS / "contenders.json"
    doc = json.loads(path.read_text()) if path.exists() and (args.section or args.only) else {}
    kept = {k: list(doc.get(k) or []) for k in sections}
    doc["machine"] = machine()
    t0 = time.perf_counter()
    prior = sum(v for k, v in doc.get("section_wall_s", {}).items() if k not in sections)  # kept sections

    def write(section: str, rows: list[dict[str, Any]]) -> None:
        """After every row, so an interrupted run keeps what it measured; --only replaces its rows."""
        if ONLY:
            fresh = {_key(r): r for r in rows}
            rows = [fresh.pop(_key(r), r) for r in kept[section]] + list(fresh.values())
        doc[section] = rows
        doc["wall_s"] = prior + time.perf_counter() - t0
        doc["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
        doc["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, default=float))
        (RESULTS / "contenders.md").write_text(render(doc))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        builders = {"forecasting": forecasting_rows, "classification": classification_rows, "tables": table_rows}
        for section in sections:
            start = time.perf_counter()
            rows = builders[section](out, lambda rows, section=section: write(section, rows))
            if not ONLY:  # a partial re-run says nothing about the section's cost
                doc.setdefault("section_wall_s", {})[section] = time.perf_counter() - start
            write(section, rows)  # the skipped rows too


if __name__ == "__main__":
    main()
