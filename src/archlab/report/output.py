"""Write a design report: gather it (:mod:`archlab.report.document`), then render it as HTML
(:mod:`archlab.report.html`), Markdown (:mod:`archlab.report.markdown`) or JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from archlab.errors import ConfigError
from archlab.io import atomic_write_text
from archlab.report.document import DesignReport, build_report


def make_report(
    subject: nn.Module | str | os.PathLike,
    out: str | os.PathLike = "report.html",
    **options: Any,
) -> Path:
    """Write the design report of ``subject`` to ``out`` (.html, .md or .json).

    The HTML is one self-contained file (inline CSS and SVG, PNGs as data URIs, no network);
    the Markdown writes its figures into ``<name>_files/`` beside it; the JSON carries
    ``schema_version``, every section's data and every figure. ``options`` are
    :func:`build_report`'s (``bench``, ``deploy``, ``compare``, budgets).

    Returns:
        The path written.
    """
    out = Path(out)
    ext = out.suffix.lower()
    if ext not in (".html", ".htm", ".md", ".json"):
        raise ConfigError(f"a report is written as .html, .md or .json; got {str(out)!r}")
    rep = build_report(subject, **options)
    return write_report(rep, out)


def write_report(rep: DesignReport, out: str | os.PathLike) -> Path:
    """Write an already gathered report; the format follows ``out``'s extension."""
    out = Path(out)
    ext = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext in (".html", ".htm"):
        from archlab.report.html import report_html

        atomic_write_text(out, report_html(rep))
    elif ext == ".md":
        from archlab.report.markdown import write_markdown

        write_markdown(rep, out)
    elif ext == ".json":
        atomic_write_text(out, json.dumps(rep.to_dict(), indent=2, default=str))
    else:
        raise ConfigError(f"a report is written as .html, .md or .json; got {str(out)!r}")
    return out
