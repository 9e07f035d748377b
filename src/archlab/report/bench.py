"""Renderers of :class:`archlab.bench.BenchResult`: a Markdown table and a rich Table.

Each numeric column has one unit and one format (:func:`archlab.report.format.fmt_column`); a
peak memory measured in the benchmark's own process is a lower bound and says so."""

from __future__ import annotations

from typing import Any

from archlab.bench.result import BenchResult
from archlab.report.dispatch import register_renderers
from archlab.report.format import fmt_column, not_measured

_COLS = (
    "backend",
    "mode",
    "batch",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "calls",
    "samples/s",
    "first call ms",
    "peak MB",
    "GFLOP/s",
    "MFU",
    "max abs diff",
    "status",
)


def _in_process(row: Any) -> bool:
    """A row whose peak memory was measured beside other configurations: a lower bound only."""
    return row.peak_mem_mb is not None and "fresh process" not in (row.mem_method or "")


def _peak_cells(rows: list[Any]) -> list[str]:
    """Peak MB in one format; an in-process figure is a lower bound (``>=``), its 0 not measured."""
    cells = fmt_column([r.peak_mem_mb for r in rows], scale=False)
    for i, r in enumerate(rows):
        if _in_process(r):
            cells[i] = f">= {cells[i]}" if r.peak_mem_mb > 0 else not_measured("in-process")
    return cells


def _columns(result: Any) -> dict[str, list[str]]:
    """The numeric columns, each in one unit and one format over all rows."""
    rows = result.rows
    ms = fmt_column([v for r in rows for v in (r.p50_ms, r.p90_ms, r.p99_ms)], scale=False)
    return {
        "p50 ms": ms[0::3],
        "p90 ms": ms[1::3],
        "p99 ms": ms[2::3],
        "samples/s": fmt_column([r.samples_per_s for r in rows]),
        "first call ms": fmt_column([r.first_call_ms for r in rows], scale=False),
        "peak MB": _peak_cells(rows),
        "GFLOP/s": fmt_column([r.achieved_flops / 1e9 if r.achieved_flops else None for r in rows], scale=False),
        "max abs diff": ["" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}" for r in rows],
    }


def bench_cells(result: Any) -> list[list[str]]:
    """The table's cells, one list per row, in the order of ``_COLS`` (every renderer's)."""
    columns = _columns(result)
    return [_cells(result, i, r, columns) for i, r in enumerate(result.rows)]


def _cells(result: Any, i: int, row: Any, columns: dict[str, list[str]]) -> list[str]:
    fastest = result.fastest(row.batch_size, row.mode)
    status = row.status if row.ok else f"{row.status}: {row.reason or ''}"
    if fastest is row and sum(r.batch_size == row.batch_size and r.mode == row.mode for r in result.rows) > 1:
        status += " (fastest)"
    text = {
        "backend": row.backend,
        "mode": row.mode,
        "batch": str(row.batch_size),
        "calls": str(row.calls or ""),
        "MFU": f"{row.mfu:.1%}" if row.mfu else "",
        "status": status,
    }
    return [text[c] if c in text else columns[c][i] for c in _COLS]


def _caption(result: Any) -> str:
    m = result.machine
    peak = ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in result.peak_flops.items())
    return (
        f"{result.model} on {m.get('cpu')} ({m.get('cores')} cores, flags {' '.join(m.get('isa_flags') or [])}"
        f"{', GPU ' + m['gpu'] if m.get('gpu') else ''}), {result.threads} thread(s), torch {m.get('torch')}, "
        f"onnxruntime {m.get('onnxruntime')}"
        + (f"; measured GEMM peak {peak}" if peak else "")
        + ("; each configuration in a fresh process" if result.isolate else "")
    )


def bench_markdown(result: Any) -> str:
    """A Markdown table of every row, with the machine and GEMM peak in a caption line."""
    lines = [f"**{_caption(result)}**", "", "| " + " | ".join(_COLS) + " |", "|" + "---|" * len(_COLS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in bench_cells(result)]
    lines += [f"\n_note: {n}_" for n in result.notes]
    return "\n".join(lines) + "\n"


def bench_rich(result: Any):
    """A rich Table of every row (flagged and failed rows in red)."""
    from rich.table import Table

    table = Table(title=_caption(result), title_justify="left")
    for c in _COLS:
        table.add_column(c, justify="left" if c in ("backend", "mode", "status") else "right", overflow="fold")
    for r, cells in zip(result.rows, bench_cells(result)):
        table.add_row(*cells, style=None if r.ok else "red")
    return table


register_renderers(BenchResult, rich=bench_rich, md=bench_markdown)
