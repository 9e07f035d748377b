"""Number, byte and shape formatting shared by every renderer."""

from __future__ import annotations


def fmt_count(n: float) -> str:
    """1234567 -> '1.23 M'."""
    n = float(n)
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
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
