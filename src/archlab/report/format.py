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


def fmt_column(values: Sequence[float | None], digits: int = 4, *, scale: bool = True) -> list[str]:
    """Numbers that share a column, in one unit and one fixed-point format.

    The largest magnitude picks the unit (K, M, G, T when ``scale``; none below 1000) and the
    decimals, so that it shows ``digits`` significant digits; every other value uses the same
    unit and decimals (``[108800, 84170]`` -> ``['108.8 K', '84.2 K']``). None gives ``''``.

    Args:
        values: the column's numbers (None where a row has none).
        digits: significant digits of the largest value.
        scale: allow a K/M/G/T unit (False for figures already in a unit, e.g. MB, ms).
    """
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    top = max(finite, default=0.0)
    unit, div = "", 1.0
    if scale:
        unit, div = next(((u, d) for u, d in _SCALES if top >= d), ("", 1.0))
    scaled_top = top / div
    whole = len(str(int(scaled_top))) if scaled_top >= 1 else 1
    decimals = max(0, digits - whole) if scaled_top >= 1 else digits - 1
    if scaled_top and scaled_top < 1:  # small values: enough decimals for the largest one's digits
        decimals = max(decimals, -math.floor(math.log10(scaled_top)) + digits - 1)
    suffix = f" {unit}" if unit else ""
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif not math.isfinite(float(v)):
            out.append(str(v))
        else:
            out.append(f"{float(v) / div:,.{decimals}f}{suffix}")
    return out
