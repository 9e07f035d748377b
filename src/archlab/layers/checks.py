"""Input checks at a model's boundary.

Each raises :class:`ShapeError` naming the model, what it expects and what it got::

    ShapeError: resnet18 expects x (B, 3, H, W) float; got (8, 1, 28, 28) float32

The same rules hold in every family, because every forward checks its inputs here:

- **dtype**: a float input must have the model's floating dtype when that is float32 or wider
  (a float64 tensor given to a float32 model is refused, naming float32; call ``x.float()``);
  lower precisions (float16 / bfloat16, as autocast and half-precision models use) pass.
- **emptiness**: the batch dimension (``B``, or ``N`` nodes) must be at least 1; an empty batch
  is refused with "at least one sample" rather than failing inside a reshape or an FFT.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def _fmt_shape(shape: Iterable[object]) -> str:
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
    if dtype == "float" and x.dtype == torch.float64:
        param = _float_dtype(model)
        if param is not None and param != torch.float64:
            name_ = str(param).removeprefix("torch.")
            raise ShapeError(
                f"{model_name(model)} expects {name} {expected} {name_} (the model's dtype); "
                f"got {got}: convert it with .to(torch.{name_})"
            )
    if dims and dims[0] in ("B", "N") and x.shape[0] == 0:
        raise ShapeError(f"{want} with {dims[0]} >= 1 (at least one sample); got {got}")
    for i, d in enumerate(dims):
        size = sizes.get(d)
        if size is not None and x.shape[i] != size:
            raise ShapeError(f"{want}; got {got} (dimension {d} is {x.shape[i]}, not {size})")
    return x


def _float_dtype(model: nn.Module | str) -> torch.dtype | None:
    """The dtype of the model's first floating parameter or buffer; None if it has none."""
    if not isinstance(model, nn.Module):
        return None
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def check_range(
    model: nn.Module | str, x: torch.Tensor, low: int, high: int, *, name: str, inclusive: bool = True, note: str = ""
) -> torch.Tensor:
    """Check every value of ``x`` lies in ``[low, high]`` (``[low, high)`` if not ``inclusive``).

    Skipped on the meta device, where values do not exist, for empty tensors, and while
    torch.compile / torch.export trace the model (a value check cannot be part of a graph; the
    traced program is verified against eager on real inputs instead).

    Args:
        note: appended to the expected range, e.g. ``" (num_classes = null class)"``.

    Returns:
        ``x`` unchanged.
    """
    if x.device.type == "meta" or x.numel() == 0 or torch.compiler.is_compiling():
        return x
    lo, hi = int(x.min()), int(x.max())
    if lo < low or hi > high or (not inclusive and hi == high):
        span = f"[{low}, {high}]" if inclusive else f"[{low}, {high})"
        raise ShapeError(f"{model_name(model)} expects {name} in {span}{note}; got values in [{lo}, {hi}]")
    return x


def check_index_range(model: nn.Module | str, x: torch.Tensor, high: int, *, name: str = "tokens") -> torch.Tensor:
    """Check integer ids lie in ``[0, high)`` (a vocabulary or table size)."""
    return check_range(model, x, 0, high, name=f"{name} ids", inclusive=False)


def check_max(model: nn.Module | str, value: int, limit: int, what: str) -> None:
    """Check a size such as a sequence length does not pass the configured maximum."""
    if value > limit:
        raise ShapeError(f"{model_name(model)} expects {what} <= {limit}; got {value}")
