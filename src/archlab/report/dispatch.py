"""Which renderers draw a result, chosen by its type (:func:`functools.singledispatch`).

Each format module registers the result types it draws beside its renderers
(``register_renderers(ModelSummary, md=summary_markdown, ...)``); a result type defined above
this layer (the runs layer's) is registered by the module that defines it, so its renderers are
known whenever one of its objects exists. A subclass renders as its base does.

The format modules load on the first look-up, not when :mod:`archlab.report` is imported: they
import the result types (and so torch), which ``archlab --help`` must not pay for.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

log = logging.getLogger("archlab.report")

#: draws one result in one format: a string, PNG bytes or a rich renderable
Renderer = Callable[[Any], Any]


@functools.singledispatch
def _by_format(result: object) -> Mapping[str, Renderer]:
    """A type nobody registered renders to nothing (``archlab.render`` says so)."""
    return MappingProxyType({})


def register_renderers(cls: type, **by_fmt: Renderer) -> None:
    """Draw results of type ``cls`` (and its subclasses) with ``by_fmt``: format -> renderer."""
    table = MappingProxyType(dict(by_fmt))

    def of(result: Any) -> Mapping[str, Renderer]:
        return table

    _by_format.register(cls, of)


def renderers(result: object) -> Mapping[str, Renderer]:
    """Format -> renderer for ``result``'s type (empty when no module registered it)."""
    _load_formats()
    return _by_format(result)


@functools.cache
def _load_formats() -> None:
    """Import the format modules once: importing one registers what it draws."""
    from archlab.report import compare_models, design, diagram, spread, summary  # noqa: F401

    try:
        from archlab.report import bench  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the bench layer's dependencies are missing
        log.debug("benchmark results will not render: %s", exc)
    try:
        from archlab.report import deploy  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the deploy layer's dependencies are missing
        log.debug("deployment reports will not render: %s", exc)
