"""Number, byte and shape formatting shared by every renderer.

Figures that sit side by side (a table column, one section of a report) go through
:func:`fmt_column`: one unit and one format for all of them, so ``1.088e+05`` never stands next
to ``84.17 K``. A figure that was not measured is :func:`not_measured`, never a 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_SCALES = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))


def fmt_count(n: float) -> str:
    """1234567 -> '1.23 M'."""
    n = float(n)
    for unit, div in _SCALES:
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)}"


def fmt_bytes(n: float) -> str:
    n = float(n)
    for unit, div in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


def fmt_shapes(shapes: list[list[int]], limit: int = 2) -> str:
    parts = ["(" + ", ".join(str(v) for v in s) + ")" for s in shapes[:limit]]
    if len(shapes) > limit:
        parts.append(f"+{len(shapes) - limit}")
    return " ".join(parts)


def not_measured(why: str) -> str:
    """The cell of a figure that was not measured: ``not measured (why)``."""
    return f"not measured ({why})"


def fmt_column(values: Sequence[float | None], digits: int = 3, *, scale: bool = True) -> list[str]:
    """Numbers that share a column, in one unit and one fixed-point format.

    The largest magnitude picks the unit (K, M, G, T when ``scale``; none below 1000) for every
    value; each shows ``digits`` significant digits in fixed point, never an exponent, so a small
    figure beside a large one is still read (``[108800, 84170, 960]`` -> ``['109 K', '84.2 K',
    '0.960 K']``). None gives ``''``.

    Args:
        values: the column's numbers (None where a row has none).
        digits: significant digits of each value (at most 6 decimals).
        scale: allow a K/M/G/T unit (False for figures already in a unit, e.g. MB, ms).
    """
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    top = max(finite, default=0.0)
    unit, div = "", 1.0
    if scale:
        unit, div = next(((u, d) for u, d in _SCALES if top >= d), ("", 1.0))
    suffix = f" {unit}" if unit else ""
    out = []
    for v in values:
        if v is None:
            out.append("")
            continue
        x = float(v) / div
        if not math.isfinite(x):
            out.append(str(v))
            continue
        magnitude = math.floor(math.log10(abs(x))) if x else 0
        decimals = min(6, max(0, digits - 1 - magnitude))
        out.append(f"{x:,.{decimals}f}{suffix}")
    return out
