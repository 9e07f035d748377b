"""Renderers of a :class:`archlab.runs.compare_runs.RunsComparison` (``archlab compare RUN_A RUN_B``).

Read by attribute only (the runs layer sits above this one, so :mod:`archlab.runs.compare_runs`
registers ``RENDERERS`` for its type): a table of the two sides' test
metric, then the test used, the difference A - B with its 95% interval and p-value, and the
verdict, which names a winner only when p < 0.05.
"""

from __future__ import annotations

from typing import Any


def _value(side: Any) -> str:
    if side.std is None:
        return f"{side.value:.4g}"
    return f"{side.value:.4g} ± {side.std:.2g}"


def _rows(c: Any) -> list[list[str]]:
    unit = "test samples" if c.a.kind == "run" else "members"
    return [[name, side.label, side.kind, _value(side), f"{side.n} {unit}"] for name, side in (("A", c.a), ("B", c.b))]


def _difference(c: Any) -> str:
    return f"{c.estimate:+.4g} [{c.ci95_low:+.4g}, {c.ci95_high:+.4g}]"


def _p(c: Any) -> str:
    return f"p = {c.p_value:.3g}"


_HEAD = ["", "run", "kind", "metric", "n"]


def runs_comparison_markdown(c: Any) -> str:
    """Markdown: the table, the difference with its interval, the verdict."""
    lines = [f"### {c.metric}: A vs B", "", "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(c)]
    lines += [
        "",
        f"Test: {c.test} ({c.design}).",
        "",
        f"A - B: **{_difference(c)}**, {_p(c)} (95% interval: {c.interval}; {c.method}).",
        "",
        f"Verdict: {c.verdict}.",
    ]
    return "\n".join(lines) + "\n"


def runs_comparison_text(c: Any) -> str:
    """Plain text, one line per side, then the difference and the verdict."""
    lines = [f"{name} {row[1]} ({row[2]}): {c.metric} {row[3]} over {row[4]}" for name, row in zip("AB", _rows(c))]
    lines += [
        f"test: {c.test} ({c.design})",
        f"A - B: {_difference(c)}, {_p(c)} (95% interval: {c.interval})",
        f"verdict: {c.verdict}",
    ]
    return "\n".join(lines) + "\n"


def runs_comparison_rich(c: Any):
    """A rich table with the verdict as its caption (green when significant)."""
    from rich.table import Table

    table = Table(title=f"{c.metric}: A vs B", caption_justify="left")
    for h in _HEAD:
        table.add_column(h)
    for row in _rows(c):
        table.add_row(*row)
    table.add_row("A - B", "", "", _difference(c), "95% interval")
    style = "green" if c.significant else "yellow"
    table.caption = f"test: {c.test} ({c.design}), {_p(c)}; interval: {c.interval}\n[{style}]{c.verdict}[/]"
    return table


#: format -> renderer of a RunsComparison
RENDERERS = {"rich": runs_comparison_rich, "md": runs_comparison_markdown, "text": runs_comparison_text}
