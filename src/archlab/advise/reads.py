"""Which inputs a preset reads: the advisor offers a candidate only after it has read two
samples of the data, and on signal data it finds the layout each family reads.

A registry preset fitted to the data (``fit_to_data``) can still not read it: an MLP built for
flat (B, 784) vectors does not take (B, 1, 8, 8) images, an RNN wants (B, L, C) where a CNN
wants (B, C, L). A forward pass of two samples settles it without training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from archlab.advise.facts import fit_to_data
from archlab.errors import ConfigError

#: the layout of a signal dataset (N, C, L) each family reads first (``archlab.data.splits.apply_layout``).
FAMILY_LAYOUT = {"cnn": "channels", "resnet": "channels", "mlp": "flat"}  # the others: sequence


def _read_two(name: str, fitted: dict[str, Any], bundle) -> None:
    """Build preset ``name`` with ``fitted`` and run it on two training samples (raises on a misfit)."""
    from archlab.registry import create

    model = create(name, **fitted).eval()
    with torch.no_grad():
        model(*(t[:2] for t in bundle.train.inputs))


def is_signal(bundle) -> bool:
    """A signal dataset whose layout can change: time series (N, C, L), not forecasting windows."""
    if bundle is None or bundle.modality != "time_series" or "window" in bundle.info:
        return False
    x = bundle.train.inputs[0] if bundle.train.inputs else None
    return x is not None and x.ndim == 3 and bundle.info.get("layout", "channels") == "channels"


def _relaid(bundle, layout: str, cache: dict[str, Any]):
    """A copy of a signal bundle in ``layout`` (the splits' tensors are shared until converted)."""
    from archlab.data.splits import apply_layout

    if layout not in cache:
        copy = dataclasses.replace(
            bundle,
            info=dict(bundle.info),
            **{k: dataclasses.replace(v) for k, v in bundle.splits().items() if v is not None},
        )
        cache[layout] = copy if layout == "channels" else apply_layout(copy, layout)
    return cache[layout]


def forward_check(entry, fitted: dict[str, Any], bundle) -> None:
    """Images and tables: the preset, fitted to the data, reads two of its samples, else a ConfigError."""
    if bundle is None or bundle.modality not in ("image", "tabular") or not bundle.train.indexable:
        return
    try:
        _read_two(entry.name, fitted, bundle)
    except Exception as exc:
        raise ConfigError(f"{entry.name} does not read this data's inputs: {exc}") from None


def fit_layout(entry, bundle, task, facts, cache: dict[str, Any]):
    """(overrides, layout) for the first signal layout this preset reads; ``cache`` keeps the
    re-laid bundles across presets."""
    first = FAMILY_LAYOUT.get(entry.family, "sequence")
    errors = []
    for layout in [first] + [lay for lay in ("sequence", "channels", "flat") if lay != first]:
        data = _relaid(bundle, layout, cache)
        try:
            fitted = fit_to_data(entry, data, task, facts=facts)
            _read_two(entry.name, fitted, data)
            return fitted, layout
        except Exception as exc:  # a shape the preset does not read: try the next layout
            errors.append(f"{layout}: {exc}")
    raise ConfigError(f"{entry.name} reads none of the signal layouts ({'; '.join(errors)[:300]})")
