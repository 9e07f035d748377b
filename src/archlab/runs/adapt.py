"""Build a registry model fitted to a dataset: the rule is :mod:`archlab.tasks.adapt`.

Some models also take something from the training data itself before the optimizer starts
(MiniRocket's biases and closed-form ridge head): such a model has a method
``fit_to_data(inputs, target) -> dict``. :func:`fit_to_data` calls it on the training split,
and the dict it returns is recorded under ``info["fit_to_data"]`` of the bundle (so the run's
``data_info.json`` says that it ran and what it chose). What it sets lives in the model's
buffers and parameters, so it is saved with the weights and never re-run on load or resume.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from archlab.data.base import DataBundle, is_streamed
from archlab.registry import create, get_entry
from archlab.tasks.adapt import adapt_overrides

log = logging.getLogger(__name__)


def build_model(name: str, data: DataBundle, task, overrides: dict[str, Any] | None = None, device=None):
    """``archlab.create(name, **overrides)`` with the fields the data decides filled from ``data``,
    then fitted to the training split when the model asks for it (:func:`fit_to_data`)."""
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
    model = create(name, device=device, **{**derived, **user})
    fit_to_data(model, data)
    return model


def fit_to_data(model: nn.Module, data: DataBundle) -> dict[str, Any] | None:
    """Call ``model.fit_to_data(train inputs, train target)`` if the model has that method.

    Returns:
        The model's record of what it fitted (also stored in ``data.info["fit_to_data"]``), or
        None when the model has no such method, is on the meta device, or the training split is
        streamed from disk (nothing is read whole into memory; the model keeps its defaults).
    """
    hook = getattr(model, "fit_to_data", None)
    if not callable(hook):
        return None
    if any(p.is_meta for p in model.parameters()):
        return None
    if is_streamed(data.train) or data.train.mask is not None:
        log.warning("%s: fit_to_data skipped: the training split is streamed or masked", type(model).__name__)
        return None
    record = dict(hook(tuple(data.train.inputs), data.train.target))
    data.info["fit_to_data"] = record
    log.info("%s fitted to the training split: %s", type(model).__name__, record)
    return record
