"""Which renderers draw a result, chosen by its type (:func:`functools.singledispatch`).

Each format module registers the result types it draws beside its renderers
(``register_renderers(ModelSummary, md=summary_markdown, ...)``); a result type defined above
this layer (the runs layer's) is registered by the module that defines it, so its renderers are
known whenever one of its objects exists. A subclass renders as its base does.

The format modules import this module to register; :mod:`archlab.report.formats` imports them
(on the first look-up, not when :mod:`archlab.report` is imported: they import the result types,
and so torch, which ``archlab --help`` must not pay for), so no import runs in a circle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

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


def registered(result: object) -> Mapping[str, Renderer]:
    """Format -> renderer for ``result``'s type among those registered so far (empty when none);
    :func:`archlab.report.formats.renderers` loads the format modules first."""
    return _by_format(result)
