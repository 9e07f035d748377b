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

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from archlab.data.base import DataBundle
from archlab.train import TrainConfig

#: highest suggestion: an AdamW rate above 1e-2 rarely trains a deep network (a sweep whose loss
#: is still falling at its end would suggest 0.1); the search's multiplier can still go 3x higher
MAX_LR = 1e-2


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
) -> LRRange:
    """Sweep ``steps`` learning rates from ``lr_min`` to ``lr_max`` on ``model`` (trained in place:
    pass a copy) and suggest ``factor`` x the rate at the smoothed loss minimum.

    A task with its own optimisation (several optimizers, a GAN) or a sweep whose loss never
    falls gets ``fallback``, with the reason in ``note``.
    """
    rng_state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        return _sweep(model, data, task, batch_size, steps, lr_min, lr_max, factor, fallback)
    finally:
        torch.set_rng_state(rng_state)


def _sweep(model, data, task, batch_size, steps, lr_min, lr_max, factor, fallback) -> LRRange:
    cfg = TrainConfig.build({"lr": lr_min, "batch_size": batch_size, "max_steps": steps})
    task.setup(data, cfg, torch.device("cpu"))
    optimizers, _ = task.configure_optimizers(model, cfg, steps)
    if len(optimizers) != 1:
        return LRRange(fallback, None, note="the task trains several optimizers: the recipe's rate is used")
    opt = optimizers[0]
    gamma = (lr_max / lr_min) ** (1 / max(1, steps - 1))
    n = len(data.train)
    gen = torch.Generator().manual_seed(0)
    lrs, losses, smooth = [], [], None
    model.train()
    for i in range(steps):
        lr = lr_min * gamma**i
        for g in opt.param_groups:
            g["lr"] = lr
        # a whole graph is one batch (its training nodes masked); anything else: a random batch
        pick = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        batch = data.train.take(pick) if data.train.indexable else data.train
        loss = task.batch_loss(task.forward(model, batch), batch)
        if not torch.isfinite(loss):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        smooth = value if smooth is None else 0.7 * smooth + 0.3 * value  # exponential moving average
        lrs.append(lr)
        losses.append(smooth)
        if smooth > 4 * min(losses):  # diverged: the rest of the sweep says nothing more
            break
    if len(losses) < 5 or min(losses) >= losses[0]:
        return LRRange(fallback, None, lrs, losses, note="the loss did not fall during the sweep")
    best = min(range(len(losses)), key=losses.__getitem__)
    suggestion = min(max(lrs[best] * factor, 1e-5), MAX_LR)
    return LRRange(float(suggestion), float(lrs[best]), lrs, [round(v, 6) for v in losses])
