"""Training curves from metrics.jsonl: loss (train and validation) and each validation metric."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from archlab.errors import require
from archlab.io import atomic_write_bytes


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Write a PNG of the curves in ``records`` to ``path``; None when there is nothing to plot."""
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    matplotlib = require("matplotlib", "train", "training curves")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metric_keys = sorted({k for r in evals for k in r if k.startswith("val_") and k != "val_loss"
                          and isinstance(r[k], (int, float))})
    n = 1 + len(metric_keys)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    if any("val_loss" in r for r in evals):
        ev = [r for r in evals if "val_loss" in r]
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
