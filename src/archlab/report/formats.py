"""The renderers of a result, with every format module loaded: the look-up the report uses.

Importing a format module registers the types it draws (:mod:`archlab.report.dispatch`); this
module imports them all once, on the first look-up.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from archlab.report.dispatch import Renderer, registered

log = logging.getLogger("archlab.report")


def renderers(result: object) -> Mapping[str, Renderer]:
    """Format -> renderer for ``result``'s type (empty when no module registered it)."""
    _load_formats()
    return registered(result)


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
