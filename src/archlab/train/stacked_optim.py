"""A vectorised Adam/AdamW over stacked parameters, each member with its own hyper-parameters.

Every tensor here has the member dimension first: a parameter of shape ``S`` is stacked as
``(N, *S)``. The update is torch's single-tensor Adam/AdamW (the CPU default of
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
    """Adam or AdamW (``cfg.optimizer``) over stacked parameters.

    Args:
        params: stacked parameters by name, each ``(N, *S)``; updated in place.
        cfgs: one training config per member (lr, weight_decay, betas are read per member).
    """

    def __init__(self, params: dict[str, torch.Tensor], cfgs: list[TrainConfig]):
        kinds = {c.optimizer for c in cfgs}
        if len(kinds) != 1 or not kinds <= {"adam", "adamw"}:
            raise ConfigError(f"a stack trains with one of adam / adamw for every member; got {sorted(kinds)}")
        self.decoupled = kinds == {"adamw"}
        self.params = params
        device = next(iter(params.values())).device
        n = len(cfgs)
        per = lambda values: torch.tensor(values, dtype=torch.float32, device=device)  # noqa: E731
        self.weight_decay = per([c.weight_decay for c in cfgs])
        self.beta1, self.beta2 = per([c.betas[0] for c in cfgs]), per([c.betas[1] for c in cfgs])
        self.step_count = torch.zeros(n, dtype=torch.float32, device=device)
        self.exp_avg = {k: torch.zeros_like(p) for k, p in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in params.items()}

    @staticmethod
    def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(N,)`` -> ``(N, 1, ..., 1)`` to broadcast over a stacked tensor."""
        return v.reshape((-1,) + (1,) * (like.ndim - 1))

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor, active: torch.Tensor) -> None:
        """One update of every active member.

        Args:
            grads: stacked gradients by parameter name.
            lr: ``(N,)`` this step's learning rate per member.
            active: ``(N,)`` bool; inactive members are left exactly as they are.
        """
        act = active.to(self.step_count.dtype)
        self.step_count += act
        step = self.step_count.clamp(min=1)
        bc1 = 1 - self.beta1**step
        bc2_sqrt = (1 - self.beta2**step).sqrt()
        lr = lr.to(self.step_count.dtype) * act  # an inactive member moves by zero ...
        for name, p in self.params.items():
            g = grads[name]
            keep = self._bcast(~active, p)  # ... and its moments and decay are put back below
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            decays = p.ndim >= 3  # a member parameter with ndim >= 2 (param_groups' rule)
            wd = self._bcast(self.weight_decay, p) if decays else None
            old = (p.clone(), m.clone(), v.clone()) if bool(keep.any()) else None
            if wd is not None and self.decoupled:
                p.mul_(1 - self._bcast(lr, p) * wd)
            elif wd is not None:
                g = g + wd * p  # Adam: L2 added to the gradient
            m.lerp_(g, 1 - self._bcast(self.beta1, p))
            b2 = self._bcast(self.beta2, p)
            v.mul_(b2).addcmul_(g, g * (1 - b2))
            denom = (v.sqrt() / self._bcast(bc2_sqrt, p)).add_(EPS)
            p.sub_(m.div(denom).mul_(self._bcast(lr / bc1, p)))  # addcdiv_(m, denom, value=-step_size)
            if old is not None:
                for t, o in zip((p, m, v), old):
                    t.copy_(torch.where(keep, o, t))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything a resume needs, by name (moments, step counts)."""
        out = {"opt.step": self.step_count}
        out.update({f"opt.exp_avg.{k}": v for k, v in self.exp_avg.items()})
        out.update({f"opt.exp_avg_sq.{k}": v for k, v in self.exp_avg_sq.items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Put back what :meth:`state_tensors` returned (from a checkpoint)."""
        self.step_count.copy_(tensors["opt.step"])
        for k in self.params:
            self.exp_avg[k].copy_(tensors[f"opt.exp_avg.{k}"])
            self.exp_avg_sq[k].copy_(tensors[f"opt.exp_avg_sq.{k}"])
