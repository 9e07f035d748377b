"""What is benchmarked or exported: anything :func:`archlab.subject.resolve_subject` takes,
turned into a module with its weights, example inputs at any batch size, and (for subprocesses)
a description that rebuilds it without pickling."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.inputs import make_inputs, to_device, unwrap
from archlab.subject import resolve_subject

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


@dataclass
class Source:
    """A resolved model.

    Attributes:
        module: the module, weights loaded, in eval mode.
        name: display name.
        spec: how a fresh process rebuilds it (``{"kind": "name"|"path", ...}``); None for a module.
        run_dir: the run directory when given one (its data_info.json, test split).
        input: the user's example input, if any (a tensor, a tuple of args, a dict of kwargs).
        info: the run's data_info.json (normalisation, class names, vocabulary), else {}.
    """

    module: nn.Module
    name: str
    spec: dict[str, Any] | None = None
    run_dir: Path | None = None
    input: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def inputs(self, batch_size: int) -> tuple[tuple, dict]:
        """Forward's (args, kwargs) at ``batch_size`` on the CPU."""
        if self.input is None:
            return make_inputs(self.module, None, None, batch_size, "cpu")
        args, kwargs = make_inputs(self.module, self.input, None, None, "cpu")
        return resize_batch(args, kwargs, batch_size)


def resize_batch(args: tuple, kwargs: Mapping[str, Any], batch_size: int) -> tuple[tuple, dict]:
    """The inputs at another batch size: rows are repeated cyclically (or cut) along dim 0."""
    from archlab.inputs import batch_of

    n = batch_of(args, dict(kwargs))
    idx = torch.arange(batch_size) % n

    def take(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == n:
            return t[idx].contiguous()
        return t

    return tuple(take(a) for a in args), {k: take(v) for k, v in kwargs.items()}


def torch_dtype(dtype: str | torch.dtype | None, module: nn.Module) -> tuple[str, torch.dtype]:
    """(name, torch dtype) of a dtype request; None means the module's own float dtype."""
    from archlab.inputs import float_dtype

    if dtype is None:
        dtype = float_dtype(module)
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in _DTYPES.items()}
        if dtype not in names:
            raise ConfigError(f"dtype must be one of {sorted(_DTYPES)}; got {dtype}")
        return names[dtype], dtype
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(_DTYPES)}; got {dtype!r}")
    return dtype, _DTYPES[dtype]


def cast_inputs(args: tuple, kwargs: dict, dtype: torch.dtype) -> tuple[tuple, dict]:
    def cast(t: Any) -> Any:
        return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def resolve(
    model: nn.Module | str | os.PathLike, input: Any = None, *, overrides: dict[str, Any] | None = None
) -> Source:
    """A :class:`Source` for anything :func:`archlab.subject.resolve_subject` takes (a design
    directory: its winner's run), with its trained weights."""
    subject = resolve_subject(model, follow_design=True)
    if subject.kind in ("module", "python"):
        module = unwrap(subject.build(overrides=overrides))
        name = getattr(module, "registry_name", None) or type(module).__name__
        return Source(module.eval(), name, None, None, input)
    if subject.kind == "registry":
        module = subject.build(overrides=overrides).eval()
        spec = {"kind": "name", "name": str(subject.name), "overrides": dict(overrides or {})}
        return Source(module, str(subject.name), spec, None, input)
    if overrides:
        raise ConfigError("config overrides apply to registry names, not saved models or run directories")
    module = subject.load().eval()  # an export folder: says it holds no nn.Module
    path = Path(model)
    name = f"{getattr(module, 'registry_name', type(module).__name__)} ({path.name})"
    run_dir = subject.path if subject.kind == "run" else None
    spec = {"kind": "path", "path": str(path.resolve())}
    return Source(module, name, spec, run_dir, input, subject.data_info())


def portable_spec(source: Source, work_dir: Path) -> dict[str, Any]:
    """A JSON spec a fresh process can rebuild ``source`` from, saving what it must to ``work_dir``
    (weights as safetensors via :func:`archlab.checkpoint.save`, inputs as safetensors: no pickle)."""
    from safetensors.torch import save_file

    spec = dict(source.spec) if source.spec is not None else None
    if spec is None:
        if not hasattr(source.module, "config"):
            raise ConfigError(
                f"isolate=True needs a registry model, a registry name or a run directory; "
                f"{source.name} has no .config to save it with (pass isolate=False)"
            )
        from archlab.checkpoint import save

        save(source.module, work_dir / "model")
        spec = {"kind": "path", "path": str(work_dir / "model")}
    if source.input is not None:
        args, kwargs = make_inputs(source.module, source.input, None, None, "cpu")
        tensors = {f"arg.{i}": a for i, a in enumerate(args)}
        tensors.update({f"kw.{k}": v for k, v in kwargs.items()})
        if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
            raise ConfigError("isolate=True needs inputs that are tensors (positional or keyword)")
        save_file(
            {k: t.contiguous() for k, t in to_device(tensors, "cpu").items()}, str(work_dir / "input.safetensors")
        )
        spec["input"] = str(work_dir / "input.safetensors")
    return spec


def from_spec(spec: dict[str, Any]) -> Source:
    """Rebuild a :class:`Source` from :func:`portable_spec`'s description."""
    inp = None
    if spec.get("input"):
        from safetensors.torch import load_file

        tensors = load_file(spec["input"])
        args = tuple(tensors[f"arg.{i}"] for i in range(sum(k.startswith("arg.") for k in tensors)))
        kwargs = {k[3:]: v for k, v in tensors.items() if k.startswith("kw.")}
        inp = kwargs if kwargs and not args else args if not kwargs else None
        if inp is None:
            raise ConfigError("isolate=True supports positional or keyword inputs, not both")
    if spec["kind"] == "name":
        return resolve(spec["name"], inp, overrides=spec.get("overrides") or None)
    return resolve(spec["path"], inp)
