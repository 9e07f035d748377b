"""The ways a model can run, behind one interface.

A backend turns a module and example inputs into a :class:`Runner` once (export, compilation,
session creation: its ``setup_s``), and the runner binds the inputs of each batch size into a
zero-argument callable for the timer, so no conversion is timed.

=====================  ===================================================================
``eager``              the module itself
``compile``            ``torch.compile`` (inductor); compilation happens on the first call
``export``             the ``torch.export`` program's module (dynamic batch axis)
``onnxruntime``        ONNX (torch.export-based exporter) on ONNX Runtime's CPU (or CUDA) EP
``onnxruntime-int8``   the same ONNX file, dynamic int8 (``quantize_dynamic``) weights
=====================  ===================================================================
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.bench.graph_export import flatten_outputs, input_names, onnx_export, torch_export
from archlab.errors import ConfigError, require


@dataclass
class Runner:
    """A prepared backend.

    Attributes:
        name: the backend's name.
        setup_s: export / session creation time (compilation shows in the first call instead).
        bind: ``(args, kwargs) -> fn`` where ``fn()`` runs one forward on those inputs.
        outputs: ``(args, kwargs) -> [tensor]``: flattened outputs as torch tensors, for checks.
        tolerance_kind: ``"exact"`` for float backends, ``"int8"`` for quantized ones.
        files: artifacts written (e.g. the ONNX file), by label.
    """

    name: str
    setup_s: float
    bind: Callable[[tuple, dict], Callable[[], Any]]
    outputs: Callable[[tuple, dict], list[torch.Tensor]]
    tolerance_kind: str = "exact"
    files: dict[str, str] = field(default_factory=dict)


def _torch_runner(name: str, fn: Callable[..., Any], setup_s: float) -> Runner:
    def outputs(args: tuple, kwargs: dict) -> list[torch.Tensor]:
        return [t.detach() for _, t in flatten_outputs(fn(*args, **kwargs))]

    return Runner(name, setup_s, bind=lambda a, k: lambda: fn(*a, **k), outputs=outputs)


def eager(module: nn.Module, args: tuple, kwargs: dict, ctx: BackendContext) -> Runner:
    return _torch_runner("eager", module, 0.0)


def compiled(module: nn.Module, args: tuple, kwargs: dict, ctx: BackendContext) -> Runner:
    # Compilation is lazy: it is paid in (and reported as) the first call.
    return _torch_runner("compile", torch.compile(module, dynamic=None), 0.0)


def exported(module: nn.Module, args: tuple, kwargs: dict, ctx: BackendContext) -> Runner:
    t0 = time.perf_counter()
    program = torch_export(module, args, kwargs)
    return _torch_runner("export", program.module(), time.perf_counter() - t0)


def _numpy_feed(names: list[str], args: tuple, kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    values = list(args) + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    return {n: v.detach().cpu().numpy() for n, v in zip(names, values)}


def ort_session(model: bytes | str, threads: int, *, cuda: bool | None = None):
    """An ONNX Runtime session with ``threads`` intra-op threads (1 inter-op thread)."""
    ort = require("onnxruntime", "deploy", "the onnxruntime backend")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if (cuda is None or cuda) and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(model, sess_options=so, providers=providers)


def _ort_runner(
    name: str, model: bytes, feed_names: list[str], threads: int, setup_s: float, kind: str, files: dict[str, str]
) -> Runner:
    t0 = time.perf_counter()
    sess = ort_session(model, threads)
    setup_s += time.perf_counter() - t0
    wanted = {i.name for i in sess.get_inputs()}

    def feed(args: tuple, kwargs: dict) -> dict[str, np.ndarray]:
        return {k: v for k, v in _numpy_feed(feed_names, args, kwargs).items() if k in wanted}

    def bind(args: tuple, kwargs: dict) -> Callable[[], Any]:
        f = feed(args, kwargs)
        return lambda: sess.run(None, f)

    def outputs(args: tuple, kwargs: dict) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(o)) for o in sess.run(None, feed(args, kwargs))]

    return Runner(name, setup_s, bind=bind, outputs=outputs, tolerance_kind=kind, files=files)


def onnxruntime(module: nn.Module, args: tuple, kwargs: dict, ctx: BackendContext) -> Runner:
    t0 = time.perf_counter()
    model, names = ctx.onnx_model(module, args, kwargs)
    return _ort_runner(
        "onnxruntime", model, names, ctx.threads, time.perf_counter() - t0, "exact", {"onnx": str(ctx.onnx_path)}
    )


def onnxruntime_int8(module: nn.Module, args: tuple, kwargs: dict, ctx: BackendContext) -> Runner:
    t0 = time.perf_counter()
    _, names = ctx.onnx_model(module, args, kwargs)
    q8 = ctx.int8_path()
    return _ort_runner(
        "onnxruntime-int8",
        q8.read_bytes(),
        names,
        ctx.threads,
        time.perf_counter() - t0,
        "int8",
        {"onnx_int8": str(q8)},
    )


def quantize_onnx(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization of an ONNX file (weights int8, activations quantized per call)."""
    require("onnxruntime", "deploy", "int8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        source = pre
    except Exception:  # pre-processing is an optimisation; quantize the raw file instead
        source = src
    quantize_dynamic(str(source), str(dst), weight_type=QuantType.QInt8)
    if pre.exists():
        pre.unlink()
    return dst


@dataclass
class BackendContext:
    """What backends of one benchmark share: threads, a work dir, one ONNX export."""

    threads: int
    work_dir: Path
    _onnx: tuple[bytes, list[str]] | None = None

    @property
    def onnx_path(self) -> Path:
        return self.work_dir / "model.onnx"

    def onnx_model(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[bytes, list[str]]:
        if self._onnx is None:
            data, _, _ = onnx_export(module, args, kwargs, path=self.onnx_path)
            self._onnx = (data, input_names(module, args, kwargs))
        return self._onnx

    def int8_path(self) -> Path:
        """The dynamic-int8 twin of the exported ONNX file (made once)."""
        q8 = self.work_dir / "model.int8.onnx"
        if not q8.exists():
            quantize_onnx(self.onnx_path, q8)
        return q8

    @classmethod
    def temporary(cls, threads: int) -> BackendContext:
        return cls(threads=threads, work_dir=Path(tempfile.mkdtemp(prefix="archlab-bench-")))


BACKENDS: dict[str, Callable[[nn.Module, tuple, dict, BackendContext], Runner]] = {
    "eager": eager,
    "compile": compiled,
    "export": exported,
    "onnxruntime": onnxruntime,
    "onnxruntime-int8": onnxruntime_int8,
}


def get_backend(name: str) -> Callable[[nn.Module, tuple, dict, BackendContext], Runner]:
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return BACKENDS[name]
