"""The learning-rate range test: a short exponential sweep that gives a family its starting rate.

Smith 2017 ("Cyclical Learning Rates for Training Neural Networks"), as fastai's ``lr_find``
made it common: train for a few dozen steps while the learning rate grows geometrically from
``lr_min`` to ``lr_max``, smooth the loss, and take a rate below the one where the loss is
lowest (a tenth of it): at the minimum the loss is already about to diverge.

The sweep trains a throw-away copy of the model with AdamW on random batches of the training
split; it seeds its own generator and restores the global RNG, so the runs after it are the
same whether or not it ran.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from archlab.data.base import DataBundle
from archlab.train import TrainConfig

#: highest suggestion: an AdamW rate above 1e-2 rarely trains a deep network (a sweep whose loss
#: is still falling at its end would suggest 0.1); the search's multiplier can still go 3x higher
MAX_LR = 1e-2
#: fewest steps of a sweep that a time limit may leave before its suggestion is not trusted
MIN_SWEEP = 10


@dataclass
class LRRange:
    """A finished sweep.

    Attributes:
        lr: the suggested starting learning rate (``factor`` x the rate at the smoothed minimum).
        lr_at_min: the rate at which the smoothed loss was lowest.
        lrs, losses: the sweep (smoothed losses), for a plot.
        note: why the suggestion is the fallback, when it is.
    """

    lr: float
    lr_at_min: float | None
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float | None:
        """The sweep's own cost of one step (None when it took none)."""
        return self.seconds / len(self.lrs) if self.lrs else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_range_test(
    model: torch.nn.Module,
    data: DataBundle,
    task: Any,
    *,
    batch_size: int,
    steps: int = 40,
    lr_min: float = 1e-5,
    lr_max: float = 1.0,
    factor: float = 0.1,
    fallback: float = 3e-3,
    seed: int = 0,
    max_seconds: float | None = None,
) -> LRRange:
    """Sweep ``steps`` learning rates from ``lr_min`` to ``lr_max`` on ``model`` (trained in place:
    pass a copy) and suggest ``factor`` x the rate at the smoothed loss minimum.

    A task with its own optimisation (several optimizers, a GAN), a sweep whose loss never falls,
    or one that ``max_seconds`` cut before :data:`MIN_SWEEP` steps gets ``fallback``, with the
    reason in ``note``.
    """
    rng_state = torch.get_rng_state()
    t0 = time.perf_counter()
    try:
        torch.manual_seed(seed)
        out = _sweep(model, data, task, batch_size, steps, lr_min, lr_max, factor, fallback, max_seconds)
    finally:
        torch.set_rng_state(rng_state)
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def _step(model: torch.nn.Module, task: Any, opt: Any, batch: Any, lr: float) -> float | None:
    """One optimiser step at ``lr``; its loss (None when it is not finite)."""
    for g in opt.param_groups:
        g["lr"] = lr
    loss = task.batch_loss(task.forward(model, batch), batch)
    if not torch.isfinite(loss):
        return None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _sweep(model, data, task, batch_size, steps, lr_min, lr_max, factor, fallback, max_seconds) -> LRRange:
    cfg = TrainConfig.build({"lr": lr_min, "batch_size": batch_size, "max_steps": steps})
    task.setup(data, cfg, torch.device("cpu"))
    optimizers, _ = task.configure_optimizers(model, cfg, steps)
    if len(optimizers) != 1:
        return LRRange(fallback, None, note="the task trains several optimizers: the recipe's rate is used")
    opt = optimizers[0]
    n = len(data.train)
    gen = torch.Generator().manual_seed(0)
    lrs: list[float] = []
    losses: list[float] = []
    model.train()
    i, lr, t0 = 0, lr_min, time.perf_counter()
    while i < steps:
        # a whole graph is one batch (its training nodes masked); anything else: a random batch
        pick = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        loss = _step(model, task, opt, data.train.take(pick) if data.train.indexable else data.train, lr)
        if loss is None:
            break
        lrs.append(lr)
        losses.append(loss if not losses else 0.7 * losses[-1] + 0.3 * loss)  # exponential moving average
        if losses[-1] > 4 * min(losses):  # diverged: the rest of the sweep says nothing more
            break
        if i == 0 and max_seconds is not None:  # the first step's time says how many the sweep can afford
            steps = min(steps, int(max_seconds / max(time.perf_counter() - t0, 1e-9)))
            if steps < MIN_SWEEP:
                return LRRange(
                    fallback,
                    None,
                    lrs,
                    losses,
                    note=f"a sweep of {MIN_SWEEP} steps would take over {max_seconds:.2g} s",
                )
        i += 1
        lr = lr_min * (lr_max / lr_min) ** (i / max(1, steps - 1))  # geometric, over the steps it has
    if len(losses) < 5 or min(losses) >= losses[0]:
        return LRRange(fallback, None, lrs, losses, note="the loss did not fall during the sweep")
    best = min(range(len(losses)), key=losses.__getitem__)
    suggestion = min(max(lrs[best] * factor, 1e-5), MAX_LR)
    return LRRange(float(suggestion), float(lrs[best]), lrs, [round(v, 6) for v in losses])
