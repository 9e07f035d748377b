"""Renders of a :class:`~archlab.analysis.compare_models.Comparison`: Markdown, rich table, chart."""

from __future__ import annotations

from archlab.analysis.compare_models import Comparison
from archlab.report.dispatch import register_renderers
from archlab.report.format import fmt_bytes, fmt_count, fmt_shapes

COLUMNS = (
    "Model",
    "Input",
    "Params",
    "FLOPs (fwd)",
    "MACs (fwd)",
    "Weights",
    "Activations (bwd)",
    "Training peak (fp32, Adam)",
)


def _cells(c: Comparison) -> list[list[str]]:
    return [
        [
            r["model"],
            fmt_shapes(r["input_shapes"], 3),
            fmt_count(r["params"]),
            fmt_count(r["flops"]),
            fmt_count(r["macs"]),
            fmt_bytes(r["param_bytes"]),
            fmt_bytes(r["activation_bytes"]),
            fmt_bytes(r["training_peak_bytes"]),
        ]
        for r in c.rows()
    ]


def comparison_markdown(c: Comparison) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(c)]
    return "\n".join(lines) + "\n"


def comparison_rich(c: Comparison):
    from rich.table import Table

    table = Table(title="model comparison (each at the input shown)")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("Model", "Input") else "right")
    for cells in _cells(c):
        table.add_row(*cells)
    return table


def comparison_chart(c: Comparison, fmt: str = "png") -> bytes:
    """Parameters, forward FLOPs and training memory as bar charts (log scale across decades)."""
    from archlab.report.plots import compare_chart

    metrics = [("Parameters", "params"), ("Forward FLOPs", "flops"), ("Training peak (bytes)", "training_peak_bytes")]
    return compare_chart(c.rows(), metrics, fmt=fmt)


register_renderers(
    Comparison,
    rich=comparison_rich,
    md=comparison_markdown,
    png=lambda c: comparison_chart(c, "png"),
    svg=lambda c: comparison_chart(c, "svg").decode(),
)
