"""Results in Jupyter: the HTML (or SVG) a notebook shows for each result type.

:mod:`archlab.display` gives every result dataclass ``_repr_html_``; this module draws it with
the renderers :func:`archlab.render` uses: a type's ``html`` renderer if it has one, else its
``rich`` table exported as HTML (rich's own exporter, styles inline: a notebook loads no CSS),
else its SVG (the diagram), else its Markdown as preformatted text. A result with no format
renderers of its own (the runs layer's design result) registers its notebook HTML on
:func:`notebook_html`, which dispatches on the result's type.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from html import escape
from typing import Any

from archlab.report.dispatch import Renderer
from archlab.report.formats import renderers


@functools.singledispatch
def notebook_html(result: Any, by_fmt: Mapping[str, Renderer] | None = None) -> str | None:
    """The HTML a notebook shows for ``result``, or ``None`` to fall back to its ``repr``.

    Args:
        result: any result.
        by_fmt: its renderers by format (default: those registered for its type).
    """
    by_fmt = renderers(result) if by_fmt is None else by_fmt
    try:
        if "html" in by_fmt:
            return str(by_fmt["html"](result))
        if "rich" in by_fmt:
            return rich_html(by_fmt["rich"](result))
        if "svg" in by_fmt:
            return str(by_fmt["svg"](result))
        if "md" in by_fmt:
            return f"<pre>{escape(str(by_fmt['md'](result)))}</pre>"
    except ImportError:  # an optional renderer's extra (grandalf, jinja2) is missing: plain repr
        return None
    return None


def notebook_svg(result: Any, by_fmt: Mapping[str, Renderer] | None = None) -> str | None:
    """The SVG a notebook shows for a picture result (the diagram graph), or ``None``."""
    svg = (renderers(result) if by_fmt is None else by_fmt).get("svg")
    try:
        return None if svg is None else str(svg(result))
    except ImportError:
        return None


def rich_html(renderable: Any, width: int = 110) -> str:
    """A rich renderable (a table, a panel, a group) as self-contained HTML."""
    from rich.console import Console

    console = Console(record=True, file=io.StringIO(), width=width, color_system="truecolor", force_jupyter=False)
    console.print(renderable)
    return console.export_html(
        inline_styles=True,
        code_format='<pre style="font-family:Menlo,Consolas,monospace;font-size:12px;line-height:1.3">{code}</pre>',
    )


def design_result_html(result: Any, by_fmt: Mapping[str, Renderer] | None = None) -> str:
    """A finished design: the winner, why, its test metrics and where the report is.

    Read by attribute (the design result lives in the runs layer, above this one, which registers
    this function on :func:`notebook_html`); ``by_fmt`` is unused: a design has no other format.
    """
    rows = [("winner", result.winner or "none"), ("why", result.why), ("design directory", str(result.dir))]
    if getattr(result, "verdict", ""):
        rows.insert(0, ("against the baselines", result.verdict))
    rows += [(k, f"{v:.4g}") for k, v in result.test_metrics.items()]
    if result.report is not None:
        rows.append(("report", f'<a href="{escape(str(result.report))}">{escape(str(result.report))}</a>'))
    body = "".join(
        f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>"
        f"{v if k == 'report' else escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table><caption>Design result</caption>{body}</table>"
