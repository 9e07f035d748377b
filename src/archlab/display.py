"""Results shown in notebooks: ``_repr_html_`` (and ``_repr_svg_``) of every result dataclass.

Result dataclasses live below the report layer and never import it (the layer contract); the
report layer draws them. So the methods here are a registration hook: a result class inherits
:class:`NotebookDisplay`, and :mod:`archlab.report` hands its renderer to :func:`set_renderers`
when it is imported (``import archlab`` imports it when IPython is running). Before that a
result has no rich display and IPython shows its ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_renderers: dict[str, Callable[[Any], str | None]] = {}


def set_renderers(html: Callable[[Any], str | None], svg: Callable[[Any], str | None]) -> None:
    """Called by the report layer: ``html(result)`` / ``svg(result)`` return markup or ``None``."""
    _renderers.update(html=html, svg=svg)


class NotebookDisplay:
    """Mixin of result dataclasses: Jupyter shows them through the report layer's renderers."""

    def _repr_html_(self) -> str | None:
        render = _renderers.get("html")
        return None if render is None else render(self)


class SvgDisplay(NotebookDisplay):
    """A result that is a picture (the diagram graph): also ``_repr_svg_``."""

    def _repr_svg_(self) -> str | None:
        render = _renderers.get("svg")
        return None if render is None else render(self)
