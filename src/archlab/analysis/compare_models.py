"""``archlab.compare``: parameters, FLOPs and memory of several models side by side. Each row
states the input it was measured at; the table and chart are drawn by :mod:`archlab.report`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from archlab.analysis.summary import ModelSummary, summary
from archlab.display import NotebookDisplay
from archlab.errors import ConfigError


@dataclass
class Comparison(NotebookDisplay):
    """One summary per model; ``rows()`` for the table. Render with ``archlab.render(c, "md"|"rich"|"json")``,
    draw the chart with ``archlab.render(c, out="compare.png")``."""

    summaries: list[ModelSummary] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "model": s.model,
                "params": s.total_params,
                "flops": s.flops,
                "macs": s.macs,
                "param_bytes": s.param_bytes,
                "activation_bytes": s.memory.activation_bytes,
                "training_peak_bytes": s.memory.training_peak(),
                "batch_size": s.batch_size,
                "input_shapes": s.input_shapes,
            }
            for s in self.summaries
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: one row per model."""
        return {"schema_version": 1, "rows": self.rows()}


def compare(
    models: Sequence[nn.Module | str],
    input: Any = None,
    *,
    input_shape: Any = None,
    device: str = "meta",
    batch_size: int | None = None,
) -> Comparison:
    """Summarise each model (registry names, run directories or modules) for a side-by-side view.

    ``input`` / ``input_shape``, when given, are used for every model; otherwise each model's
    ``example_input()`` is.
    """
    if not models:
        raise ConfigError("compare needs at least one model; got none")
    out = Comparison()
    for m in models:
        out.summaries.append(summary(m, input, input_shape=input_shape, depth=0, device=device, batch_size=batch_size))
    return out
