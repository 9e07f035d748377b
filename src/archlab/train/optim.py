"""Optimizers with decay / no-decay parameter groups, and learning-rate schedules.

Weight decay applies to weights, not to LayerNorm parameters or biases (Loshchilov & Hutter
2019; nanoGPT). The rule used here is the
nanoGPT one: parameters with ``ndim >= 2`` (matrices, conv kernels, embeddings) decay; those with
``ndim < 2`` (biases, norm scales and shifts) do not. Every schedule is a ``LambdaLR`` of plain
arithmetic, so its state is a few numbers that save as JSON (no pickled closures).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.transfer import lr_scale, num_layers


def param_groups(params: Iterable[tuple[str, nn.Parameter]] | nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group (ndim >= 2) and a non-decayed one.

    Args:
        params: a module, or ``(name, parameter)`` pairs.
        weight_decay: decay of the first group.

    Returns:
        Parameter groups for a torch optimizer; empty groups are left out, and a single group is
        returned when ``weight_decay`` is 0 (nothing to separate).
    """
    named = list(params.named_parameters() if isinstance(params, nn.Module) else params)
    trainable = [(n, p) for n, p in named if p.requires_grad]
    if weight_decay == 0:
        return [{"params": [p for _, p in trainable], "weight_decay": 0.0, "names": [n for n, _ in trainable]}]
    decay = [(n, p) for n, p in trainable if p.ndim >= 2]
    no_decay = [(n, p) for n, p in trainable if p.ndim < 2]
    groups = []
    if decay:
        groups.append({"params": [p for _, p in decay], "weight_decay": weight_decay, "names": [n for n, _ in decay]})
    if no_decay:
        groups.append({"params": [p for _, p in no_decay], "weight_decay": 0.0, "names": [n for n, _ in no_decay]})
    return groups


def transfer_groups(groups: list[dict], cfg: TrainConfig) -> list[dict]:
    """Split each group by learning rate: the head's ``transfer.head_lr`` and layer-wise decay.

    Each returned group carries its own ``lr`` (peak, before the schedule's factor); without a
    head lr or layer decay the groups are returned unchanged.
    """
    t = cfg.transfer
    if t.head_lr is None and t.layer_decay is None:
        return groups
    n_layers = num_layers([n for g in groups for n in g["names"]])
    out = []
    for g in groups:
        by_scale: dict[float, list[int]] = {}
        for i, name in enumerate(g["names"]):
            by_scale.setdefault(lr_scale(name, t, cfg.lr, n_layers), []).append(i)
        for scale, idx in sorted(by_scale.items()):
            out.append(
                {
                    "params": [g["params"][i] for i in idx],
                    "weight_decay": g["weight_decay"],
                    "names": [g["names"][i] for i in idx],
                    "lr": cfg.lr * scale,
                }
            )
    return out


def _kernel_options(groups: list[dict], fused: bool | None) -> dict:
    """``{"fused": True}`` to run the optimizer as one fused kernel, else ``{}`` (torch's default).

    Torch's default on CPU is a Python loop over the tensors (its ``foreach`` path is for
    accelerators only); the fused kernel (CPU since torch 2.4) updates every tensor in one call:
    on the char-LM benchmark's 4-layer GPT it is a few percent of a step. Results differ from
    the loop in the last bits, so it is an option (``fused``), not the default.
    """
    if not fused:
        return {}
    params = [p for g in groups for p in g["params"]]
    bad = sorted({str(p.dtype) for p in params if not p.is_floating_point()})
    if bad:
        raise ConfigError(f"fused=True needs floating-point parameters; got {', '.join(bad)}")
    return {"fused": True}


def build_optimizer(params: nn.Module | Iterable[tuple[str, nn.Parameter]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` over ``params`` with decay / no-decay (and transfer lr) groups."""
    groups = transfer_groups(param_groups(params, cfg.weight_decay), cfg)
    if not any(g["params"] for g in groups):
        raise ConfigError("the model has no trainable parameters (all have requires_grad=False)")
    for g in groups:
        g.pop("names")
    kw = _kernel_options(groups, cfg.fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **kw)
    if cfg.optimizer == "adam":
        # Adam's weight_decay is L2 added to the gradient (not decoupled); kept per group.
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, **kw)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **kw)
    raise ConfigError(f"optimizer={cfg.optimizer!r} must be adamw, adam or sgd")


def lr_factor(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based) of ``total_steps``."""
    total = max(1, total_steps)
    if cfg.schedule == "constant":
        warm = cfg.warmup_steps or 0
        return min(1.0, (step + 1) / warm) if warm and step < warm else 1.0
    if cfg.schedule == "step":
        size = cfg.step_size or max(1, total // 3)
        return cfg.gamma ** (step // size)
    if cfg.schedule == "warmup_cosine":
        warm = cfg.warmup_steps if cfg.warmup_steps is not None else int(0.05 * total)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "onecycle":
        # Smith & Topin 2017 as torch's OneCycleLR: lr/25 -> lr over 30% (or warmup_steps), then
        # cosine down to lr/(25*1e4). Momentum is not cycled.
        start, end = 1 / 25, 1 / 25 / 1e4
        warm = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, int(0.3 * total))
        if step < warm:
            t = step / max(1, warm)
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * t))
        t = min(1.0, (step - warm) / max(1, total - warm))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t))
    raise ConfigError(f"schedule={cfg.schedule!r} must be warmup_cosine, onecycle, step or constant")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """A LambdaLR following ``cfg.schedule``, or None for a constant lr without warmup.

    The lambda is a plain closure, so ``state_dict()`` holds only numbers (JSON-safe); the
    schedule itself is rebuilt from the config on resume.
    """
    if cfg.schedule == "constant" and not cfg.warmup_steps:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, total_steps))
