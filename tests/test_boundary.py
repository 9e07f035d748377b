"""The model boundary, the same in every family: float64 inputs are refused naming the dtype the
model expects, an empty batch (B = 0) is refused with "at least one sample", and the example
input runs at any batch size."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.errors import ShapeError

NAMES = archlab.list_models()


def _float_args(args) -> bool:
    return any(isinstance(a, torch.Tensor) and a.is_floating_point() for a in args)


@pytest.mark.parametrize("name", NAMES)
def test_model_boundary(name):
    """One build per model (the large presets dominate the time): float64, B = 0, B = 1, B = 5."""
    model = archlab.create(name).eval()
    args = model.example_input(batch_size=2)
    with torch.no_grad():
        # float64 is refused, naming the dtype the model expects
        if _float_args(args):
            doubled = tuple(a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
            with pytest.raises(ShapeError, match=r"float32 \(the model's dtype\); got .* float64") as info:
                model(*doubled)
            assert name in str(info.value)
        # an empty batch is refused the same way in every family
        batch = args[0].shape[0]
        empty = tuple(a[:0] if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == batch else a for a in args)
        with pytest.raises(ShapeError, match=r">= 1 \(at least one sample\); got \(0") as info:
            model(*empty)
        assert name in str(info.value)
        # the example input runs at any batch size
        for batch_size in (1, 5):
            out = model(*model.example_input(batch_size=batch_size))
            first = out[0] if isinstance(out, (tuple, list)) else out
            assert isinstance(first, torch.Tensor)


def test_float64_model_takes_float64_input():
    model = archlab.create("mlp_tabular").double().eval()
    assert model(torch.randn(3, 30, dtype=torch.float64)).dtype == torch.float64
