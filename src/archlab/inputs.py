"""Example inputs for any module: forward's arguments from a given input, a shape spec or the
module's own ``example_input()``; unwrapping of compiled / DDP modules; meta-device copies.

Used by analysis, benchmarking and export alike, so it sits below all of them.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from archlab.errors import ConfigError


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and DDP/DataParallel wrappers; for a Keras 3
    model (torch backend), its archlab view (:func:`archlab.models.keras_adapter.from_keras`)."""
    from archlab.models.keras_adapter import from_keras, is_keras_model

    if is_keras_model(model):
        return from_keras(model)
    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module) and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            model = inner
            continue
        return model


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers live on the meta device.

    The weights are never copied: a deepcopy memo maps each tensor to a meta twin up front.
    """
    memo: dict[int, Any] = {}
    for t in itertools.chain(module.parameters(), module.buffers()):
        if id(t) in memo:
            continue
        twin = torch.empty_like(t, device="meta")
        if isinstance(t, nn.Parameter):
            twin = nn.Parameter(twin, requires_grad=t.requires_grad)
        memo[id(t)] = twin
    return copy.deepcopy(module, memo)


def float_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def to_device(value: Any, device: str) -> Any:
    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, value)


def parse_shapes(input_shape) -> list[tuple[int, ...]]:
    if isinstance(input_shape, str):
        input_shape = [tuple(int(v) for v in part.split(",") if v.strip()) for part in input_shape.split(";")]
    if isinstance(input_shape, Sequence) and input_shape and all(isinstance(v, int) for v in input_shape):
        return [tuple(input_shape)]
    if isinstance(input_shape, Sequence) and all(isinstance(s, Sequence) for s in input_shape):
        return [tuple(int(v) for v in s) for s in input_shape]
    raise ConfigError(f"input_shape must be a shape like (1, 3, 224, 224) or a list of shapes; got {input_shape!r}")


def make_inputs(
    module: nn.Module, input: Any, input_shape: Any, batch_size: int | None, device: str
) -> tuple[tuple, dict]:
    """Positional and keyword arguments for ``module``'s forward, on ``device``."""
    if input is not None:
        if isinstance(input, torch.Tensor):
            args, kwargs = (input,), {}
        elif isinstance(input, Mapping):  # keyword arguments: a dict, a tokenizer's BatchEncoding
            args, kwargs = (), dict(input)
        elif isinstance(input, (tuple, list)):
            args, kwargs = tuple(input), {}
        else:
            raise ConfigError(
                "input must be a tensor, a tuple of forward's arguments or a mapping of keyword "
                f"arguments; got {type(input).__name__}"
            )
    elif input_shape is not None:
        shapes = parse_shapes(input_shape)
        if batch_size is not None:
            shapes = [(batch_size, *s[1:]) for s in shapes]
        dtype = float_dtype(module)
        args, kwargs = tuple(torch.empty(s, dtype=dtype, device="meta") for s in shapes), {}
        if device != "meta":
            args = tuple(torch.randn(s, dtype=dtype) for s in shapes)
    elif hasattr(module, "example_input"):
        example = module.example_input(batch_size) if batch_size is not None else module.example_input()
        args, kwargs = (tuple(example) if isinstance(example, (tuple, list)) else (example,)), {}
    else:
        raise ConfigError(
            f"{type(module).__name__} has no example_input(); pass input=... or input_shape=(B, ...) "
            "(CLI: --input-shape 1,3,224,224)"
        )
    return to_device(args, device), to_device(kwargs, device)


def batch_of(args: tuple, kwargs: dict) -> int:
    for t in itertools.chain(args, kwargs.values()):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1
