"""``archlab.compare``: parameters, FLOPs and memory of several models side by side, as a table
and a bar chart (log scale when the values span more than a decade)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import nn

from archlab.analysis.render import fmt_bytes, fmt_count
from archlab.analysis.summary import ModelSummary, summary
from archlab.errors import ConfigError

CHART_FORMATS = (".png", ".svg")


@dataclass
class Comparison:
    """One summary per model; ``rows()`` for the table, ``chart(path)`` for the figure."""

    summaries: list[ModelSummary] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [{
            "model": s.model, "params": s.total_params, "flops": s.flops, "macs": s.macs,
            "param_bytes": s.param_bytes, "activation_bytes": s.memory.activation_bytes,
            "training_peak_bytes": s.memory.training_peak(), "batch_size": s.batch_size,
        } for s in self.summaries]

    def to_markdown(self) -> str:
        lines = ["| Model | Params | FLOPs (fwd) | MACs (fwd) | Weights | Activations (bwd) | Training peak (fp32, Adam) |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.rows():
            lines.append(f"| {r['model']} | {fmt_count(r['params'])} | {fmt_count(r['flops'])} | {fmt_count(r['macs'])} | "
                         f"{fmt_bytes(r['param_bytes'])} | {fmt_bytes(r['activation_bytes'])} (batch {r['batch_size']}) | "
                         f"{fmt_bytes(r['training_peak_bytes'])} |")
        return "\n".join(lines) + "\n"

    def to_rich(self):
        from rich.table import Table

        table = Table(title="model comparison")
        for c in ("Model", "Params", "FLOPs (fwd)", "MACs (fwd)", "Weights", "Activations (bwd)", "Training peak"):
            table.add_column(c, justify="left" if c == "Model" else "right")
        for r in self.rows():
            table.add_row(r["model"], fmt_count(r["params"]), fmt_count(r["flops"]), fmt_count(r["macs"]),
                          fmt_bytes(r["param_bytes"]), fmt_bytes(r["activation_bytes"]),
                          fmt_bytes(r["training_peak_bytes"]))
        return table

    def chart_bytes(self, fmt: str = "png") -> bytes:
        """The chart as PNG or SVG bytes: parameters, forward FLOPs and training memory."""
        from archlab.errors import require

        require("matplotlib", "viz", "comparison charts")
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        rows = self.rows()
        names = [r["model"] for r in rows]
        metrics = [("Parameters", "params"), ("Forward FLOPs", "flops"), ("Training peak (bytes)", "training_peak_bytes")]
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 0.45 * len(rows) + 2.2))
        for ax, (title, key) in zip(axes, metrics):
            values = [max(r[key], 1) for r in rows]
            ax.barh(names, values, color="#4878a8")
            if max(values) / min(values) > 10:
                ax.set_xscale("log")
            ax.set_title(title)
            ax.invert_yaxis()
            for i, v in enumerate(values):
                ax.text(v, i, " " + (fmt_bytes(v) if "bytes" in key else fmt_count(v)), va="center", fontsize=8)
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle("Model comparison")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110)
        plt.close(fig)
        return buf.getvalue()

    def chart(self, path: str | os.PathLike) -> str:
        """Write the chart; ``path`` ends in .png or .svg."""
        from archlab.io import atomic_write_bytes

        ext = os.path.splitext(str(path))[1].lower()
        if ext not in CHART_FORMATS:
            raise ConfigError(f"unknown chart format {ext or '(no extension)'!r} for {str(path)!r}; "
                              f"use one of {', '.join(CHART_FORMATS)}")
        atomic_write_bytes(path, self.chart_bytes(ext[1:]))
        return str(path)


def compare(models: Sequence[nn.Module | str], input: Any = None, *, input_shape: Any = None,
            device: str = "meta", batch_size: int | None = None) -> Comparison:
    """Summarise each model (registry names, run directories or modules) for a side-by-side view.

    ``input`` / ``input_shape``, when given, are used for every model; otherwise each model's
    ``example_input()`` is.
    """
    if not models:
        raise ConfigError("compare needs at least one model; got none")
    out = Comparison()
    for m in models:
        out.summaries.append(summary(m, input, input_shape=input_shape, depth=0, device=device,
                                     batch_size=batch_size))
    return out

