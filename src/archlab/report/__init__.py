"""Report: every result type rendered one way, through one entry point.

``render(result, fmt)`` returns a string (``md``, ``html``, ``json``, ``text``, ``mermaid``,
``dot``, ``svg``) or a rich renderable (``rich``); ``render(result, out="file.svg")`` writes it,
the format following the extension, atomically. Results are plain dataclasses from
:mod:`archlab.analysis`, :mod:`archlab.bench` and :mod:`archlab.deploy`; they never render
themselves, so nothing below this layer imports a renderer; the renderers are chosen by the
result's type (:mod:`archlab.report.dispatch`). In a notebook they show as tables and pictures:
importing this package hands :mod:`archlab.report.notebook`'s renderers to :mod:`archlab.display`,
whose ``_repr_html_`` every result inherits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from archlab import display
from archlab.errors import ConfigError
from archlab.io import atomic_write_bytes, atomic_write_text
from archlab.report import notebook
from archlab.report.formats import renderers

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


display.set_renderers(html=notebook.notebook_html, svg=notebook.notebook_svg)


def formats(result: Any) -> list[str]:
    """The formats ``result`` renders to."""
    out = sorted(renderers(result))
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
        by_fmt = renderers(result)
        if not by_fmt:
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

    Importing this package is what matters: it registers the renderers behind every result's
    ``_repr_html_`` (:mod:`archlab.display`). Returns whether a shell was found.
    """
    import sys

    if "IPython" not in sys.modules:
        return False
    return sys.modules["IPython"].get_ipython() is not None
