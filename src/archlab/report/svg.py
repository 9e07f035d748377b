"""Small bar charts as inline SVG (no matplotlib), for the design report: horizontal bars with
value labels, on a log axis when the values span more than a decade."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from archlab.report.format import fmt_count

BAR_COLOR = "#4878a8"


# ------------------------------------------------------------------------------------ bar charts
def bar_svg(
    labels: Sequence[str],
    values: Sequence[float],
    title: str = "",
    *,
    fmt: Callable[[float], str] = fmt_count,
    log: bool | None = None,
    width: int = 560,
) -> str:
    """Horizontal bars as an SVG string, first label on top, each value written beside its bar.

    ``log=None`` picks a log axis when the positive values span more than a decade (parameter
    counts usually do); non-positive values get no bar and are written "n/a" on a
    log axis.
    """
    labels = [str(x) for x in labels]
    vals = [float(v) if v is not None else 0.0 for v in values]
    pos = [v for v in vals if v > 0]
    if log is None:
        log = bool(pos) and max(pos) / min(pos) > 10
    label_w = min(220, 14 + 6.6 * max((len(x) for x in labels), default=4))
    value_w = 70
    row_h, top, bottom = 22, 30 if title else 10, 26
    plot_w = max(80.0, width - label_w - value_w - 10)
    height = top + row_h * len(labels) + bottom
    if log and pos:
        # the decade below the smallest value, so that its bar has a length even at a power of ten
        lo = 10 ** math.floor(math.log10(min(pos)) - 1e-9)
        hi = 10 ** math.ceil(math.log10(max(pos)))
        hi = hi * 10 if hi == lo else hi
        span = math.log10(hi) - math.log10(lo)

        def x_of(v: float) -> float:
            return 0.0 if v <= 0 else plot_w * (math.log10(v) - math.log10(lo)) / span

        ticks = [lo * 10**i for i in range(int(round(span)) + 1)]
    else:
        hi = max(pos) * 1.05 if pos else 1.0

        def x_of(v: float) -> float:
            return plot_w * max(v, 0.0) / hi

        ticks = [hi * i / 4 for i in range(5)]
    x0 = label_w
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11" role="img">',
        f"<title>{escape(title)}</title>",
    ]
    if title:
        scale = " (log scale)" if log and "log" not in title.lower() else ""
        parts.append(f'<text x="4" y="18" font-size="13" font-weight="bold">{escape(title + scale)}</text>')
    axis_y = top + row_h * len(labels)
    for t in ticks:
        x = x0 + x_of(t)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 15}" text-anchor="middle" fill="#555" font-size="10">'
            f"{escape(fmt(t))}</text>"
        )
    for i, (lab, v) in enumerate(zip(labels, vals)):
        y = top + i * row_h
        w = x_of(v)
        parts.append(f'<text x="{x0 - 6:.1f}" y="{y + 15}" text-anchor="end">{escape(lab[:32])}</text>')
        if w > 0:
            parts.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{BAR_COLOR}"/>')
        shown = fmt(v) if (v > 0 or not log) else "n/a"
        parts.append(f'<text x="{x0 + w + 4:.1f}" y="{y + 15}" fill="#222">{escape(shown)}</text>')
    parts.append(f'<line x1="{x0}" y1="{top - 4}" x2="{x0}" y2="{axis_y}" stroke="#555"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
