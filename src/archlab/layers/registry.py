"""Names -> layer classes, so a config's strings are resolved once into the classes blocks take.

Blocks shared by several families take layer classes (``norm_layer=nn.LayerNorm``,
``act_layer=nn.GELU``), as torchtune's builders do; a family resolves its config's words here
once and hands the classes down. A "class" is any callable building a module: ``act_layer()``
takes no argument, ``norm_layer(width)`` takes the normalised width (use
``functools.partial`` to fix options such as ``eps``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

ActLayer = Callable[[], nn.Module]
NormLayer = Callable[[int], nn.Module]

ACT_LAYERS: dict[str, ActLayer] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": functools.partial(nn.LeakyReLU, 0.2),  # the GAN papers' slope
    "identity": nn.Identity,
}

# Norms over the last dimension of (..., C) inputs, or the channels of (B, C[, L]) for BatchNorm.
NORM_LAYERS: dict[str, NormLayer | None] = {
    "layernorm": nn.LayerNorm,
    "rmsnorm": nn.RMSNorm,
    "batchnorm": nn.BatchNorm1d,
    "none": None,
}
_NORM_ALIASES = {"layer": "layernorm", "rms": "rmsnorm", "batch": "batchnorm"}


def act_layer(name: str) -> ActLayer:
    """The activation class for ``name`` (``relu``, ``gelu``, ``silu``, ``tanh``, ...)."""
    try:
        return ACT_LAYERS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACT_LAYERS)}") from None


def norm_layer(name: str | None, **options: Any) -> NormLayer | None:
    """The norm class for ``name`` (``layernorm``, ``rmsnorm``, ``batchnorm``; ``None``/``none``
    gives None), with keyword ``options`` (e.g. ``eps=1e-6``) bound to it."""
    key = _NORM_ALIASES.get(name or "none", name or "none")
    if key not in NORM_LAYERS:
        raise ValueError(f"unknown norm {name!r}; choose from {sorted(NORM_LAYERS)}")
    layer = NORM_LAYERS[key]
    if layer is None or not options:
        return layer
    if layer is nn.RMSNorm:
        options.pop("bias", None)  # RMSNorm has a scale only
    return functools.partial(layer, **options)
