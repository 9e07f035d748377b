"""A dense block stack shared by the MLP-shaped parts of models (and the activation by name)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from archlab.layers.registry import ActLayer, NormLayer, act_layer


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``gelu``, ``silu``, ``tanh``, ...)."""
    return act_layer(name)()


def dense_stack(
    in_features: int,
    hidden_sizes: Sequence[int],
    *,
    act_layer: ActLayer = nn.ReLU,
    norm_layer: NormLayer | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Linear -> [norm] -> activation -> [dropout], once per hidden size (no output layer)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), norm_layer(h) if norm_layer is not None else nn.Identity(), act_layer()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers)
