"""Renderers of :class:`archlab.deploy.DeployReport`: Markdown and a rich Table.

The figures of a section share one unit and one format (:func:`archlab.report.format.fmt_column`);
one that was not measured reads "not measured (why)", never 0.
"""

from __future__ import annotations

from typing import Any

from archlab.deploy.requirements import DeployReport
from archlab.report.dispatch import register_renderers
from archlab.report.format import fmt_column, not_measured


def _v(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _latency(report: Any) -> list[tuple[str, str]]:
    rows = report.latency_ms
    cells = iter(fmt_column([v[q] for v in rows.values() for q in ("p50", "p99")], scale=False))
    out = []
    for k, v in rows.items():
        p50, p99 = next(cells), next(cells)
        figure = f"p50 {p50}, p99 {p99}" if v["p50"] is not None else not_measured(v["status"])
        out.append((k, f"{figure} ({v['status']})"))
    return out


def _throughput(report: Any) -> list[tuple[str, str]]:
    rows = report.throughput
    cells = fmt_column([v["samples_per_s"] for v in rows.values()])
    return [
        (k, f"{c} samples/s at batch {v['batch_size']} ({v['status']})" if c else not_measured(v["status"]))
        for c, (k, v) in zip(cells, rows.items())
    ]


def _ram(report: Any) -> list[tuple[str, str]]:
    why = getattr(report, "ram_not_measured", None) or {}
    cells = fmt_column(list(report.ram_mb.values()), scale=False)
    return [(k, c or not_measured(why.get(k, "no figure recorded"))) for c, k in zip(cells, report.ram_mb)]


def _sections(report: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    m = report.machine
    sizes = fmt_column(list(report.size_mb.values()), scale=False)
    return [
        ("Model", [("model", report.model), ("parameters", f"{report.params:,}")]),
        ("Size on disk (MB, files written)", list(zip(report.size_mb, sizes))),
        ("Latency at batch 1 (ms)", _latency(report)),
        ("Throughput", _throughput(report)),
        ("RAM to serve (MB)", _ram(report)),
        (
            "Largest batch within memory",
            [
                (
                    f"{report.max_batch['budget_mb']:g} MB",
                    f"{report.max_batch['max_batch']} ({report.max_batch['stopped_because']})",
                )
            ],
        ),
        (
            "Machine",
            [
                ("cpu", f"{m['cpu']} ({m['cores']} cores, {m['threads_used']} threads used)"),
                ("isa flags", " ".join(m["isa_flags"]) or "n/a"),
                ("gpu", m["gpu"] or "none"),
                ("torch", m["torch"]),
                ("onnxruntime", _v(m["onnxruntime"])),
            ],
        ),
        (
            "Runtime packages",
            [(k, ", ".join(f"{p} {ver}" for p, ver in v.items())) for k, v in report.packages.items()],
        ),
        (
            "Signature",
            [(f"input {i['name']}", f"{i['dtype']} {i['shape']} {i['layout']}") for i in report.signature["inputs"]]
            + [(f"output {o['name']}", f"{o['dtype']} {o['shape']}") for o in report.signature["outputs"]]
            + [("preprocessing", "; ".join(report.signature["preprocessing"]["steps"]))],
        ),
        (
            "Budgets",
            [
                (
                    b.name,
                    f"{'PASS' if b.passed else 'FAIL' if b.passed is False else 'n/a'}: "
                    + (
                        f"{b.measured:.4g} {b.unit} vs {b.limit:g} {b.unit} ({b.basis})"
                        if b.measured is not None
                        else f"{not_measured(b.basis)} vs {b.limit:g} {b.unit}"
                    ),
                )
                for b in report.budgets
            ]
            or [("none given", "")],
        ),
    ]


def _served_sections(report: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """Served-over-HTTP figures and the int8 recipe kept, where the report has them."""
    out = []
    served = getattr(report, "served", None)
    if served:
        out.append(
            (
                "Served over HTTP (loopback load test)",
                [
                    (
                        f"concurrency {r['concurrency']}",
                        f"{_v(r['requests_per_s'])} requests/s, p50 {_v(r['p50_ms'])} ms, p99 {_v(r['p99_ms'])} ms, "
                        f"{r['requests'] - r['ok']} of {r['requests']} failed"
                        + (f" ({', '.join(f'{k}: {n}' for k, n in r['errors'].items())})" if r["errors"] else ""),
                    )
                    for r in served
                ],
            )
        )
    int8 = getattr(report, "int8", None)
    if int8:
        rows = [("kept", f"{int8['chosen']} ({int8['why']})")]
        for c in int8["candidates"]:
            rows.append(
                (
                    c["recipe"],
                    f"failed: {c['error']}"
                    if c["error"]
                    else f"p50 {_v(c['p50_ms'])} ms (fp32 {_v(int8['fp32_p50_ms'])}), {int8['metric_name'] or 'metric'} "
                    f"{_v(c['metric'])} (fp32 {_v(int8['fp32_metric'])})",
                )
            )
        out.append(("int8 recipe (batch 1, 1 thread)", rows))
    return out


def deploy_markdown(report: Any) -> str:
    """The deployment requirements as Markdown: one table per section."""
    out = [f"# Deployment requirements: {report.model}", ""]
    for title, rows in _sections(report) + _served_sections(report):
        out += [f"## {title}", "", "| item | value |", "|---|---|"]
        out += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows] + [""]
    out += [f"_note: {n}_" for n in report.notes]
    return "\n".join(out) + "\n"


def deploy_rich(report: Any):
    """The deployment requirements as one rich Table with a section column."""
    from rich.table import Table

    verdict = "PASS" if report.passed else "FAIL"
    table = Table(title=f"Deployment requirements: {report.model} ({verdict})", title_justify="left")
    for c in ("section", "item", "value"):
        table.add_column(c, overflow="fold")
    for title, rows in _sections(report) + _served_sections(report):
        for i, (k, v) in enumerate(rows):
            style = "red" if v.startswith("FAIL") else None
            table.add_row(title if i == 0 else "", k, v, style=style)
    return table


register_renderers(DeployReport, rich=deploy_rich, md=deploy_markdown)
