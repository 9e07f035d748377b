"""Does ``archlab design`` match hand-tuned models and beat the baselines, with defaults only?

For every bundled dataset with a classification, regression or forecasting task (the rows of
``bench_advisor.py``, plus the regression sets), this runs ``archlab design NAME --budget-s B``
end to end (advice, baselines, the Optuna search, the winner, benchmark, export, report) and
compares the winner's test figure (the task's selection metric on the test split) with

- the best hand-written example for that dataset (``benchmarks/results/learning.json``, as
  ``bench_advisor.py`` reads it): target within 1 point of accuracy or 5% of the MAE;
- the strongest baseline the design fitted on the same split (gradient boosting, seasonal naive,
  exponential smoothing, MiniRocket, logistic regression on pixels): target better.

Every row is written, met or not, with its wall time (the whole design, not only the training
budget) and the machine's CPU flags and load. Usage::

    python benchmarks/bench_design.py --budget-s 60                 # every dataset
    python benchmarks/bench_design.py --budget-s 300 iris sunspots  # a subset (merged into the table)
    python benchmarks/bench_design.py --workers 2 --budget-s 120 wine  # two workers on one study
    OMP_NUM_THREADS=1 python benchmarks/bench_design.py --shard 1/2 &  # two shards side by side,
    OMP_NUM_THREADS=1 python benchmarks/bench_design.py --shard 2/2    # one thread each

Writes ``benchmarks/results/design_B.md`` and ``design_B.json`` (B = the budget).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_advisor import DATA_OPTIONS, datasets, example_figure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "bench_design"
REGRESSION = [("diabetes", "regression"), ("ucr:Covid3Month", "regression"), ("ucr:Tecator", "regression")]


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = sorted(set(re.findall(r"\b(avx2|avx512[a-z_0-9]*|amx[a-z_0-9]*)\b", text)))
    return " ".join(flags) or "unknown"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _join(url: str, study: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "archlab", "design", "--join", url, "--study", study, "-q"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_one(name: str, task: str, budget_s: float, workers: int) -> dict[str, Any]:
    import archlab

    out = RUNS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{int(budget_s)}s-w{workers}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    storage = f"sqlite:///{out.resolve()}/study.db" if workers > 1 else None
    helpers: list[subprocess.Popen] = []
    t0 = time.perf_counter()

    def progress(e: dict[str, Any]) -> None:  # extra workers join once the search has its plan
        if workers > 1 and e["step"] == "search" and e["detail"].startswith("trial") and not helpers:
            helpers.extend(_join(storage, "design") for _ in range(workers - 1))  # type: ignore[arg-type]

    try:
        res = archlab.design(
            name, out_dir=out, task=task, budget_s=budget_s, data_options=DATA_OPTIONS.get(name),
            storage=storage, progress=progress,
        )  # fmt: skip
    finally:
        for h in helpers:
            h.wait(timeout=1200)
    wall = time.perf_counter() - t0
    m = res.manifest
    sel = m["steps"]["select"]["result"]
    key = sel["metric"].replace("val_", "test_")
    trials = m["steps"]["search"]["result"]["trials"]
    row: dict[str, Any] = {
        "dataset": name,
        "task": task,
        "winner": res.winner,
        "metric": key,
        "mode": sel["mode"],
        "value": res.test_metrics.get(key),
        "trials": sum(t["state"] in ("complete", "pruned") for t in trials),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "wall_s": round(wall, 1),
        "search_s": m["steps"]["search"].get("elapsed_s"),
        "threads": torch_threads(),
        "load": round(os.getloadavg()[0], 1),
        "verdict": res.verdict,
    }
    base = [b for b in m["steps"]["baselines"].get("result", {}).get("rows", []) if b.get("test") is not None]
    if base:
        lower = sel["mode"] == "min"
        best = min(base, key=lambda b: b["test"]) if lower else max(base, key=lambda b: b["test"])
        row.update(baseline=best["name"], baseline_value=best["test"])
    ex = example_figure(name)
    if ex:
        row.update(example=ex[0], example_value=ex[1])
    return judge(row)


def judge(row: dict[str, Any]) -> dict[str, Any]:
    """The two targets: better than the strongest baseline (a tie is not better); within 1 point of
    accuracy (5% of MAE) of the example. Float32 metrics against float64 ones: 1e-6 is a tie."""
    v, lower = row.get("value"), row.get("mode") == "min"
    if v is None:
        return row
    if row.get("baseline_value") is not None:
        b = row["baseline_value"]
        row["beats_baseline"] = abs(v - b) > 1e-6 and (v < b if lower else v > b)
    if row.get("example_value") is not None:
        e = row["example_value"]
        row["within_example"] = v <= e * 1.05 + 1e-6 if lower else v >= e - 0.01 - 1e-6
    return row


def _search(r: dict[str, Any]) -> str:
    """The search step's share of the wall time, and its trials per minute."""
    s = r.get("search_s")
    return f" (search {s:.0f} s, {60 * r['trials'] / s:.1f} trials/min)" if s else ""


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def write(rows: list[dict[str, Any]], budget_s: float, workers: int) -> Path:
    """Merge ``rows`` into the table (under a lock: shards running side by side share it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"design_{int(budget_s)}s" + (f"_w{workers}" if workers > 1 else "")
    with open(RESULTS / f".{stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _write_locked(rows, budget_s, workers, stem)


def _write_locked(rows: list[dict[str, Any]], budget_s: float, workers: int, stem: str) -> Path:
    store = RESULTS / f"{stem}.json"
    old = {r["dataset"]: r for r in json.loads(store.read_text())["rows"]} if store.is_file() else {}
    old.update({r["dataset"]: r for r in rows})
    merged = [judge(r) for r in old.values()]
    load = os.getloadavg()[0]
    store.write_text(json.dumps({"budget_s": budget_s, "workers": workers, "rows": merged}, indent=1))
    lines = [
        f"# archlab design, --budget-s {budget_s:.0f}, {workers} worker(s), defaults only",
        "",
        f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores; load average at the end {load:.1f}. "
        "Threads and load (1-minute average when the row ended) per row.",
        "",
        "| dataset | task | winner | trials (pruned) | test metric | example | within | best baseline | beats "
        "| wall | threads, load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in merged:
        lines.append(
            f"| {r['dataset']} | {r['task']} | {r['winner']} | {r['trials']} ({r['pruned']}) | {r['metric']} "
            f"{_fmt(r['value'])} | {r.get('example', '')} {_fmt(r.get('example_value'))} | "
            f"{_fmt(r.get('within_example'))} | {r.get('baseline', '')} {_fmt(r.get('baseline_value'))} | "
            f"{_fmt(r.get('beats_baseline'))} | {r['wall_s']:.0f} s{_search(r)} | {r.get('threads', '')}, {r.get('load', '')} |"
        )
    within = [r for r in merged if "within_example" in r]
    beats = [r for r in merged if "beats_baseline" in r]
    lines += [
        "",
        f"Within the example's figure: {sum(r['within_example'] for r in within)} of {len(within)}. "
        f"Better than the strongest baseline: {sum(r['beats_baseline'] for r in beats)} of {len(beats)}.",
    ]
    misses = [r for r in beats if not r["beats_baseline"]]
    if misses:
        lines += ["", "Rows where a baseline is better:", ""]
        lines += [f"- {r['dataset']}: {r['verdict']}" for r in misses]
    out = RESULTS / f"{stem}.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def combined(budgets: tuple[int, ...] = (60, 300)) -> Path:
    """One table of every dataset at each budget side by side (``design_summary.md``), from the
    per-budget JSON files, with the counts and the rows a baseline wins; the same text replaces
    the ``design-table`` block of the README and of ``docs/measured.md``."""
    tables = {b: {r["dataset"]: judge(r) for r in json.loads(f.read_text())["rows"]}
              for b in budgets if (f := RESULTS / f"design_{b}s.json").is_file()}  # fmt: skip
    order = [n for n, _ in datasets() + REGRESSION]
    text = "\n".join(_counts(tables, len(order)) + [""] + _rows(tables, order) + [""] + _misses(tables, order)) + "\n"
    out = RESULTS / "design_summary.md"
    out.write_text(text)
    for doc in (ROOT / "README.md", ROOT / "docs" / "measured.md"):
        _replace_block(doc, text)
    return out


def _counts(tables: dict[int, dict[str, dict[str, Any]]], total: int) -> list[str]:
    """Rows measured, within the example, better than the baseline: one column per budget."""
    head = " | ".join(f"{b} s budget" for b in tables)
    lines = [f"| | {head} |", "|---" * (1 + len(tables)) + "|"]
    for label, key in (("within the example (1 point, 5% of MAE)", "within_example"),
                       ("better than the strongest baseline", "beats_baseline")):  # fmt: skip
        cells = [f"{sum(bool(r[key]) for r in t.values() if key in r)} of {sum(key in r for r in t.values())}"
                 for t in tables.values()]  # fmt: skip
        lines.append(f"| {label} | {' | '.join(cells)} |")
    measured = " | ".join(f"{sum(r.get('value') is not None for r in t.values())} of {total}" for t in tables.values())
    return [lines[0], lines[1], f"| rows measured | {measured} |", *lines[2:]]


def _rows(tables: dict[int, dict[str, dict[str, Any]]], order: list[str]) -> list[str]:
    head = " | ".join(f"{b} s: winner, test (wall)" for b in tables)
    lines = [
        f"| dataset | metric | {head} | example | strongest baseline | beats it |",
        "|---" * (5 + len(tables)) + "|",
    ]
    for name in order:
        rows = [tables[b].get(name) for b in tables]
        if not any(rows):
            continue
        last = next(r for r in reversed(rows) if r)
        cells = [
            "not run" if r is None else f"{r['winner'][:40]} {_fmt(r.get('value'))} ({r['wall_s']:.0f} s)" for r in rows
        ]
        verdicts = [{True: "yes", False: "**no**"}.get(r.get("beats_baseline"), "—") if r else "—" for r in rows]
        lines.append(
            f"| {name} | {last['metric']} | {' | '.join(cells)} | {last.get('example', '')} "
            f"{_fmt(last.get('example_value'))} | {last.get('baseline', '')} {_fmt(last.get('baseline_value'))} "
            f"| {' / '.join(verdicts)} |"
        )
    return lines


def _misses(tables: dict[int, dict[str, dict[str, Any]]], order: list[str]) -> list[str]:
    """Each budget's rows where the network does not beat the strongest baseline, with both figures."""
    parts = []
    for b, t in tables.items():
        rows = [t[n] for n in order if n in t and t[n].get("beats_baseline") is False]
        said = "; ".join(f"{r['dataset']} ({_fmt(r['value'])} against {r['baseline']} {_fmt(r['baseline_value'])})"
                         for r in rows)  # fmt: skip
        parts.append(f"At {b} s: {said or 'none'}.")
    missing = {b: [n for n in order if n not in t] for b, t in tables.items()}
    gaps = "; ".join(f"not run at {b} s: {', '.join(names)}" for b, names in missing.items() if names)
    verdict = " / ".join(f"{b} s" for b in tables)
    lead = f'The "beats it" column reads {verdict}; a tie is not a win. Rows where the network does not beat '
    lead += "the strongest baseline, with both figures:" + (f" ({gaps}.)" if gaps else "")
    lines = [lead]
    for part in parts:
        lines += ["", part]
    return lines


def _replace_block(doc: Path, text: str) -> None:
    """Put ``text`` between the ``<!-- design-table -->`` markers of ``doc`` (when it has them)."""
    if not doc.is_file():
        return
    body = doc.read_text()
    start, end = "<!-- design-table -->\n", "<!-- /design-table -->"
    if start not in body or end not in body:
        return
    before, rest = body.split(start, 1)
    doc.write_text(before + start + text + end + rest.split(end, 1)[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="datasets (default: every one)")
    p.add_argument("--budget-s", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shard", default="1/1", help="K/N: run every N-th dataset starting at the K-th")
    p.add_argument(
        "--combine",
        action="store_true",
        help="only write design_summary.md from the 60 s and 300 s tables, and put it in the README",
    )
    args = p.parse_args()
    if args.combine:
        print(combined())
        return
    k, n = (int(x) for x in args.shard.split("/"))
    every = datasets() + REGRESSION
    tasks = dict(every)
    unknown = [n_ for n_ in args.names if n_ not in tasks]
    if unknown:
        p.error(f"unknown datasets {unknown}; expected some of {sorted(tasks)}")
    todo = [(n_, tasks[n_]) for n_ in args.names or tasks][k - 1 :: n]  # in the order given
    rows = []
    for name, task in todo:
        try:
            rows.append(run_one(name, task, args.budget_s, args.workers))
        except Exception as exc:  # a row that fails is a row, with its error
            rows.append({"dataset": name, "task": task, "winner": f"failed: {exc}"[:200], "metric": "", "mode": "",
                         "value": None, "trials": 0, "pruned": 0, "wall_s": 0.0, "verdict": ""})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        write(rows, args.budget_s, args.workers)
    print(write(rows, args.budget_s, args.workers))


if __name__ == "__main__":
    main()
