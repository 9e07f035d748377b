"""The fused optimizer option of archlab.train.optim (``fused``: one kernel for every tensor)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.optim import _kernel_options, build_optimizer


class _FusedConfig(TrainConfig):
    """TrainConfig with the ``fused`` field build_optimizer reads (the field the trainer exposes)."""

    fused: bool | None = None


def _train(optimizer: str, fused: bool | None) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    opt = build_optimizer(model, _FusedConfig(optimizer=optimizer, lr=0.01, weight_decay=0.1, fused=fused))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_fused_matches_the_loop(optimizer):
    loop, opt_loop = _train(optimizer, None)
    fused, opt_fused = _train(optimizer, True)
    assert opt_fused.defaults["fused"] is True and not opt_loop.defaults.get("fused")
    assert [g["weight_decay"] for g in opt_fused.param_groups] == [g["weight_decay"] for g in opt_loop.param_groups]
    for a, b in zip(loop, fused):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_rejects_integer_parameters():
    groups = [{"params": [nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)]}]
    with pytest.raises(ConfigError, match="floating-point"):
        _kernel_options(groups, True)
    assert _kernel_options(groups, False) == {}
