"""Every figure archlab draws, in one matplotlib style: training curves, bar charts (the model
comparison) and the pictures tasks make (:mod:`archlab.tasks.pictures`).

matplotlib is optional (``archlab[train]``); it is imported on first use, with the Agg backend,
and :data:`STYLE` is applied in one place (:func:`_render`) through ``rc_context``, so drawing
never changes the caller's own matplotlib settings. Figures become PNG or SVG bytes; the
functions that take a path write them atomically (:func:`archlab.io.atomic_write_bytes`), the
format following the extension.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from archlab.errors import ConfigError, require
from archlab.io import atomic_write_bytes
from archlab.report.format import fmt_bytes, fmt_count
from archlab.tasks.pictures import ForecastPlot, ImageGrid, Picture, PointsPlot

FORMATS = ("png", "svg")
BAR_COLOR = "#4878a8"
#: the one style of every archlab figure (applied per figure, never globally)
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.alpha": 0.3,
}


def _pyplot():
    matplotlib = require("matplotlib", "train", "plots")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _render(make: Callable[[Any], Any], fmt: str = "png") -> bytes:
    """``make(plt) -> Figure`` drawn in :data:`STYLE`, as ``fmt`` bytes; the figure is closed."""
    if fmt not in FORMATS:
        raise ConfigError(f"figures are drawn as {' or '.join(FORMATS)}; got {fmt!r}")
    plt = _pyplot()
    with plt.rc_context(STYLE):
        fig = make(plt)
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt)
        finally:
            plt.close(fig)
    return buf.getvalue()


def _format_of(path: str | Path) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise ConfigError(
            f"unknown figure format {('.' + ext) if ext else '(no extension)'!r} for {str(path)!r}; "
            f"use one of {', '.join('.' + f for f in FORMATS)}"
        )
    return ext


def _write(make: Callable[[Any], Any], path: str | Path) -> Path:
    return atomic_write_bytes(path, _render(make, _format_of(path)))


# ---------------------------------------------------------------------------------------- curves
def plot_curves(records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Training curves from metrics.jsonl records: train and validation loss in the first panel,
    then one panel per numeric validation metric. None when there is nothing to plot."""
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    metric_keys = sorted(
        {k for r in evals for k in r if k.startswith("val_") and k != "val_loss" and isinstance(r[k], (int, float))}
    )

    def make(plt):
        n = 1 + len(metric_keys)
        cols = min(n, 3)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
        ax = axes[0][0]
        if train:
            ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
        ev = [r for r in evals if "val_loss" in r]
        if ev:
            ax.plot([r["step"] for r in ev], [r["val_loss"] for r in ev], "o-", label="val loss", ms=3)
        ax.set_xlabel("step")
        ax.set_title("loss")
        ax.legend()
        for i, key in enumerate(metric_keys, start=1):
            ax = axes[i // cols][i % cols]
            ev = [r for r in evals if key in r]
            ax.plot([r["step"] for r in ev], [r[key] for r in ev], "o-", ms=3)
            ax.set_title(key)
            ax.set_xlabel("step")
        for j in range(n, rows * cols):
            axes[j // cols][j % cols].axis("off")
        fig.tight_layout()
        return fig

    return _write(make, path)


# ------------------------------------------------------------------------------------ bar charts
def _bars(
    ax, labels: Sequence[str], values: Sequence[float], title: str, value_format: Callable[[float], str] = fmt_count
) -> None:
    """Horizontal bars, first label on top, each value written beside its bar; a log axis when
    the values span more than a decade (non-positive values are drawn as 1)."""
    values = [max(v, 1) for v in values]
    ax.barh(list(labels), values, color=BAR_COLOR)
    if max(values) / min(values) > 10:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, " " + value_format(v), va="center", fontsize=8)
    ax.grid(axis="x")


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    path: str | Path | None = None,
    *,
    title: str = "",
    value_format: Callable[[float], str] = fmt_count,
    fmt: str = "png",
) -> bytes | Path:
    """One horizontal bar chart: the bytes (``fmt``), or the path written when ``path`` is given."""
    if len(labels) != len(values) or not labels:
        raise ConfigError(
            f"bar_chart needs one value per label (at least one); got {len(labels)} labels, {len(values)} values"
        )

    def make(plt):
        fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(labels) + 1.6))
        _bars(ax, labels, values, title, value_format)
        fig.tight_layout()
        return fig

    return _write(make, path) if path is not None else _render(make, fmt)


def compare_chart(
    rows: Sequence[dict[str, Any]],
    metrics: Sequence[tuple[str, str]],
    path: str | Path | None = None,
    *,
    fmt: str = "png",
) -> bytes | Path:
    """The model comparison: one bar panel per ``(title, key)`` of ``metrics`` over ``rows`` (each
    with a ``model`` name); keys ending in ``bytes`` are labelled in bytes, others as counts.

    Returns:
        The chart as ``fmt`` bytes, or the path written when ``path`` (.png / .svg) is given.
    """
    if not rows or not metrics:
        raise ConfigError("compare_chart needs at least one row and one metric")
    names = [str(r["model"]) for r in rows]

    def make(plt):
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 0.45 * len(rows) + 2.2), squeeze=False)
        for ax, (title, key) in zip(axes[0], metrics):
            _bars(ax, names, [r[key] for r in rows], title, fmt_bytes if "bytes" in key else fmt_count)
        fig.suptitle("Model comparison")
        fig.tight_layout()
        return fig

    return _write(make, path) if path is not None else _render(make, fmt)


# -------------------------------------------------------------------------------- task pictures
def _image_grid(plt, p: ImageGrid):
    n = p.images.shape[0]
    cols = p.cols or min(n, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + (0.4 if p.title else 0)), squeeze=False)
    imgs = p.images.float().clamp(0, 1)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = imgs[i]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")  # (C, H, W) -> (H, W, C)
        if p.titles is not None and i < len(p.titles):
            ax.set_title(p.titles[i], fontsize=7)
    if p.title:
        fig.suptitle(p.title, fontsize=9)
    return fig


def _points(plt, p: PointsPlot):
    s = p.samples.float()
    real = p.real.float() if p.real is not None else None
    panels = 1 + (real is not None) + (p.log_prob is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    axes = list(axes[0])
    both = torch.cat([s] + ([real] if real is not None else []))
    lo, hi = both.quantile(0.005, dim=0) - 0.5, both.quantile(0.995, dim=0) + 0.5
    k = 0
    if real is not None:
        axes[k].scatter(real[:, 0], real[:, 1], s=3, alpha=0.5, color="tab:gray")
        axes[k].set_title("data")
        k += 1
    axes[k].scatter(s[:, 0], s[:, 1], s=3, alpha=0.5, color="tab:blue")
    axes[k].set_title("samples")
    k += 1
    if p.log_prob is not None:
        gx, gy = torch.meshgrid(
            torch.linspace(float(lo[0]), float(hi[0]), 120),
            torch.linspace(float(lo[1]), float(hi[1]), 120),
            indexing="xy",
        )
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (120 * 120, 2)
        with torch.no_grad():
            dens = p.log_prob(grid).exp().reshape(120, 120).cpu()
        axes[k].imshow(
            dens.numpy(),
            origin="lower",
            extent=(float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])),
            cmap="viridis",
            aspect="auto",
        )
        axes[k].set_title("model density")
    for ax in axes:
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
    if p.title:
        fig.suptitle(p.title, fontsize=9)
    return fig


def _forecast(plt, p: ForecastPlot):
    fig, ax = plt.subplots(figsize=(9, 3.5))
    steps = range(len(p.actual))

    def mae(f: torch.Tensor) -> float:
        return float((f - p.actual).abs().mean())

    ax.plot(steps, p.actual.numpy(), "k-", lw=1.5, label="actual")
    ax.plot(steps, p.predicted.numpy(), "-", lw=1.2, label=f"model (MAE {mae(p.predicted):.3g})")
    ax.plot(steps, p.naive.numpy(), "--", lw=1, label=f"seasonal naive (MAE {mae(p.naive):.3g})")
    ax.set_xlabel("held-out step")
    ax.set_title(p.title)
    ax.legend()
    fig.tight_layout()
    return fig


_DRAWERS: dict[type, Callable[[Any, Any], Any]] = {ImageGrid: _image_grid, PointsPlot: _points, ForecastPlot: _forecast}


def picture_bytes(picture: Picture, fmt: str = "png") -> bytes:
    """A task's picture as PNG or SVG bytes."""
    drawer = _DRAWERS.get(type(picture))
    if drawer is None:
        raise ConfigError(f"draw knows {', '.join(t.__name__ for t in _DRAWERS)}; got {type(picture).__name__}")
    return _render(lambda plt: drawer(plt, picture), fmt)


def draw(picture: Picture, path: str | Path) -> Path:
    """Draw a task's picture (:mod:`archlab.tasks.pictures`) to ``path`` (.png or .svg), atomically."""
    return atomic_write_bytes(path, picture_bytes(picture, _format_of(path)))
