"""Turn what the user passed (a name, a run directory, a module, a compiled module) and an
input spec into a module on the analysis device and the arguments for its forward."""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_map

from archlab.errors import ConfigError

DEVICES = ("meta", "cpu")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and DDP/DataParallel wrappers."""
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


def _saved_model_dir(value: Any) -> Path | None:
    """The directory holding ``config.json`` for a saved model or a training run, else None.

    A training run (``config.yaml`` with ``best/`` / ``last/`` checkpoints) resolves to the
    checkpoint with its final weights, as ``archlab evaluate`` does.
    """
    if not isinstance(value, (str, os.PathLike)) or not Path(value).is_dir():
        return None
    path = Path(value)
    if (path / "config.json").is_file():
        return path
    if (path / "config.yaml").is_file():
        from archlab.train.state import RunDir, final_checkpoint

        return final_checkpoint(path, RunDir(path).read_config())
    return None


def resolve_model(model: nn.Module | str | os.PathLike, device: str, overrides: dict | None = None) -> tuple[nn.Module, str, bool]:
    """(module ready for analysis, display name, whether it is a private copy we may mutate)."""
    if device not in DEVICES and not str(device).startswith("cuda"):
        raise ConfigError(f"device must be one of {list(DEVICES)} (or a cuda device); got {device!r}")
    from archlab.registry import create, create_from_config

    saved_dir = _saved_model_dir(model)
    if saved_dir is not None:
        from archlab.checkpoint import read_config

        meta = read_config(saved_dir)
        cfg = {**meta["config"], **(overrides or {})}
        built = create_from_config({"model": meta["model"], "config": cfg}, device=device)
        return built, f"{meta['model']} ({Path(model).name})", True
    if isinstance(model, (str, os.PathLike)):
        return create(str(model), device=device, **(overrides or {})), str(model), True
    if not isinstance(model, nn.Module):
        raise ConfigError(f"expected an nn.Module, a registry name or a run directory; got {type(model).__name__}")
    if overrides:
        raise ConfigError("config overrides (--set) apply to registry names and run directories, not modules")
    module = unwrap(model)
    name = getattr(module, "registry_name", None) or type(module).__name__
    on_meta = any(t.device.type == "meta" for t in itertools.chain(module.parameters(), module.buffers()))
    if device == "meta":
        if on_meta or not any(True for _ in itertools.chain(module.parameters(), module.buffers())):
            return module, name, False
        return meta_copy(module), name, True
    if on_meta:
        raise ConfigError(f"{name} is on the meta device (no weights); analyse it with device='meta'")
    return module, name, False


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


def _float_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _to_device(value: Any, device: str) -> Any:
    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, value)


def _parse_shapes(input_shape) -> list[tuple[int, ...]]:
    if isinstance(input_shape, str):
        input_shape = [tuple(int(v) for v in part.split(",") if v.strip()) for part in input_shape.split(";")]
    if isinstance(input_shape, Sequence) and input_shape and all(isinstance(v, int) for v in input_shape):
        return [tuple(input_shape)]
    if isinstance(input_shape, Sequence) and all(isinstance(s, Sequence) for s in input_shape):
        return [tuple(int(v) for v in s) for s in input_shape]
    raise ConfigError(f"input_shape must be a shape like (1, 3, 224, 224) or a list of shapes; got {input_shape!r}")


def make_inputs(module: nn.Module, input: Any, input_shape: Any, batch_size: int | None,
                device: str) -> tuple[tuple, dict]:
    """Positional and keyword arguments for ``module``'s forward, on ``device``."""
    if input is not None:
        if isinstance(input, torch.Tensor):
            args, kwargs = (input,), {}
        elif isinstance(input, Mapping):  # keyword arguments: a dict, a tokenizer's BatchEncoding
            args, kwargs = (), dict(input)
        elif isinstance(input, (tuple, list)):
            args, kwargs = tuple(input), {}
        else:
            raise ConfigError("input must be a tensor, a tuple of forward's arguments or a mapping of keyword "
                              f"arguments; got {type(input).__name__}")
    elif input_shape is not None:
        shapes = _parse_shapes(input_shape)
        if batch_size is not None:
            shapes = [(batch_size, *s[1:]) for s in shapes]
        dtype = _float_dtype(module)
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
    return _to_device(args, device), _to_device(kwargs, device)


def batch_of(args: tuple, kwargs: dict) -> int:
    for t in itertools.chain(args, kwargs.values()):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1


@contextlib.contextmanager
def preserved_state(module: nn.Module, private: bool) -> Iterator[None]:
    """Restore buffers (e.g. BatchNorm running stats) of a user's module after a forward."""
    if private:
        yield
        return
    saved = {k: v.detach().clone() for k, v in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in module.named_buffers():
                if k in saved:
                    v.copy_(saved[k])


def check_cpu_rerun_possible(model: Any, exc: BaseException) -> None:
    """Before re-running on the CPU after a data-dependent failure on meta tensors: a module
    whose weights are on the meta device cannot run there, so say what happened instead."""
    if not isinstance(model, nn.Module):
        return
    module = unwrap(model)
    if any(t.device.type == "meta" for t in itertools.chain(module.parameters(), module.buffers())):
        raise ConfigError(
            f"{type(module).__name__} is on the meta device and its forward needs tensor values that meta "
            f"tensors do not have ({str(exc).splitlines()[0][:160]}); build it with real weights to analyse "
            "it on the cpu, or leave out the input that needs them (e.g. a Hugging Face attention_mask "
            "with no padding)"
        ) from exc


def is_data_dependent_error(exc: BaseException) -> bool:
    """Whether a failure on meta tensors comes from an op that needs real values
    (``.item()``, ``nonzero``, boolean masks), so a CPU run can succeed."""
    text = str(exc)
    return any(k in text for k in ("meta tensor", "meta_nonzero", "data-dependent", "on meta", "'meta'", "Meta"))
