"""archlab's default training length for a recommended model: scaled to the data, capped by compute.

The engine's own defaults (``TrainConfig``: AdamW, lr 1e-3, batch 64, 10 epochs) are tuned for
nothing in particular; 10 epochs of batch 64 is 20 optimizer steps on a 100-row table and thousands
on a large image set. :func:`train_recipe` keeps every optimiser default and sets only the length:

- batch size: 64, or smaller so that an epoch has at least :data:`MIN_BATCHES` batches (at least 8);
- steps: :data:`EPOCHS` epochs, clamped to [:data:`MIN_STEPS`, :data:`MAX_STEPS`];
- and, when the forward FLOPs per sample are known, at most ``flops_budget`` training FLOPs
  (3x the forward FLOPs per sample seen: forward + backward), so a large model on large inputs
  stops at a predictable cost (at least :data:`FLOOR_STEPS` steps).

No per-dataset tuning: the same rule for every dataset, so a benchmark of it measures the advisor.
"""

from __future__ import annotations

import math
from typing import Any

EPOCHS = 50
MIN_STEPS = 400
MAX_STEPS = 800
MIN_BATCHES = 4
FLOOR_STEPS = 20
TRAIN_FLOPS_PER_FORWARD = 3  # backward costs about twice the forward


def default_batch_size(n_samples: int | None) -> int:
    """64, or the largest power of two that still gives ``MIN_BATCHES`` batches an epoch (>= 8)."""
    if not n_samples:
        return 64
    b = 2 ** int(math.floor(math.log2(max(n_samples / MIN_BATCHES, 1))))
    return int(min(64, max(8, b)))


def train_recipe(
    n_samples: int | None, *, flops_per_sample: float | None = None, flops_budget: float | None = None
) -> tuple[dict[str, Any], str]:
    """Training settings (``batch_size``, ``max_steps``) for ``n_samples`` training samples.

    Args:
        n_samples: training samples (nodes for one graph; windows for a series).
        flops_per_sample: forward FLOPs of the model for one sample (``RecCandidate.flops``).
        flops_budget: most training FLOPs to spend (needs ``flops_per_sample``).

    Returns (settings for ``archlab.runs.fit(..., **settings)`` / a run file's ``train:`` section,
    a one-line explanation of the length chosen).
    """
    batch = default_batch_size(n_samples)
    per_epoch = math.ceil((n_samples or batch) / batch)
    steps = min(max(EPOCHS * per_epoch, MIN_STEPS), MAX_STEPS)
    why = f"{EPOCHS} epochs of {per_epoch} batches, clamped to [{MIN_STEPS}, {MAX_STEPS}] steps"
    if flops_per_sample and flops_budget:
        cap = int(flops_budget / (TRAIN_FLOPS_PER_FORWARD * flops_per_sample * batch))
        if cap < steps:
            steps, why = max(cap, FLOOR_STEPS), f"compute cap {flops_budget:.0e} training FLOPs"
    return {"batch_size": batch, "max_steps": int(steps)}, why


__all__ = ["default_batch_size", "train_recipe"]
