"""The comparison section of the design report (``archlab report A --compare B C``): a
figure of parameters on a log scale beside FLOPs, memory, latency and, for runs, the test metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archlab.report.format import fmt_bytes, fmt_count
from archlab.report.report_data import DesignReport, Figure, fmt_float, kind_of, read_json
from archlab.rundir import RunDir


def first_test_metric(metrics: dict[str, Any] | None) -> tuple[str, float] | None:
    if not isinstance(metrics, dict):
        return None
    flat = metrics.get("test") if isinstance(metrics.get("test"), dict) else metrics
    for k, v in flat.items():
        if (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and "loss" not in k
            and (k.startswith("test") or flat is not metrics)
        ):
            return k, float(v)
    for k, v in flat.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k.startswith("test"):
            return k, float(v)
    return None


def comparison(rep: DesignReport, subjects: Sequence[Any], bench: bool) -> None:
    """The comparison figure: parameters on a log scale, beside FLOPs, memory, latency, test metric."""
    from archlab.analysis import summary
    from archlab.report.svg import bar_svg

    rows: list[dict[str, Any]] = []
    for subj in subjects:
        kind = kind_of(subj)
        label = subj if isinstance(subj, str) else getattr(subj, "registry_name", None) or type(subj).__name__
        if kind == "run":
            label = f"{Path(str(subj)).name}"
        s = summary(subj, depth=0)
        row: dict[str, Any] = {
            "model": str(label),
            "architecture": s.model,
            "kind": kind,
            "params": s.total_params,
            "flops": s.flops,
            "param_bytes": s.param_bytes,
            "training_peak_bytes": s.memory.training_peak(),
            "latency_ms": None,
            "latency_note": "not measured (--no-bench)" if not bench else "",
            "test_metric": None,
            "test_metric_name": None,
        }
        if bench:
            try:
                from archlab.bench import benchmark

                b = benchmark(subj, batch_sizes=(1,), backends=("eager",), min_time_s=0.1, mfu=False)
                r = b.rows[0]
                row["latency_ms"] = r.p50_ms if r.ok else None
                row["latency_note"] = "" if r.ok else f"{r.status}: {r.reason}"
            except Exception as exc:
                row["latency_note"] = " ".join(str(exc).split())[:200]
        if kind == "run":
            tm = first_test_metric(read_json(Path(str(subj)) / RunDir.FINAL_METRICS))
            if tm:
                row["test_metric_name"], row["test_metric"] = tm
        rows.append(row)
    rep.comparison = rows
    names = [r["model"] for r in rows]
    panels = [
        ("cmp_params", "Parameters (log scale)", [r["params"] for r in rows], fmt_count, True),
        ("cmp_flops", "FLOPs per forward", [r["flops"] for r in rows], fmt_count, None),
        ("cmp_memory", "Training memory peak", [r["training_peak_bytes"] for r in rows], fmt_bytes, None),
    ]
    if any(r["latency_ms"] is not None for r in rows):
        panels.append(
            ("cmp_latency", "Latency p50, batch 1 (ms)", [r["latency_ms"] or 0 for r in rows], fmt_float, None)
        )
    if any(r["test_metric"] is not None for r in rows):
        metric = next(r["test_metric_name"] for r in rows if r["test_metric_name"])
        panels.append(
            ("cmp_metric", f"Test metric ({metric})", [r["test_metric"] or 0 for r in rows], fmt_float, False)
        )
    for fig_id, title, values, fmt, log_scale in panels:
        # a model without the measurement (no test split, --no-bench) gets no bar rather than a 0
        shown = [(n, v) for n, v, r in zip(names, values, rows) if not _missing(fig_id, r)]
        labels, vals = [n for n, _ in shown], [v for _, v in shown]
        rep.add_figure(Figure(fig_id, title, "image/svg+xml", bar_svg(labels, vals, title, fmt=fmt, log=log_scale)))


def _missing(fig_id: str, row: dict[str, Any]) -> bool:
    key = {"cmp_latency": "latency_ms", "cmp_metric": "test_metric"}.get(fig_id)
    return key is not None and row[key] is None
