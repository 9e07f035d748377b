"""Activation / norm factories and a dense block stack shared by MLP-shaped parts of models."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``gelu``, ``silu``, ``tanh``, ...)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None


def norm1d(kind: str | None, width: int) -> nn.Module:
    """``batch`` -> BatchNorm1d, ``layer`` -> LayerNorm, ``None``/``none`` -> Identity."""
    if kind in (None, "none"):
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ValueError(f"unknown norm {kind!r}; choose from batch, layer, none")


def dense_stack(
    in_features: int,
    hidden_sizes: Sequence[int],
    *,
    activation_name: str = "relu",
    norm: str | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Linear -> norm -> activation -> dropout, once per hidden size (no output layer)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), norm1d(norm, h), activation(activation_name)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers)
