"""Renders of a :class:`~archlab.analysis.summary.ModelSummary`: rich table, Markdown, HTML, plain text.

Its JSON is the result's own ``to_dict()`` (schema in :mod:`archlab.analysis.summary`).
"""

from __future__ import annotations

from archlab.analysis.summary import ModelSummary
from archlab.errors import require
from archlab.report.dispatch import register_renderers
from archlab.report.format import fmt_bytes, fmt_count, fmt_shapes

COLUMNS = (
    "Layer",
    "Type",
    "Input",
    "Output",
    "Params",
    "FLOPs (fwd)",
    "MACs (fwd)",
    "FLOPs (bwd)",
    "Output mem",
    "Saved for bwd",
)


def _row_cells(s: ModelSummary) -> list[list[str]]:
    out = []
    for r in s.rows:
        label = ("  " * r.depth) + (r.name.rsplit(".", 1)[-1] if r.depth else r.name)
        if r.calls > 1:
            label += f" (x{r.calls})"
        flops = fmt_count(r.flops) + (" +?" if r.uncounted else "")
        out.append(
            [
                label,
                r.type,
                fmt_shapes(r.input_shapes),
                fmt_shapes(r.output_shapes),
                fmt_count(r.params),
                flops,
                fmt_count(r.macs),
                fmt_count(r.backward_flops),
                fmt_bytes(r.output_bytes),
                fmt_bytes(r.saved_bytes),
            ]
        )
    return out


def _totals(s: ModelSummary) -> list[tuple[str, str]]:
    m = s.memory
    items = [
        ("Parameters", f"{s.total_params:,} ({s.trainable_params:,} trainable)"),
        (
            "Parameter memory",
            ", ".join(f"{d} {fmt_bytes(m.param_bytes(d))}" for d in ("fp32", "bf16", "int8"))
            + f" (as stored: {fmt_bytes(s.param_bytes)})",
        ),
        ("Forward FLOPs", f"{fmt_count(s.flops)}FLOPs = {fmt_count(s.macs)}MACs at batch {s.batch_size}"),
        ("Backward FLOPs (2x fwd estimate)", fmt_count(s.backward_flops)),
        ("Activations saved for backward", f"{fmt_bytes(m.activation_bytes)} at batch {s.batch_size}"),
        ("Gradients + Adam state (fp32)", fmt_bytes(m.gradient_bytes() + m.optimizer_bytes("adam"))),
        ("Training peak (fp32, Adam)", fmt_bytes(m.training_peak())),
        ("Training peak (bf16 mixed, Adam)", fmt_bytes(m.training_peak(dtype="bf16"))),
    ]
    if s.receptive_field is not None:
        items.append(
            ("Receptive field", " x ".join(str(v) for v in s.receptive_field.size) + f" ({s.receptive_field.source})")
        )
    if s.uncounted:
        items.append(("Uncounted ops (not in FLOPs)", ", ".join(f"{k} x{v}" for k, v in s.uncounted.items())))
    return items


def summary_markdown(s: ModelSummary) -> str:
    lines = [
        f"### {s.model}",
        "",
        f"Input {fmt_shapes(s.input_shapes, 4)} -> output {fmt_shapes(s.output_shapes, 4)}, "
        f"device `{s.device}`, depth {s.depth}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for cells in _row_cells(s):
        cells[0] = cells[0].replace("  ", "&nbsp;&nbsp;")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "| Total | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _totals(s)]
    top = list(s.by_type.items())[:12]
    lines += ["", "| Module type | Count | Params | FLOPs (fwd) |", "|---|---|---|---|"]
    lines += [f"| {k} | {v.count} | {fmt_count(v.params)} | {fmt_count(v.flops)} |" for k, v in top]
    lines += [""] + [f"- {n}" for n in s.notes]
    return "\n".join(lines).rstrip() + "\n"


_HTML = """<div class="archlab-summary">
<h3>{{ s.model }}</h3>
<p>Input {{ inp }} &#8594; output {{ out }}, device <code>{{ s.device }}</code>, depth {{ s.depth }}.</p>
<table>
<thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<table class="archlab-totals">
{% for k, v in totals %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}</table>
{% if s.notes %}<ul>{% for n in s.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
</div>
"""


def summary_html(s: ModelSummary) -> str:
    """An HTML fragment (a ``<div>``), values escaped."""
    jinja2 = require("jinja2", "viz", "HTML summaries")
    env = jinja2.Environment(autoescape=True)
    rows = _row_cells(s)
    for r, cells in zip(s.rows, rows):
        cells[0] = r.name or s.model
    tmpl = env.from_string(_HTML)
    return tmpl.render(
        s=s,
        columns=COLUMNS,
        rows=rows,
        totals=_totals(s),
        inp=fmt_shapes(s.input_shapes, 4),
        out=fmt_shapes(s.output_shapes, 4),
    )


def summary_rich(s: ModelSummary):
    """A rich renderable (a Group of the layer table and the totals)."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"{s.model}  input {fmt_shapes(s.input_shapes, 4)}  device {s.device}")
    for i, c in enumerate(COLUMNS):
        table.add_column(c, justify="left" if i < 4 else "right", overflow="fold")
    for cells in _row_cells(s):
        table.add_row(*cells)
    totals = Table(show_header=False, box=None)
    totals.add_column(style="bold")
    totals.add_column()
    for k, v in _totals(s):
        totals.add_row(k, v)
    parts = [table, totals] + [f"[yellow]note:[/] {n}" for n in s.notes]
    return Group(*parts)


def summary_text(s: ModelSummary) -> str:
    rows = [list(COLUMNS)] + _row_cells(s)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += [""] + [f"{k}: {v}" for k, v in _totals(s)] + [f"note: {n}" for n in s.notes]
    return "\n".join(lines)


register_renderers(ModelSummary, rich=summary_rich, md=summary_markdown, html=summary_html, text=summary_text)
