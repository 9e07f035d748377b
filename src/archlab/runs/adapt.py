"""Build a registry model fitted to a dataset: the rule is :mod:`archlab.tasks.adapt`."""

from __future__ import annotations

from typing import Any

from archlab.data.base import DataBundle, is_streamed
from archlab.registry import create, get_entry
from archlab.tasks.adapt import adapt_overrides


def build_model(name: str, data: DataBundle, task, overrides: dict[str, Any] | None = None, device=None):
    """``archlab.create(name, **overrides)`` with the fields the data decides filled from ``data``."""
    entry = get_entry(name)
    user = dict(overrides or {})
    defaults = entry.config.build(entry.defaults).model_dump()
    if is_streamed(data.train):  # an example batch read from disk
        x = data.train.take(slice(0, 2)).inputs[0]
    else:
        x = data.train.inputs[0] if data.train.inputs else None
    derived = adapt_overrides(
        dict(entry.config.model_fields), data.info, task=task, data=data, x=x, user=user, defaults=defaults
    )
    return create(name, device=device, **{**derived, **user})
