"""The model contract, checked for every registered model (timm-style registry tests)."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.errors import ShapeError

NAMES = archlab.list_models()


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _first_batch_dim(args) -> int:
    return args[0].shape[0]


@pytest.mark.parametrize("name", NAMES)
def test_contract(name, tmp_path):
    model = archlab.create(name)
    assert model.config is not None
    assert model.forward.__doc__ and "(" in model.forward.__doc__, "forward must document shapes"
    model.train()
    args = model.example_input(batch_size=3)
    assert isinstance(args, tuple)
    out = model(*args)
    tensors = _tensors(out)
    assert tensors, f"{name} returned no tensor"
    for t in tensors:
        assert torch.isfinite(t).all(), f"{name} output not finite"
    # backward reaches every trainable parameter
    loss = sum(t.float().pow(2).mean() for t in tensors if t.is_floating_point())
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"{name}: no gradient for {no_grad[:5]}"

    # save/load round trip is bitwise (eval mode: dropout off, BN running stats)
    model.eval()
    args = model.example_input(batch_size=2)
    with torch.no_grad():
        before = _tensors(model(*args))
    archlab.save(model, tmp_path / "m")
    loaded = archlab.load(tmp_path / "m").eval()
    with torch.no_grad():
        after = _tensors(loaded(*args))
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert torch.equal(a, b), f"{name}: reloaded outputs differ"

    # config YAML round trip
    cfg = model.config
    assert type(cfg).from_yaml(cfg.to_yaml()) == cfg
    assert type(cfg).from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("name", NAMES)
def test_wrong_rank_raises_shape_error(name):
    model = archlab.create(name).eval()
    args = list(model.example_input(batch_size=2))
    args[0] = args[0].unsqueeze(0)
    with pytest.raises(ShapeError) as info:
        model(*args)
    assert name in str(info.value) and "got" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_meta_device_builds_without_memory(name):
    model = archlab.create(name, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())


def test_every_family_has_capabilities():
    for name in NAMES:
        info = archlab.model_info(name)
        assert info.family and info.modalities and info.tasks and info.description and info.when_to_use
