"""``archlab.export``: an ONNX file or a ``torch.export`` program (.pt2), verified against eager.

The export folder holds everything a server needs::

    model.onnx | model.pt2     the graph; dynamic batch axis (and sequence axis for token models)
    model.int8.onnx            with int8=True: dynamic int8 weights (ONNX Runtime quantize_dynamic)
    preprocessing.json         normalisation statistics, class names, vocabulary, input signature
    signature.json             archlab version, model config, input / output names, shapes, dtypes
    serve.py                   numpy + onnxruntime only: ``python serve.py DIR input.npy``
    server.py                  HTTP server with dynamic batching (+ starlette, uvicorn,
                               prometheus-client): ``python server.py --port 8000``
    README.md                  how to run it

Every export is run (ONNX Runtime, or the loaded program) on fresh inputs at two batch sizes
(and a shorter sequence for token models) and compared with eager; a mismatch raises.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.bench.graph_export import flatten_outputs, input_names, is_token_input, onnx_export, torch_export
from archlab.bench.harness import compare
from archlab.bench.source import Source, resolve
from archlab.deploy.preprocessing import preprocessing, signature
from archlab.errors import ConfigError, ExportError
from archlab.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)
FORMATS = ("onnx", "pt2")
VERIFY_BATCHES = (1, 3)


@dataclass
class Verification:
    """One parity check of an exported model against eager."""

    artifact: str
    batch_size: int
    seq_len: int | None
    max_abs_diff: float
    max_rel_diff: float
    tolerance: str
    ok: bool


@dataclass
class ExportResult:
    """What :func:`export` wrote and how it was verified."""

    model: str
    format: str
    out_dir: str
    model_file: str
    size_bytes: int
    export_s: float
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    verification: list[Verification] = field(default_factory=list)
    int8_file: str | None = None
    int8_size_bytes: int | None = None
    int8_metric: dict[str, float] | None = None
    int8_choice: dict[str, Any] | None = None  # the int8 recipes tried and the one kept (a run's export)
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verification if v.artifact != "int8")

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, **asdict(self)}


def _verify_inputs(source: Source, b: int, shorter: bool) -> tuple[tuple, dict, int | None]:
    """Fresh inputs at batch ``b``; with ``shorter`` token inputs lose a quarter of their length."""
    args, kwargs = source.inputs(b)
    seq = next((int(t.shape[1]) for t in list(args) + list(kwargs.values()) if is_token_input(t)), None)
    if shorter and seq is not None and seq >= 4:
        cut = seq - seq // 4

        def trim(t: Any) -> Any:
            return t[:, :cut].contiguous() if is_token_input(t) and t.shape[1] == seq else t

        args, kwargs, seq = tuple(trim(a) for a in args), {k: trim(v) for k, v in kwargs.items()}, cut
    return args, kwargs, seq


def _eager(module: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    with torch.no_grad():
        return [t for _, t in flatten_outputs(module(*args, **kwargs))]


def _verify(source: Source, artifact: str, run: Any, kind: str = "fp32") -> list[Verification]:
    checks = []
    for i, b in enumerate(VERIFY_BATCHES):
        args, kwargs, seq = _verify_inputs(source, b, shorter=i == 1)
        ref = _eager(source.module, args, kwargs)
        try:
            out = run(args, kwargs)
        except Exception as exc:
            raise ExportError(
                f"the exported {artifact} of {source.name} fails at batch {b}"
                f"{f', sequence {seq}' if seq else ''}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
            ) from exc
        max_abs, max_rel, ok, tol = compare(out, ref, kind)
        checks.append(Verification(artifact, b, seq, max_abs, max_rel, tol, ok))
    return checks


def _ort_runner(path: Path, names: list[str]):
    from archlab.bench.backends import ort_session

    sess = ort_session(str(path), threads=1, cuda=False)
    wanted = {i.name for i in sess.get_inputs()}

    def run(args: tuple, kwargs: dict) -> list[torch.Tensor]:
        values = list(args) + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        feed = {n: v.numpy() for n, v in zip(names, values) if n in wanted}
        return [torch.from_numpy(o) for o in sess.run(None, feed)]

    return run


def _dynamic_axes(names: list[str], tensors: list[torch.Tensor]) -> dict[str, dict[int, str]]:
    axes = {}
    for n, t in zip(names, tensors):
        if t.dim() > 0:
            axes[n] = {0: "batch", **({1: "sequence"} if is_token_input(t) else {})}
    return axes


def export(
    model: nn.Module | str | os.PathLike,
    format: str = "onnx",
    out_dir: str | os.PathLike = "export",
    *,
    int8: bool = False,
    input: Any = None,
    overrides: dict[str, Any] | None = None,
) -> ExportResult:
    """Export a model for serving and verify the export against eager.

    Args:
        model: a module, a registry name, a saved-model dir or a run directory (final weights; its
            data_info.json becomes preprocessing.json, and with ``int8`` its test metric is compared).
        format: ``"onnx"`` (torch.export-based exporter, opset from onnxscript) or ``"pt2"``.
        out_dir: the folder to write (created; existing files of the same names are replaced).
        int8: also write a dynamic-int8 ONNX model (onnx only).
        input: example input if the model has no ``example_input``.
        overrides: registry config overrides (names only).

    Returns:
        An :class:`ExportResult`.

    Raises:
        ExportError: the exporter failed (module, op and reason named) or the export does not
            match eager within tolerance.
    """
    _check_format(format, int8)
    source = resolve(model, input, overrides=overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    example = _trace_example(source)
    meta = _metadata(source, example.sig_in, example.sig_out)
    if format == "onnx":
        path, export_s, checks = _export_onnx(source, example, out, meta)
    else:
        path, export_s, checks = _export_pt2(source, example, out)
    _raise_on_mismatch(checks, format, source.name)
    result = ExportResult(
        model=source.name,
        format=format,
        out_dir=str(out),
        model_file=path.name,
        size_bytes=path.stat().st_size,
        export_s=round(export_s, 3),
        inputs=example.sig_in,
        outputs=example.sig_out,
        verification=checks,
    )
    if int8:
        from archlab.deploy.int8 import add_int8

        add_int8(result, source, path, example.names, _verify, _ort_runner)
    _write_folder(result, source, meta)
    return result


def _check_format(format: str, int8: bool) -> None:
    """A known format, and int8 only where ONNX Runtime quantises it."""
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if int8 and format != "onnx":
        raise ConfigError(
            "int8=True is available for format='onnx' (ONNX Runtime dynamic int8); "
            "for PyTorch int8 see archlab.deploy.int8.torch_int8"
        )


@dataclass
class _Example:
    """The example batch the graph is traced with, and the input / output signature it gives."""

    args: tuple
    kwargs: dict[str, Any]
    names: list[str]  # input names, in the graph's order
    sig_in: list[dict[str, Any]]
    sig_out: list[dict[str, Any]]


def _trace_example(source: Source) -> _Example:
    """Run the model once on an example batch of 2 (a batch of 1 would be specialised away)."""
    args, kwargs = source.inputs(2)
    names = input_names(source.module, args, kwargs)
    in_tensors = list(args) + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    outs = flatten_outputs(source.module(*args, **kwargs))
    out_names = [n for n, _ in outs]
    dyn = _dynamic_axes(names, in_tensors)
    sig_in = signature(names, in_tensors, dyn)
    sig_out = signature(out_names, [t for _, t in outs], {n: {0: "batch"} for n in out_names})
    return _Example(args, kwargs, names, sig_in, sig_out)


def _export_onnx(
    source: Source, example: _Example, out: Path, meta: dict[str, Any]
) -> tuple[Path, float, list[Verification]]:
    """Write ``model.onnx`` (metadata in its properties) and check it in ONNX Runtime: the file,
    the seconds the export took, and the parity checks."""
    t0 = time.perf_counter()
    path = out / "model.onnx"
    onnx_export(
        source.module,
        example.args,
        example.kwargs,
        path=path,
        metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()},
    )
    export_s = time.perf_counter() - t0
    return path, export_s, _verify(source, "onnx", _ort_runner(path, example.names))


def _export_pt2(source: Source, example: _Example, out: Path) -> tuple[Path, float, list[Verification]]:
    """Write ``model.pt2`` (``torch.export``) and check the program loaded back from it: the file,
    the seconds the export took, and the parity checks."""
    t0 = time.perf_counter()
    path = out / "model.pt2"
    program = torch_export(source.module, example.args, example.kwargs)
    torch.export.save(program, str(path))
    export_s = time.perf_counter() - t0
    loaded = torch.export.load(str(path)).module()
    return path, export_s, _verify(source, "pt2", lambda a, k: [t for _, t in flatten_outputs(loaded(*a, **k))])


def _raise_on_mismatch(checks: list[Verification], format: str, model_name: str) -> None:
    """The first check outside its tolerance is an ExportError naming the batch and the differences."""
    bad = [c for c in checks if not c.ok]
    if bad:
        c = bad[0]
        raise ExportError(
            f"the exported {format} of {model_name} differs from eager at batch {c.batch_size}: "
            f"max abs {c.max_abs_diff:.3g}, max rel {c.max_rel_diff:.3g} ({c.tolerance})"
        )


def _metadata(source: Source, sig_in: list[dict], sig_out: list[dict]) -> dict[str, Any]:
    from archlab._version import __version__

    cfg = source.module.config.to_dict() if hasattr(getattr(source.module, "config", None), "to_dict") else None
    return {
        "archlab_version": __version__,
        "model": getattr(source.module, "registry_name", source.name),
        "config": cfg,
        "inputs": sig_in,
        "outputs": sig_out,
        "torch_version": torch.__version__,
    }


def _write_folder(result: ExportResult, source: Source, meta: dict[str, Any]) -> None:
    out = Path(result.out_dir)
    atomic_write_json(out / "preprocessing.json", preprocessing(source.info, result.inputs, meta["model"]))
    atomic_write_json(
        out / "signature.json",
        {
            **meta,
            "format": result.format,
            "model_file": result.model_file,
            "int8_file": result.int8_file,
            "verification": [asdict(v) for v in result.verification],
        },
    )
    if result.format == "onnx":
        for name in ("serve.py", "server.py"):
            shutil.copyfile(Path(__file__).with_name(name), out / name)
    atomic_write_text(out / "README.md", _readme(result, source))
    result.files = sorted(p.name for p in out.iterdir() if p.is_file())


def _readme(result: ExportResult, source: Source) -> str:
    ins = "\n".join(f"- `{i['name']}`: {i['dtype']} {i['shape']} ({i['layout']})" for i in result.inputs)
    outs = "\n".join(f"- `{o['name']}`: {o['dtype']} {o['shape']}" for o in result.outputs)
    checks = "\n".join(
        f"| {v.artifact} | {v.batch_size} | {v.seq_len or ''} | {v.max_abs_diff:.2e} | {v.ok} |"
        for v in result.verification
    )
    if result.format == "onnx":
        run = (
            "Needs only `numpy` and `onnxruntime`:\n\n```bash\npip install numpy onnxruntime\n"
            "python serve.py . input.npy -o predictions.npy   # input.npy: already preprocessed\n```\n\n"
            "or in Python: `import serve; p = serve.load('.'); p.predict(x)`.\n\n"
            "## Serve over HTTP\n\nAn HTTP server with dynamic batching and Prometheus metrics; needs "
            "`numpy`, `onnxruntime`, `starlette`, `uvicorn` and `prometheus-client` (no torch, no archlab):\n\n"
            "```bash\npip install numpy onnxruntime starlette uvicorn prometheus-client\n"
            "python server.py --port 8000 --max-batch 32 --max-wait-ms 2   # binds 127.0.0.1\n"
            "curl -s localhost:8000/predict -H 'content-type: application/json' --data @request.json   # request.json: [sample, ...]\n```\n\n"
            "`POST /predict` takes a batch of raw samples (first axis = samples) as JSON or `.npy` bytes "
            "(`content-type: application/x-npy`) and applies `preprocessing.json`; `GET /health`, "
            "`GET /metadata`, `GET /metrics` (Prometheus). `python server.py --help` lists the options."
        )
    else:
        run = (
            "Needs `torch` (same minor version as the exporter):\n\n```python\nimport torch\n"
            "m = torch.export.load('model.pt2').module()\ny = m(x)\n```"
        )
    return (
        f"# {result.model}: {result.format} export\n\nWritten by archlab {meta_version()}.\n\n"
        f"## Inputs\n{ins}\n\n## Outputs\n{outs}\n\nPreprocess the inputs as `preprocessing.json` says "
        f"(normalisation with the training statistics, vocabulary, layout).\n\n## Run\n{run}\n\n"
        f"## Verified against eager PyTorch\n| artifact | batch | sequence | max abs diff | ok |\n"
        f"|---|---|---|---|---|\n{checks}\n"
    )


def meta_version() -> str:
    from archlab._version import __version__

    return __version__
