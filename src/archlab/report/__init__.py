"""Report: every result type rendered one way, through one entry point.

``render(result, fmt)`` returns a string (``md``, ``html``, ``json``, ``text``, ``mermaid``,
``dot``, ``svg``) or a rich renderable (``rich``); ``render(result, out="file.svg")`` writes it,
the format following the extension, atomically. Results are plain dataclasses from
:mod:`archlab.analysis`, :mod:`archlab.bench` and :mod:`archlab.deploy`; they never render
themselves, so nothing below this layer imports a renderer. In a notebook they show as tables
and pictures: importing this package hands :mod:`archlab.report.notebook`'s renderers to
:mod:`archlab.display`, whose ``_repr_html_`` every result inherits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlab import display
from archlab.errors import ConfigError
from archlab.io import atomic_write_bytes, atomic_write_text
from archlab.report import notebook

# file extension -> format
EXTENSIONS = {
    ".md": "md",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
    ".txt": "text",
    ".svg": "svg",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".png": "png",
}


def _renderers() -> dict[str, dict[str, Callable[[Any], Any]]]:
    """Result type name -> format -> renderer (imported lazily: rich, jinja2, matplotlib are optional)."""
    from archlab.report import compare_models, diagram, summary

    table: dict[str, dict[str, Callable[[Any], Any]]] = {
        "ModelSummary": {
            "rich": summary.summary_rich,
            "md": summary.summary_markdown,
            "html": summary.summary_html,
            "text": summary.summary_text,
        },
        "ModelGraph": {
            "mermaid": diagram.to_mermaid,
            "dot": diagram.to_dot,
            "svg": diagram.to_svg,
            "text": diagram.to_mermaid,
        },
        "Comparison": {
            "rich": compare_models.comparison_rich,
            "md": compare_models.comparison_markdown,
            "png": lambda c: compare_models.comparison_chart(c, "png"),
            "svg": lambda c: compare_models.comparison_chart(c, "svg").decode(),
        },
    }
    from archlab.report import design as design_render

    table["Recommendation"] = {"rich": design_render.recommendation_rich, "md": design_render.recommendation_markdown}
    table["SizedConfig"] = {"rich": design_render.sized_rich, "md": design_render.sized_markdown}
    try:
        from archlab.report import bench as bench_render

        table["BenchResult"] = {"rich": bench_render.bench_rich, "md": bench_render.bench_markdown}
    except ImportError:  # pragma: no cover - optional layer not installed
        pass
    try:
        from archlab.report import deploy as deploy_render

        table["DeployReport"] = {"rich": deploy_render.deploy_rich, "md": deploy_render.deploy_markdown}
    except ImportError:  # pragma: no cover
        pass
    from archlab.report import compare_runs, spread  # run comparisons, group spreads

    table["RunsComparison"] = compare_runs.RENDERERS
    table["GroupSpread"] = spread.RENDERERS
    return table


def _notebook_html(result: Any) -> str | None:
    return notebook.notebook_html(result, _renderers())


def _notebook_svg(result: Any) -> str | None:
    return notebook.notebook_svg(result, _renderers())


display.set_renderers(html=_notebook_html, svg=_notebook_svg)


def formats(result: Any) -> list[str]:
    """The formats ``result`` renders to."""
    out = sorted(_renderers().get(type(result).__name__, {}))
    if hasattr(result, "to_dict"):
        out.append("json")
    return out


def render(result: Any, fmt: str | None = None, *, out: str | os.PathLike | None = None) -> Any:
    """Render ``result`` as ``fmt``, or write it to ``out`` (format from the extension).

    Returns:
        The rendered text (or a rich renderable for ``"rich"``, PNG bytes for ``"png"``); with
        ``out``, the path written.

    Raises:
        ConfigError: the result type or the format is not known; the message lists the known ones.
    """
    if out is not None:
        ext = Path(out).suffix.lower()
        if fmt is None:
            if ext not in EXTENSIONS:
                raise ConfigError(
                    f"cannot tell the format of {str(out)!r} from its extension; "
                    f"use one of {', '.join(sorted(EXTENSIONS))}"
                )
            fmt = EXTENSIONS[ext]
    if fmt is None:
        fmt = "text"
    fmt = {"markdown": "md", "table": "rich", "mmd": "mermaid"}.get(fmt, fmt)
    name = type(result).__name__
    if fmt == "json":
        if not hasattr(result, "to_dict"):
            raise ConfigError(f"{name} has no JSON form")
        value: Any = json.dumps(result.to_dict(), indent=2, default=str)
    else:
        by_fmt = _renderers().get(name)
        if by_fmt is None:
            raise ConfigError(f"archlab does not know how to render a {name}")
        if fmt not in by_fmt:
            if out is not None:
                exts = [e for e, f in EXTENSIONS.items() if f in formats(result)]
                raise ConfigError(f"cannot write a {name} to {str(out)!r}; use one of {', '.join(exts)}")
            raise ConfigError(f"a {name} renders as {', '.join(formats(result))}; got {fmt!r}")
        value = by_fmt[fmt](result)
    if out is None:
        return value
    if isinstance(value, bytes):
        atomic_write_bytes(out, value)
    elif isinstance(value, str):
        atomic_write_text(out, value)
    else:
        raise ConfigError(f"format {fmt!r} is for the terminal; write to a file with .md, .html, .json or .txt")
    return Path(out)


def register_notebook_display() -> bool:
    """Show results in IPython / Jupyter (called by ``import archlab`` when IPython is running).

    Importing this package is what matters (it registers the renderers behind every result's
    ``_repr_html_``); a design result, defined in the runs layer, is registered with IPython by
    its type's name. Returns whether a shell was found.
    """
    import sys

    if "IPython" not in sys.modules:
        return False
    shell = sys.modules["IPython"].get_ipython()
    if shell is None:
        return False
    html = shell.display_formatter.formatters["text/html"]
    html.for_type_by_name("archlab.runs.design", "DesignResult", _notebook_html)
    return True
