"""Renderers for the advisor's results: :class:`Recommendation` and :class:`SizedConfig`.

Rich tables for the terminal, Markdown for reports; JSON comes from each result's ``to_dict``.
"""

from __future__ import annotations

from typing import Any

from archlab.advise.autosize import SizedConfig
from archlab.advise.recommend import Recommendation
from archlab.report.dispatch import register_renderers
from archlab.report.format import fmt_count


def _n(v: Any) -> str:
    return "—" if v is None else fmt_count(v)


def _ms(v: Any) -> str:
    return "—" if v is None else f"{v:.2f}"


def _budgets(b: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in b.items()) or "none"


def _facts_line(rec) -> str:
    f = rec.facts
    parts = [f"{f.name or 'data'}: {f.modality}/{f.task}"]
    if f.input_shape:
        parts.append(f"input {tuple(f.input_shape)}")
    for key in ("n_samples", "num_classes", "seq_len", "season", "vocab_size", "num_nodes"):
        v = getattr(f, key)
        if v:
            parts.append(f"{key}={v}")
    if f.imbalance and f.imbalance > 1:
        parts.append(f"imbalance={f.imbalance:.1f}x")
    return ", ".join(parts)


def _rule_ids(reasons: list[str]) -> str:
    ids = [r[1 : r.index("]")] for r in reasons if r.startswith("[") and "]" in r]
    return ", ".join(ids) if ids else "; ".join(reasons)


def recommendation_markdown(rec) -> str:
    """The recommendation as Markdown: facts, ranked table, reasons, warnings, baseline."""
    lines = [
        f"# Recommendation — {_facts_line(rec)}",
        "",
        f"Budgets: {_budgets(rec.budgets)}",
        "",
        "| rank | model | family | why (rules) | params | FLOPs | latency ms | fits budget |",
        "|---:|---|---|---|---:|---:|---:|---|",
    ]
    for c in rec.candidates:
        lines.append(
            f"| {c.rank} | {c.name} | {c.family} | {_rule_ids(c.reasons)} | {_n(c.params)} | "
            f"{_n(c.flops)} | {_ms(c.latency_ms)} | {'yes' if c.fits_budget else 'no'} |"
        )
    lines += ["", "## Why"]
    for c in rec.candidates:
        lines.append(f"- **{c.name}** — trade-offs: {c.tradeoffs}")
        for r in c.reasons + c.notes:
            lines.append(f"  - {r}")
        if c.budget_note:
            lines.append(f"  - sizing: {c.budget_note}")
    if rec.warnings:
        lines += ["", "## Warnings"]
        for w in rec.warnings:
            fix = f" Fix: `{w.fix}`." if w.fix else ""
            who = f" ({', '.join(w.models)})" if w.models else ""
            lines.append(f"- [{w.rule}]{who} {w.message}{fix}")
    if rec.baseline:
        b = rec.baseline
        lines += ["", f"Baseline on the same split: {b['model']} {b['metric']}={b['value']:.4f} ({b['split']})"]
    if rec.alternatives:
        lines += ["", f"Usual alternatives: {rec.alternatives}"]
    if rec.latency_method:
        lines += ["", f"Latency measured with {rec.latency_method}."]
    return "\n".join(lines) + "\n"


def recommendation_rich(rec):
    """The ranked candidates as a rich Table (facts in the title, warnings in the caption)."""
    from rich.table import Table

    caption = [f"[{w.rule}] {w.fix or w.message}" for w in rec.warnings]
    if rec.baseline:
        b = rec.baseline
        caption.append(f"baseline {b['model']}: {b['metric']}={b['value']:.4f} ({b['split']})")
    table = Table(title=f"{_facts_line(rec)}  (budgets: {_budgets(rec.budgets)})", caption="\n".join(caption) or None)
    for col, just in (
        ("rank", "right"),
        ("model", "left"),
        ("why", "left"),
        ("params", "right"),
        ("FLOPs", "right"),
        ("latency ms", "right"),
        ("fits budget", "left"),
    ):
        table.add_column(col, justify=just)
    for c in rec.candidates:
        table.add_row(
            str(c.rank),
            c.name,
            _rule_ids(c.reasons),
            _n(c.params),
            _n(c.flops),
            _ms(c.latency_ms),
            "yes" if c.fits_budget else "[red]no[/]",
        )
    return table


def sized_markdown(sized) -> str:
    """An auto-sizing result as Markdown: the chosen config, why it stopped, the candidates."""
    lines = [
        f"# autosize {sized.name} ({sized.family})",
        "",
        f"Budgets: {_budgets(sized.budgets)} at batch {sized.batch}",
        "",
        f"Chosen: {_n(sized.params)} params, {_n(sized.flops)} FLOPs, latency {_ms(sized.latency_ms)} ms — "
        f"{'fits' if sized.fits else 'does NOT fit'}",
        "",
        f"Stopped: {sized.stop_reason}",
        "",
        "```yaml",
        sized.to_yaml().rstrip(),
        "```",
        "",
        "| knobs | params | FLOPs | memory MiB | latency ms | fits | Pareto |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for c in sized.candidates:
        mem = "—" if c.memory_mb is None else f"{c.memory_mb:.1f}"
        lines.append(
            f"| {c.knobs} | {_n(c.params)} | {_n(c.flops)} | {mem} | {_ms(c.latency_ms)} | "
            f"{'yes' if c.fits else 'no: ' + ', '.join(c.over)} | {'*' if c.pareto else ''} |"
        )
    if sized.latency_method:
        lines += ["", f"Latency measured with {sized.latency_method}."]
    return "\n".join(lines) + "\n"


def sized_rich(sized):
    """The candidates tried as a rich Table; the chosen config and stop reason in the caption."""
    from rich.table import Table

    table = Table(
        title=f"autosize {sized.name}: {_n(sized.params)} params "
        f"({'fits' if sized.fits else 'does not fit'} {_budgets(sized.budgets)})",
        caption=f"{sized.stop_reason}\nchosen: {sized.overrides}",
    )
    for col in ("knobs", "params", "FLOPs", "latency ms", "fits", "Pareto"):
        table.add_column(col, justify="left" if col in ("knobs", "fits") else "right")
    for c in sized.candidates:
        table.add_row(
            str(c.knobs),
            _n(c.params),
            _n(c.flops),
            _ms(c.latency_ms),
            "yes" if c.fits else ", ".join(c.over),
            "*" if c.pareto else "",
        )
    return table


register_renderers(Recommendation, rich=recommendation_rich, md=recommendation_markdown)
register_renderers(SizedConfig, rich=sized_rich, md=sized_markdown)
