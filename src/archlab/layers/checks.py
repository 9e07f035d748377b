"""Input checks at a model's boundary.

Each raises :class:`ShapeError` naming the model, what it expects and what it got::

    ShapeError: resnet18 expects x (B, 3, H, W) float; got (8, 1, 28, 28) float32
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archlab.errors import ShapeError

_DTYPE_KINDS = {
    "float": lambda t: t.is_floating_point(),
    "long": lambda t: t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8),
    "bool": lambda t: t.dtype == torch.bool,
    "any": lambda t: True,
}


def model_name(model: nn.Module | str) -> str:
    """The registry name of a model if it has one, else its class name."""
    if isinstance(model, str):
        return model
    return getattr(model, "registry_name", None) or type(model).__name__


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_tensor(
    model: nn.Module | str,
    x: Any,
    spec: str,
    *,
    name: str = "x",
    dtype: str = "float",
    **sizes: int | None,
) -> torch.Tensor:
    """Check ``x`` against ``spec`` (dimension names, e.g. ``"B C H W"``).

    Args:
        model: the model (for its name in the message).
        x: the value given to forward.
        spec: space-separated dimension names; a name given in ``sizes`` must have that size.
        name: the argument's name in the message.
        dtype: ``"float"``, ``"long"`` (any integer type), ``"bool"`` or ``"any"``.
        **sizes: fixed sizes by dimension name; ``None`` leaves a dimension free.

    Returns:
        ``x`` unchanged, so a forward can write ``x = check_tensor(self, x, ...)``.
    """
    dims = spec.split()
    expected = _fmt_shape([sizes.get(d) if sizes.get(d) is not None else d for d in dims])
    want = f"{model_name(model)} expects {name} {expected} {dtype}"
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{want}; got {type(x).__name__}")
    got = f"{_fmt_shape(tuple(x.shape))} {str(x.dtype).removeprefix('torch.')}"
    if x.dim() != len(dims) or not _DTYPE_KINDS[dtype](x):
        raise ShapeError(f"{want}; got {got}")
    for i, d in enumerate(dims):
        size = sizes.get(d)
        if size is not None and x.shape[i] != size:
            raise ShapeError(f"{want}; got {got} (dimension {d} is {x.shape[i]}, not {size})")
    return x


def check_index_range(model: nn.Module | str, x: torch.Tensor, high: int, *, name: str = "tokens") -> None:
    """Check integer ids lie in ``[0, high)`` (a vocabulary or table size).

    Skipped on the meta device, where values do not exist.
    """
    if x.device.type == "meta" or x.numel() == 0:
        return
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= high:
        raise ShapeError(
            f"{model_name(model)} expects {name} ids in [0, {high}); got values in [{lo}, {hi}]"
        )


def check_max(model: nn.Module | str, value: int, limit: int, what: str) -> None:
    """Check a size such as a sequence length does not pass the configured maximum."""
    if value > limit:
        raise ShapeError(f"{model_name(model)} expects {what} <= {limit}; got {value}")
