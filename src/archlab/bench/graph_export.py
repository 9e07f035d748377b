"""Whole-graph capture shared by the benchmark backends and :mod:`archlab.deploy`:
``torch.export`` programs and ONNX files with a dynamic batch (and token sequence) axis.

archlab's models check their inputs' *values* at the boundary (token ids inside the vocabulary,
no all-padding row). Those checks read tensor data (``int(x.min())``), which a symbolic trace
cannot do, and they are input validation, not part of the computation: they return early while
``torch.compiler.is_compiling()`` (only then: eager calls still check), and every exported graph
is verified against eager on real inputs.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.errors import ExportError, require
from archlab.inputs import unwrap


def model_label(module: nn.Module) -> str:
    module = unwrap(module)
    return getattr(module, "registry_name", None) or type(module).__name__


def input_names(module: nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> list[str]:
    """Names of forward's tensor arguments: its parameter names for positional args, then kwargs."""
    try:
        params = [
            p.name
            for p in inspect.signature(unwrap(module).forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = [params[i] if i < len(params) else f"input_{i}" for i in range(len(args))]
    return names + [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]


def flatten_outputs(out: Any) -> list[tuple[str, Any]]:
    """(name, leaf) pairs of a forward's output: a tensor, a tuple/list, a dict or a HF ModelOutput."""
    if isinstance(out, torch.Tensor) or not isinstance(out, (tuple, list, Mapping)):
        return [("output", out)]
    items = list(out.items()) if isinstance(out, Mapping) else [(f"output_{i}", v) for i, v in enumerate(out)]
    flat: list[tuple[str, Any]] = []
    for name, value in items:
        for sub, leaf in flatten_outputs(value):
            flat.append((name if sub == "output" else f"{name}.{sub}", leaf))
    return [(n, v) for n, v in flat if isinstance(v, torch.Tensor)]


def is_token_input(t: Any) -> bool:
    """An integer (or bool mask) tensor shaped (B, T): its dimension 1 is a sequence. Higher-rank
    integer inputs (a recommender's (B, fields, bag) ids) have fixed inner dimensions."""
    return isinstance(t, torch.Tensor) and t.dim() == 2 and not t.is_floating_point() and not t.is_complex()


def dynamic_shapes(args: tuple, kwargs: Mapping[str, Any], *, sequence: bool = True) -> tuple[tuple, dict]:
    """``torch.export`` dynamic-shape specs: dimension 0 of every tensor is the batch, and
    dimension 1 of token inputs the sequence (``Dim.AUTO``: dynamic where the model allows)."""

    def spec(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return None
        d = {0: torch.export.Dim.AUTO}
        if sequence and is_token_input(t):
            d[1] = torch.export.Dim.AUTO
        return d

    return tuple(spec(a) for a in args), {k: spec(v) for k, v in kwargs.items()}


def op_of(exc: BaseException) -> str | None:
    """The aten / ONNX op an exporter error is about, if its message names one."""
    text = f"{exc}\n{exc.__cause__ or ''}"
    m = re.search(r"\baten[.:]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?", text)
    if m:
        return m.group(0).replace("::", ".")
    m = re.search(r'File "([^"]+)", line (\d+), in (\w+)\n\s+(.+)', text)
    if m:
        return f"{Path(m.group(1)).name}:{m.group(2)} {m.group(4).strip()[:80]}"
    return None


def export_error(module: nn.Module, exporter: str, exc: BaseException) -> ExportError:
    """An :class:`ExportError` naming the module, the op and the exporter's one-line reason."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reason = next((ln for ln in lines if "Error" in ln and ":" in ln and not ln.startswith("-")), None)
    summary = re.search(r"Exception summary\s+(.+?)(?:\n\n|$)", str(exc), re.S)
    if summary:
        reason = summary.group(1).strip().splitlines()[0]
    reason = (reason or (lines[0] if lines else type(exc).__name__))[:300]
    op = op_of(exc)
    where = f" at op {op}" if op else ""
    return ExportError(f"{exporter} export of {model_label(module)} failed{where}: {type(exc).__name__}: {reason}")


def torch_export(
    module: nn.Module, args: tuple, kwargs: Mapping[str, Any] | None = None, *, dynamic: bool = True
) -> torch.export.ExportedProgram:
    """``torch.export.export`` with dynamic batch / sequence axes; failures raise ExportError."""
    kwargs = dict(kwargs or {})
    ds = dynamic_shapes(args, kwargs) if dynamic else None
    spec = (
        None
        if ds is None
        else (
            ds[0] + tuple(ds[1].values())
            if not kwargs
            else {**dict(zip(_positional_names(module, len(args)), ds[0])), **ds[1]}
        )
    )
    try:
        return torch.export.export(unwrap(module), args, kwargs, dynamic_shapes=spec, strict=False)
    except Exception as exc:
        raise export_error(module, "torch.export", exc) from exc


def _positional_names(module: nn.Module, n: int) -> list[str]:
    return input_names(module, tuple(range(n)), {})[:n]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what torch's exporter says that is not the user's to act on: that torchvision's
    operators cannot be registered (torchvision is not a dependency) and that one of torch's own
    pytree classes is deprecated."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def onnx_export(
    module: nn.Module,
    args: tuple,
    kwargs: Mapping[str, Any] | None = None,
    *,
    path: str | Path | None = None,
    metadata: Mapping[str, str] | None = None,
    dynamic: bool = True,
) -> tuple[bytes, list[str], list[str]]:
    """Export to ONNX through the torch.export-based exporter.

    Args:
        module: the model (eval mode is the caller's choice).
        args, kwargs: example inputs (batch >= 2 so the batch axis stays dynamic).
        path: also write the file here.
        metadata: ONNX ``metadata_props`` (string key / value).
        dynamic: dynamic batch and token-sequence axes.

    Returns:
        (model bytes, input names, output names).
    """
    require("onnxscript", "deploy", "ONNX export")
    onnx = require("onnx", "deploy", "ONNX export")
    kwargs = dict(kwargs or {})
    with _quiet_exporter():
        ep = torch_export(module, args, kwargs, dynamic=dynamic)
        with torch.no_grad():
            out_names = [n for n, _ in flatten_outputs(ep.module()(*args, **kwargs))]
        in_names = input_names(module, args, kwargs)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                program = torch.onnx.export(
                    ep, (), dynamo=True, input_names=in_names, output_names=out_names, optimize=True, verbose=False
                )
        except Exception as exc:
            raise export_error(module, "ONNX", exc) from exc
    proto = program.model_proto
    for k, v in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    data = proto.SerializeToString()
    if path is not None:
        onnx.save_model(proto, str(path))
    return data, [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
