"""``archlab.deploy_report``: what it takes to serve a model, measured on this machine, with
pass / fail against the budgets given.

Sizes are measured by writing the files (safetensors at fp32 / fp16 / bf16, the ONNX file and
its dynamic-int8 twin); RAM to serve is the RSS growth of a fresh process that loads the model
and runs it (``isolate=True`` benchmark rows); latency and throughput come from
:func:`archlab.bench.benchmark`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.bench import benchmark, max_batch_within
from archlab.bench.machine import describe, package_version
from archlab.bench.result import BenchResult
from archlab.bench.source import Source, resolve
from archlab.display import NotebookDisplay
from archlab.errors import ArchlabError

MB = 1024 * 1024


@dataclass
class Budget:
    """One budget and whether the model meets it."""

    name: str
    limit: float
    measured: float | None
    unit: str
    basis: str
    passed: bool | None


@dataclass
class DeployReport(NotebookDisplay):
    """Deployment requirements of one model on this machine (see the module docstring)."""

    model: str
    params: int
    size_mb: dict[str, float]
    ram_mb: dict[str, float | None]  # None: not measured, why in ram_not_measured
    latency_ms: dict[str, dict[str, float | None]]
    throughput: dict[str, dict[str, float | int | None]]
    max_batch: dict[str, Any]
    machine: dict[str, Any]
    packages: dict[str, dict[str, str | None]]
    signature: dict[str, Any]
    budgets: list[Budget] = field(default_factory=list)
    bench: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    ram_not_measured: dict[str, str] = field(default_factory=dict)
    # deploy_report(serve=True): the export's HTTP server under a bounded load on loopback, one
    # LoadResult dict per concurrency (requests/s, p50 / p99 ms, errors by status).
    served: list[dict[str, Any]] | None = None
    # the int8 recipes tried on a run's export and the one kept (archlab.deploy.int8.Int8Choice)
    int8: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return all(b.passed for b in self.budgets if b.passed is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, **asdict(self), "passed": self.passed}


def _sizes(
    module: nn.Module, work: Path, notes: list[str], target: Any = None, info: dict[str, Any] | None = None
) -> tuple[dict[str, float], list[str]]:
    """Bytes on disk per precision, by writing each file (with ``target``, a run directory, its
    export: int8 recipes weighed on the run's test metric, recorded in ``info["int8"]``)."""
    from archlab.checkpoint import tensors_to_bytes

    sizes: dict[str, float] = {}
    state = module.state_dict()
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        path = work / f"model.{name}.safetensors"
        path.write_bytes(tensors_to_bytes(cast))
        sizes[f"{name} safetensors"] = path.stat().st_size / MB
    artifacts = []
    try:
        from archlab.deploy.export import export

        ex = export(module if target is None else target, "onnx", work / "onnx", int8=True)
        if info is not None:
            info["int8"] = ex.int8_choice
        sizes["fp32 onnx"] = ex.size_bytes / MB
        sizes["int8 onnx"] = (ex.int8_size_bytes or 0) / MB
        artifacts = ["onnx", "onnx-int8"]
    except ArchlabError as exc:
        notes.append(f"no ONNX artifact: {exc}")
    return sizes, artifacts


def ram_to_serve(row: Any) -> tuple[float | None, str | None]:
    """(MB, None) for a row whose RAM was measured in a fresh process, else (None, why not).

    A figure from the benchmark's own process is only a lower bound (the model is already
    loaded, allocator caches from earlier rows hide growth): not a measurement of RAM to serve.
    """
    if row.peak_mem_mb is None:
        return None, f"the configuration did not run: {row.reason or row.status}"
    if "fresh process" not in (row.mem_method or ""):
        return (
            None,
            f"in-process lower bound {row.peak_mem_mb:.1f} MB, model load left out; `archlab deploy` (isolate=True) measures it",
        )
    return row.peak_mem_mb, None


def _packages(artifacts: list[str]) -> dict[str, dict[str, str | None]]:
    v = package_version
    out = {
        "safetensors (PyTorch)": {
            "torch": v("torch"),
            "safetensors": v("safetensors"),
            "archlab": v("archlab"),
            "numpy": v("numpy"),
        }
    }
    if "onnx" in artifacts:
        out["onnx / onnx-int8 (serve.py)"] = {"onnxruntime": v("onnxruntime"), "numpy": v("numpy")}
    out["pt2 (torch.export)"] = {"torch": v("torch")}
    return out


def deploy_report(
    model: nn.Module | str | os.PathLike,
    *,
    latency_ms: float | None = None,
    memory_mb: float | None = None,
    size_mb: float | None = None,
    batch_size: int = 32,
    backends: tuple[str, ...] = ("eager", "onnxruntime", "onnxruntime-int8"),
    threads: int | None = None,
    min_time_s: float = 0.5,
    isolate: bool = True,
    memory_budget_mb: float | None = None,
    serve: bool = False,
    serve_requests: int = 200,
    serve_concurrency: tuple[int, ...] = (1, 8, 32),
) -> DeployReport:
    """Measure what serving ``model`` needs and check it against budgets.

    Args:
        model: a module, a registry name, a saved-model dir or a run directory.
        latency_ms: budget for the p99 latency at batch 1 (best backend that matches eager).
        memory_mb: budget for the RAM to serve at batch 1 (best backend's fresh-process RSS growth).
        size_mb: budget for the smallest artifact whose outputs match eager within its tolerance.
        batch_size: the second batch size measured (throughput, RAM).
        backends: backends measured.
        threads: intra-op threads (None: all cores).
        min_time_s: measuring time per configuration.
        isolate: one fresh process per configuration (clean RAM figures); needs a name, a run
            directory or a registry model.
        memory_budget_mb: budget for the batch sweep (default ``memory_mb``, else 1024).
        serve: also export, start the folder's HTTP server in a subprocess and load it on
            loopback (``serve_requests`` calls at each of ``serve_concurrency``); the latency
            budget is then checked against the served p99 at each concurrency too.
        serve_requests: calls per concurrency level.
        serve_concurrency: the concurrency levels.

    Returns:
        A :class:`DeployReport`.
    """
    source = resolve(model)
    notes: list[str] = []
    bench = _benchmark(source, isolate, (1, batch_size), backends, threads, min_time_s, notes)
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="archlab-deploy-") as tmp:
        sizes, artifacts = _sizes(source.module, Path(tmp), notes, model if source.run_dir else None, extra)
        served = _served(model, source, Path(tmp), serve_requests, serve_concurrency, notes) if serve else None
    sweep = max_batch_within(source.module, memory_budget_mb or memory_mb or 1024.0, threads=threads)
    ram_rows = {f"{r.backend} b={r.batch_size}": ram_to_serve(r) for r in bench.rows if r.p50_ms}
    report = DeployReport(
        model=source.name,
        params=sum(p.numel() for p in source.module.parameters()),
        size_mb={k: round(v, 4) for k, v in sizes.items()},
        ram_mb={k: mb for k, (mb, _) in ram_rows.items()},
        ram_not_measured={k: why for k, (_, why) in ram_rows.items() if why is not None},
        latency_ms=_latency(bench),
        throughput=_throughput(bench, batch_size),
        max_batch=asdict(sweep),
        machine=describe(bench.threads),
        packages=_packages(artifacts),
        signature=_signature(source),
        bench=bench.to_dict(),
        notes=notes + bench.notes,
        served=served,
        int8=extra.get("int8"),
    )
    report.budgets = _budgets(bench, sizes, latency_ms, memory_mb, size_mb) + _served_budgets(served, latency_ms)
    return report


def _benchmark(
    source: Source,
    isolate: bool,
    batch_sizes: tuple[int, ...],
    backends: tuple[str, ...],
    threads: int | None,
    min_time_s: float,
    notes: list[str],
) -> BenchResult:
    """Latency, throughput and RAM rows, each configuration in a fresh process where the model
    can be rebuilt there (a name, a run directory or a registry model)."""
    can_isolate = isolate and (source.spec is not None or hasattr(source.module, "config"))
    if isolate and not can_isolate:
        notes.append("measured in this process (RAM figures exclude the model load)")
    return benchmark(
        source.spec["path"]
        if source.spec and source.spec["kind"] == "path"
        else source.spec["name"]
        if source.spec
        else source.module,
        batch_sizes=batch_sizes,
        backends=backends,
        threads=threads,
        min_time_s=min_time_s,
        isolate=can_isolate,
        overrides=(source.spec or {}).get("overrides") or None,
    )


def _latency(bench: BenchResult) -> dict[str, dict[str, float | None]]:
    """p50 / p99 at batch 1, per backend."""
    return {r.backend: {"p50": r.p50_ms, "p99": r.p99_ms, "status": r.status} for r in bench.rows if r.batch_size == 1}


def _throughput(bench: BenchResult, batch_size: int) -> dict[str, dict[str, float | int | None]]:
    """Samples per second at ``batch_size``, per backend."""
    return {
        r.backend: {"batch_size": r.batch_size, "samples_per_s": r.samples_per_s, "status": r.status}
        for r in bench.rows
        if r.batch_size == batch_size
    }


def _signature(source: Source) -> dict[str, Any]:
    """Input and output names, shapes and dtypes (from one batch-1 forward), and preprocessing."""
    ex_args, ex_kwargs = source.inputs(1)
    from archlab.bench.graph_export import flatten_outputs, input_names
    from archlab.deploy.preprocessing import preprocessing, signature

    names = input_names(source.module, ex_args, ex_kwargs)
    tensors = list(ex_args) + [v for v in ex_kwargs.values() if isinstance(v, torch.Tensor)]
    with torch.no_grad():
        outs = flatten_outputs(source.module(*ex_args, **ex_kwargs))
    sig = {
        "inputs": signature(names, tensors, {n: {0: "batch"} for n in names}),
        "outputs": signature([n for n, _ in outs], [t for _, t in outs], {n: {0: "batch"} for n, _ in outs}),
    }
    sig["preprocessing"] = preprocessing(source.info, sig["inputs"], source.name)
    return sig


def _served(
    model: Any, source: Any, work: Path, requests: int, concurrency: tuple[int, ...], notes: list[str]
) -> list[dict[str, Any]] | None:
    """The export's own server.py under load on loopback (see :mod:`archlab.deploy.loadtest`)."""
    import json

    from archlab.bench.graph_export import input_names
    from archlab.deploy.export import export
    from archlab.deploy.loadtest import serve_and_measure

    try:
        target = model if source.spec or source.run_dir else source.module
        ex = export(target, "onnx", work / "served", overrides=(source.spec or {}).get("overrides") or None)
    except ArchlabError as exc:
        notes.append(f"not served: {exc}")
        return None
    args, kwargs = source.inputs(1)
    names = input_names(source.module, args, kwargs)
    values = list(args) + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    body = json.dumps({"inputs": {n: v.tolist() for n, v in zip(names, values)}}).encode()
    rows = serve_and_measure(ex.out_dir, body, concurrency=concurrency, requests=requests)
    notes.append(
        f"served: the export's server.py (max batch 32, max wait 2 ms) on loopback, {requests} requests "
        "per concurrency from an asyncio httpx client on the same machine"
    )
    return [r.to_dict() for r in rows]


def _served_budgets(served: list[dict[str, Any]] | None, latency_ms: float | None) -> list[Budget]:
    if not served or latency_ms is None:
        return []
    return [
        Budget(
            f"latency_ms (served, concurrency {r['concurrency']})",
            latency_ms,
            r["p99_ms"],
            "ms",
            f"p99 of {r['requests']} HTTP requests on loopback, {r['requests'] - r['ok']} failed",
            None if r["p99_ms"] is None else r["p99_ms"] <= latency_ms and r["ok"] == r["requests"],
        )
        for r in served
    ]


def _budgets(
    bench: BenchResult,
    sizes: dict[str, float],
    latency_ms: float | None,
    memory_mb: float | None,
    size_mb: float | None,
) -> list[Budget]:
    out = []
    fast = bench.fastest(1)
    if latency_ms is not None:
        got = fast.p99_ms if fast else None
        out.append(
            Budget(
                "latency_ms",
                latency_ms,
                got,
                "ms",
                f"p99 at batch 1, {fast.backend if fast else 'no backend'}",
                None if got is None else got <= latency_ms,
            )
        )
    if memory_mb is not None:
        got = ram_to_serve(fast)[0] if fast else None  # a lower bound passes no budget
        out.append(
            Budget(
                "memory_mb",
                memory_mb,
                got,
                "MB",
                f"RAM to serve at batch 1, {fast.backend if fast else 'no backend'} ({fast.mem_method if fast else ''})",
                None if got is None else got <= memory_mb,
            )
        )
    if size_mb is not None:
        ok_int8 = any(r.backend == "onnxruntime-int8" and r.ok for r in bench.rows)
        candidates = {k: v for k, v in sizes.items() if k != "int8 onnx" or ok_int8}
        best = min(candidates, key=candidates.get) if candidates else None
        got = candidates.get(best) if best else None
        out.append(
            Budget(
                "size_mb",
                size_mb,
                got,
                "MB",
                f"smallest matching artifact: {best}",
                None if got is None else got <= size_mb,
            )
        )
    return out
