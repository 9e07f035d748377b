"""Renderers of :class:`archlab.bench.BenchResult`: a Markdown table and a rich Table."""

from __future__ import annotations

from typing import Any

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


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _cells(result: Any, row: Any) -> list[str]:
    fastest = result.fastest(row.batch_size, row.mode)
    status = row.status if row.ok else f"{row.status}: {row.reason or ''}"
    if fastest is row and sum(r.batch_size == row.batch_size and r.mode == row.mode for r in result.rows) > 1:
        status += " (fastest)"
    return [
        row.backend,
        row.mode,
        str(row.batch_size),
        _f(row.p50_ms),
        _f(row.p90_ms),
        _f(row.p99_ms),
        str(row.calls or ""),
        _f(row.samples_per_s),
        _f(row.first_call_ms),
        _f(row.peak_mem_mb),
        _f(row.achieved_flops / 1e9 if row.achieved_flops else None),
        f"{row.mfu:.1%}" if row.mfu else "",
        _f(row.max_abs_diff, 2),
        status,
    ]


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
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _cells(result, r)) + " |" for r in result.rows]
    lines += [f"\n_note: {n}_" for n in result.notes]
    return "\n".join(lines) + "\n"


def bench_rich(result: Any):
    """A rich Table of every row (flagged and failed rows in red)."""
    from rich.table import Table

    table = Table(title=_caption(result), title_justify="left")
    for c in _COLS:
        table.add_column(c, justify="left" if c in ("backend", "mode", "status") else "right", overflow="fold")
    for r in result.rows:
        table.add_row(*_cells(result, r), style=None if r.ok else "red")
    return table
