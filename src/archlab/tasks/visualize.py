"""Pictures of generated samples: image grids, 2-D point clouds and flow density maps (matplotlib).

Each function writes a PNG atomically and returns its path; the caller decides where.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable, Sequence

import torch

from archlab.errors import ShapeError, require
from archlab.io import atomic_write_bytes


def _plt():
    matplotlib = require("matplotlib", "train", "sample plots")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def image_grid(images: torch.Tensor, path: str | Path, *, titles: Sequence[str] | None = None,
               title: str | None = None, cols: int | None = None) -> Path:
    """Write (N, C, H, W) images with values in [0, 1] as one grid PNG (C = 1 grey or 3 RGB)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"image_grid expects images (N, 1 or 3, H, W); got {tuple(images.shape)}")
    plt = _plt()
    n = images.shape[0]
    cols = cols or min(n, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + (0.4 if title else 0)), squeeze=False)
    imgs = images.detach().float().clamp(0, 1).cpu()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = imgs[i]
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")  # (C, H, W) -> (H, W, C)
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def points_plot(samples: torch.Tensor, path: str | Path, *, real: torch.Tensor | None = None,
                log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None, title: str | None = None) -> Path:
    """Scatter (N, 2) samples beside real data; with ``log_prob`` also the model's density map."""
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ShapeError(f"points_plot expects samples (N, 2); got {tuple(samples.shape)}")
    plt = _plt()
    panels = 2 + (log_prob is not None) if real is not None else 1 + (log_prob is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    axes = list(axes[0])
    s = samples.detach().float().cpu()
    pts = [s] + ([real.detach().float().cpu()] if real is not None else [])
    allp = torch.cat(pts)
    lo, hi = allp.quantile(0.005, dim=0) - 0.5, allp.quantile(0.995, dim=0) + 0.5
    k = 0
    if real is not None:
        axes[k].scatter(pts[1][:, 0], pts[1][:, 1], s=3, alpha=0.5, color="tab:gray")
        axes[k].set_title("data")
        k += 1
    axes[k].scatter(s[:, 0], s[:, 1], s=3, alpha=0.5, color="tab:blue")
    axes[k].set_title("samples")
    k += 1
    if log_prob is not None:
        gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 120),
                                torch.linspace(float(lo[1]), float(hi[1]), 120), indexing="xy")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
        with torch.no_grad():
            dens = log_prob(grid).exp().reshape(120, 120).cpu()
        axes[k].imshow(dens.numpy(), origin="lower", extent=(float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])),
                       cmap="viridis", aspect="auto")
        axes[k].set_title("model density")
    for ax in axes:
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_forecast(actual: torch.Tensor, model: torch.Tensor, naive: torch.Tensor, path: str | Path, *,
                  title: str = "forecast") -> Path:
    """Actual values beside the model's and the seasonal-naive forecasts, each (N,), with each
    forecaster's MAE in the legend."""
    if not (actual.shape == model.shape == naive.shape and actual.ndim == 1):
        raise ShapeError(f"plot_forecast expects three (N,) series; got {tuple(actual.shape)}, "
                         f"{tuple(model.shape)}, {tuple(naive.shape)}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    steps = range(len(actual))
    mae = lambda f: float((f - actual).abs().mean())  # noqa: E731
    ax.plot(steps, actual.numpy(), "k-", lw=1.5, label="actual")
    ax.plot(steps, model.numpy(), "-", lw=1.2, label=f"model (MAE {mae(model):.3g})")
    ax.plot(steps, naive.numpy(), "--", lw=1, label=f"seasonal naive (MAE {mae(naive):.3g})")
    ax.set_xlabel("held-out step")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
