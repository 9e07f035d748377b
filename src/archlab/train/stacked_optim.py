"""A vectorised Adam/AdamW over stacked parameters, each member with its own hyper-parameters.

Every member's parameters are one row of an ``(N, P)`` tensor (the stack's parameters are views
of its columns), so a step is a dozen tensor ops whatever the number of members or parameters.
The update is torch's single-tensor Adam/AdamW (the CPU default of
:func:`archlab.train.optim.build_optimizer`) written with per-member learning rate, weight decay
and betas as ``(N,)`` tensors broadcast over each parameter, so one call updates every member.
The decay rule is :func:`archlab.train.optim.param_groups`'s: a member parameter with ``ndim >= 2``
decays, biases and norm parameters do not. A member whose ``active`` flag is False keeps its
parameters and moments exactly (a stopped or pruned member).
"""

from __future__ import annotations

import torch

from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.optim import lr_factor

#: Adam's epsilon, torch's default (build_optimizer leaves it there)
EPS = 1e-8


def lr_table(cfgs: list[TrainConfig], totals: list[int]) -> torch.Tensor:
    """``(N, max(totals))`` float64: member ``i``'s learning rate at optimizer step ``k`` (0-based).

    The same numbers torch's ``LambdaLR`` gives a single run (:func:`archlab.train.optim.lr_factor`
    times the peak lr); past a member's own total the last value repeats (it is masked out there).
    """
    width = max(totals)
    rows = []
    for cfg, total in zip(cfgs, totals):
        row = [cfg.lr * lr_factor(k, cfg, total) for k in range(total)]
        rows.append(row + [row[-1]] * (width - total))
    return torch.tensor(rows, dtype=torch.float64)


class StackedAdam:
    """Adam or AdamW (``cfg.optimizer``) over every member's parameters held as one ``(N, P)`` tensor.

    Args:
        flat: row ``i`` holds member ``i``'s parameters, flattened; updated in place.
        decays: ``(P,)`` bool, True for the entries of parameters that decay (``ndim >= 2``).
        cfgs: one training config per member (lr, weight_decay, betas are read per member).
    """

    def __init__(self, flat: torch.Tensor, decays: torch.Tensor, cfgs: list[TrainConfig]):
        kinds = {c.optimizer for c in cfgs}
        if len(kinds) != 1 or not kinds <= {"adam", "adamw"}:
            raise ConfigError(f"a stack trains with one of adam / adamw for every member; got {sorted(kinds)}")
        self.decoupled = kinds == {"adamw"}
        self.flat = flat

        def per(values):  # (N, 1): one value per member, broadcast over its parameters
            return torch.tensor(values, dtype=flat.dtype, device=flat.device)[:, None]

        self.weight_decay = per([c.weight_decay for c in cfgs]) * decays[None, :].to(flat.dtype)  # (N, P)
        self.beta1, self.beta2 = per([c.betas[0] for c in cfgs]), per([c.betas[1] for c in cfgs])
        self.step_count = torch.zeros(len(cfgs), 1, dtype=flat.dtype, device=flat.device)
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, active: torch.Tensor) -> None:
        """One update of every active member (torch's single-tensor Adam/AdamW, per-member values).

        Args:
            grad: ``(N, P)`` gradients.
            lr: ``(N,)`` this step's learning rate per member.
            active: ``(N,)`` bool; inactive members are left exactly as they are.
        """
        p, m, v = self.flat, self.exp_avg, self.exp_avg_sq
        act = active.to(p.dtype)[:, None]
        keep = None if bool(active.all()) else ~active[:, None]
        old = (p.clone(), m.clone(), v.clone()) if keep is not None else None
        self.step_count += act
        step = self.step_count.clamp(min=1)
        lr = lr.to(p.dtype)[:, None] * act  # an inactive member moves by zero (and is put back below)
        if self.decoupled:
            p.mul_(1 - lr * self.weight_decay)
        else:
            grad = grad + self.weight_decay * p  # Adam: L2 added to the gradient
        m.lerp_(grad, 1 - self.beta1)
        v.mul_(self.beta2).add_(grad * grad * (1 - self.beta2))
        denom = (v.sqrt() / (1 - self.beta2**step).sqrt()).add_(EPS)
        p.sub_(m.div(denom).mul_(lr / (1 - self.beta1**step)))  # addcdiv_(m, denom, value=-step_size)
        if old is not None:
            for t, o in zip((p, m, v), old):
                t.copy_(torch.where(keep, o, t))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything a resume needs, by name (moments, step counts)."""
        return {"opt.step": self.step_count, "opt.exp_avg": self.exp_avg, "opt.exp_avg_sq": self.exp_avg_sq}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Put back what :meth:`state_tensors` returned (from a checkpoint)."""
        for k, t in self.state_tensors().items():
            t.copy_(tensors[k])
