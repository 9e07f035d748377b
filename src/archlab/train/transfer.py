"""Transfer learning options: freezing, a head learning rate, layer-wise lr decay, LoRA adapters.

Common practice: transfer-learn from a pretrained backbone such as ResNet-50 (freeze most layers,
train the head); pretrained encoders and adapters (LoRA, Hu et al. 2021) save time and energy.
The options live in ``TrainConfig.transfer``:

- ``freeze``: glob patterns of parameter names to freeze (``"backbone.embeddings.*"``), or
  ``"all_but_head"`` to train only the parameters matching ``head`` (default ``head.*``).
- ``head_lr``: the head's peak learning rate (the rest use ``lr``).
- ``layer_decay``: layer-wise learning-rate decay (Clark et al. 2020, ELECTRA; BEiT): layer
  ``i`` of ``L`` trains at ``lr * layer_decay ** (L + 1 - i)``, the embeddings (``i = 0``) slowest
  and the head at the full rate. A parameter's layer is the number after ``layer.``, ``layers.``,
  ``blocks.`` or ``h.`` in its name.
- ``lora``: LoRA adapters (Hu et al. 2021, the ``peft`` library) on the named Linear layers of a
  model that offers ``add_lora`` (Hugging Face models, ``hf:SOURCE``); the rest is frozen and a
  saved checkpoint holds only the adapters and the head.

:func:`apply_transfer` is called by the engine before the optimizer is built (idempotent, so a
resumed run applies it again to the rebuilt model); :func:`lr_scale` gives each parameter's
multiple of ``lr`` for :func:`archlab.train.optim.param_groups`.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from typing import Literal

from pydantic import Field
from torch import nn

from archlab.config import ArchConfig
from archlab.errors import ConfigError
from archlab.models.hf import LoraOptions

log = logging.getLogger("archlab.train")

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|blocks|h)\.(\d+)\.")


class TransferConfig(ArchConfig):
    """How a pretrained model is adapted (see the module docstring)."""

    freeze: list[str] | Literal["all_but_head"] = Field(
        default_factory=list, description="Glob patterns of parameter names to freeze, or 'all_but_head'."
    )
    head: list[str] = Field(
        default_factory=lambda: ["head.*"], min_length=1, description="Glob patterns naming the head's parameters."
    )
    head_lr: float | None = Field(None, gt=0, description="Peak learning rate of the head (default: lr).")
    layer_decay: float | None = Field(
        None, gt=0, le=1, description="Layer-wise lr decay: layer i of L trains at lr * decay ** (L + 1 - i)."
    )
    lora: LoraOptions | None = Field(None, description="LoRA adapters (peft) on the model's target Linear layers.")

    @property
    def active(self) -> bool:
        return bool(self.freeze) or self.lora is not None or self.head_lr is not None or self.layer_decay is not None


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def apply_transfer(model: nn.Module, transfer: TransferConfig) -> dict[str, int]:
    """Add LoRA adapters and freeze parameters as ``transfer`` says.

    Returns:
        ``{"trainable": n, "frozen": m}`` parameter counts after the change.

    Raises:
        ConfigError: a pattern matches no parameter, or LoRA is asked of a model without ``add_lora``.
    """
    if transfer.lora is not None:
        add_lora = getattr(model, "add_lora", None)
        if add_lora is None:
            raise ConfigError(
                f"transfer.lora needs a model with LoRA support (a Hugging Face model, hf:SOURCE); "
                f"got {getattr(model, 'registry_name', type(model).__name__)}"
            )
        add_lora(transfer.lora)
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    if transfer.freeze == "all_but_head" or transfer.head_lr is not None:
        if not any(_matches(n, transfer.head) for n in names):
            raise ConfigError(f"transfer.head={transfer.head} matches no parameter; names start {names[:6]}")
    if transfer.freeze == "all_but_head":
        for n, p in named:
            if not _matches(n, transfer.head) and "lora_" not in n:
                p.requires_grad = False
    elif transfer.freeze:
        for pattern in transfer.freeze:
            hits = [p for n, p in named if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise ConfigError(f"transfer.freeze pattern {pattern!r} matches no parameter; names start {names[:6]}")
            for p in hits:
                p.requires_grad = False
    config = getattr(model, "config", None)
    if transfer.freeze and "frozen" in getattr(type(config), "model_fields", {}):
        config.frozen = frozen_names(model)  # the model re-freezes them when rebuilt from its saved config
    counts = {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad),
    }
    if transfer.active:
        log.info("transfer: %d trainable and %d frozen parameters", counts["trainable"], counts["frozen"])
    return counts


def frozen_names(model: nn.Module) -> list[str]:
    """The frozen parameters, as the fewest names: whole modules where all their parameters are frozen."""
    out: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        params = list(module.parameters())
        if prefix and params and not any(p.requires_grad for p in params):
            out.append(prefix)
            return
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                out.append(f"{prefix}.{name}" if prefix else name)
        for name, child in module.named_children():
            visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", model)
    return out


def num_layers(names: list[str]) -> int:
    """Layers counted from parameter names (the largest ``layer.N`` index + 1; 0 without any)."""
    found = [int(m.group(1)) for n in names if (m := _LAYER.search(n))]
    return max(found) + 1 if found else 0


def lr_scale(name: str, transfer: TransferConfig, lr: float, n_layers: int) -> float:
    """The multiple of ``lr`` parameter ``name`` trains at (head lr, then layer-wise decay)."""
    if _matches(name, transfer.head):
        return transfer.head_lr / lr if transfer.head_lr is not None else 1.0
    if transfer.layer_decay is None:
        return 1.0
    m = _LAYER.search(name)
    if m:
        depth = int(m.group(1)) + 1
    elif "embed" in name:
        depth = 0
    else:  # poolers, final norms: above the last layer
        depth = n_layers + 1
    return transfer.layer_decay ** max(0, n_layers + 1 - depth)
