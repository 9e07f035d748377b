"""``archlab.benchmark``: latency, throughput, memory and MFU of a model per backend x mode x
batch size, each backend checked against eager on the same inputs.

Per configuration: prepare the backend once (export, session: ``setup_s``), time the first call
alone, warm up until the median settles, time at least ``min_time_s`` and ``min_calls`` calls
(:mod:`archlab.bench.timing`); inference under ``torch.inference_mode``. The thread count is set
explicitly for the whole run, recorded, and restored afterwards. A backend that fails becomes a
``failed`` row with the reason; the others still run.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.bench import backends as B
from archlab.bench.graph_export import flatten_outputs
from archlab.bench.machine import describe
from archlab.bench.memory import PeakMemory
from archlab.bench.result import TOLERANCES, BenchResult, BenchRow
from archlab.bench.source import Source, cast_inputs, portable_spec, resolve, torch_dtype
from archlab.bench.timing import measure
from archlab.bench.timing import threads as use_threads
from archlab.errors import ArchlabError, ConfigError

log = logging.getLogger(__name__)
MODES = ("infer", "train")
TORCH_BACKENDS = ("eager", "compile", "export")
Progress = Callable[[int, int, str], None]


def _check_args(batch_sizes: Iterable[int], modes: Iterable[str], backends: Iterable[str]) -> None:
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {m!r}")
    for b in backends:
        B.get_backend(b)
    for b in batch_sizes:
        if not isinstance(b, int) or b < 1:
            raise ConfigError(f"batch sizes must be positive integers; got {b!r}")


def compare(outputs: list[torch.Tensor], reference: list[torch.Tensor], kind: str) -> tuple[float, float, bool, str]:
    """(max abs diff, max rel diff, within tolerance, tolerance text) of a backend vs eager.

    The relative difference is ``max|a - b| / max|b|`` per output (robust to zeros); the check is
    ``max|a - b| <= atol + rtol * max|b|`` with (atol, rtol) from :data:`TOLERANCES`.
    """
    atol, rtol = TOLERANCES[kind]
    if len(outputs) != len(reference):
        return float("inf"), float("inf"), False, f"{len(outputs)} outputs vs eager's {len(reference)}"
    max_abs = max_rel = 0.0
    ok = True
    for out, ref in zip(outputs, reference):
        out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
        if out.shape != ref.shape:
            return float("inf"), float("inf"), False, f"shape {tuple(out.shape)} vs eager {tuple(ref.shape)}"
        diff = float((out - ref).abs().max()) if out.numel() else 0.0
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else diff)
        ok = ok and diff <= atol + rtol * scale
    return max_abs, max_rel, ok, f"{kind}: atol {atol:g} + rtol {rtol:g} x max|eager|"


def _train_step(module: nn.Module, args: tuple, kwargs: dict, precision: str, compile_: bool) -> Callable[[], Any]:
    """One optimizer step (forward, backward, AdamW with fit's decay groups) on a private copy."""
    from archlab.train.config import TrainConfig
    from archlab.train.optim import build_optimizer
    from archlab.train.precision import autocast

    model = copy.deepcopy(module).train()
    opt = build_optimizer(model, TrainConfig())
    fwd = torch.compile(model) if compile_ else model
    device = torch.device("cpu")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            out = fwd(*args, **kwargs)
        # A surrogate loss: the same backward work as a task loss over these outputs.
        floats = [t for _, t in flatten_outputs(out) if t.is_floating_point()]
        loss = sum(t.float().pow(2).mean() for t in floats)
        loss.backward()
        opt.step()

    return step


def _row(backend: str, mode: str, b: int, dtype: str, n: int, **kw: Any) -> BenchRow:
    return BenchRow(backend=backend, mode=mode, batch_size=b, dtype=dtype, threads=n, **kw)


def _fail(backend: str, mode: str, b: int, dtype: str, n: int, exc: BaseException) -> BenchRow:
    reason = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
    if not isinstance(exc, ArchlabError):
        reason = f"{type(exc).__name__}: {reason}"
    log.info("%s %s batch %d failed: %s", backend, mode, b, reason)
    return _row(backend, mode, b, dtype, n, status="failed", reason=reason)


class _Session:
    """One benchmark in this process: prepared runners and eager references, shared across rows."""

    def __init__(self, source: Source, dtype: str | None, n_threads: int, min_time_s: float, min_calls: int):
        self.source = source
        self.dtype_name, self.dtype = torch_dtype(dtype, source.module)
        self.module = source.module if self.dtype == torch.float32 else copy.deepcopy(source.module).to(self.dtype)
        self.n, self.min_time_s, self.min_calls = n_threads, min_time_s, min_calls
        self.ctx = B.BackendContext.temporary(n_threads)
        self.runners: dict[str, B.Runner | BaseException] = {}

    def inputs(self, b: int) -> tuple[tuple, dict]:
        args, kwargs = self.source.inputs(b)
        return cast_inputs(args, kwargs, self.dtype) if self.dtype != torch.float32 else (args, kwargs)

    def runner(self, backend: str) -> B.Runner:
        if backend not in self.runners:
            args, kwargs = self.inputs(2)
            try:
                with torch.inference_mode(backend not in ("export", "onnxruntime", "onnxruntime-int8")):
                    self.runners[backend] = B.get_backend(backend)(self.module, args, kwargs, self.ctx)
            except Exception as exc:  # any backend failure becomes a row, the others still run
                self.runners[backend] = exc
        got = self.runners[backend]
        if isinstance(got, BaseException):
            raise got
        return got

    def run(self, backend: str, mode: str, b: int) -> BenchRow:
        try:
            return self._run(backend, mode, b)
        except Exception as exc:
            return _fail(backend, mode, b, self.dtype_name, self.n, exc)

    def _run(self, backend: str, mode: str, b: int) -> BenchRow:
        if mode == "train" and backend not in ("eager", "compile"):
            raise ConfigError(f"mode='train' runs on the eager and compile backends; {backend} is inference only")
        mem = PeakMemory()
        row = _row(backend, mode, b, self.dtype_name, self.n)
        args, kwargs = self.inputs(b)
        if mode == "train":
            from archlab.train.precision import choose_precision

            # fit's rules: fp32 weights with autocast; fp32 weights mean precision="auto", chosen by
            # the same measurement as fit's (eager steps of this batch; no limit on its cost here).
            requested = "auto" if self.dtype_name == "fp32" else self.dtype_name
            choice = choose_precision(
                requested, "cpu", lambda p: _train_step(self.source.module, args, kwargs, p, compile_=False)
            )
            log.info("batch %d: %s", b, choice.line())
            row.precision = choice.precision
            mem.start()
            fn = _train_step(self.source.module, args, kwargs, choice.precision, backend == "compile")
            timing = measure(fn, min_time_s=self.min_time_s, min_calls=self.min_calls)
            row.peak_mem_mb = mem.stop()
        else:
            runner = self.runner(backend)
            row.setup_s = runner.setup_s
            with torch.inference_mode():
                mem.start()
                timing = measure(runner.bind(args, kwargs), min_time_s=self.min_time_s, min_calls=self.min_calls)
                row.peak_mem_mb = mem.stop()
                if backend != "eager":
                    self._check(row, runner, args, kwargs)
        row.mem_method = mem.method
        row.first_call_ms = timing.first_call_s * 1e3
        row.p50_ms, row.p90_ms, row.p99_ms = (timing.p(q) * 1e3 for q in (50, 90, 99))
        row.mean_ms = timing.total_s / timing.calls * 1e3
        row.calls, row.warmup_calls = timing.calls, timing.warmup_calls
        row.samples_per_s = b / timing.p(50)
        return row

    def _check(self, row: BenchRow, runner: B.Runner, args: tuple, kwargs: dict) -> None:
        ref = [t.detach() for _, t in flatten_outputs(self.module(*args, **kwargs))]
        out = runner.outputs(args, kwargs)
        kind = "int8" if runner.tolerance_kind == "int8" else self.dtype_name
        row.max_abs_diff, row.max_rel_diff, ok, row.tolerance = compare(out, ref, kind)
        if not ok:
            row.status = "mismatch"
            row.reason = f"outputs differ from eager: max abs {row.max_abs_diff:.3g}, max rel {row.max_rel_diff:.3g}"


def _flops(source: Source, b: int, mode: str) -> int | None:
    from archlab.analysis.summary import summary

    try:
        args, kwargs = source.inputs(b)
        s = summary(source.module, kwargs if kwargs and not args else args, device="meta", depth=1)
    except Exception as exc:  # FLOPs are a bonus: a model the counter cannot trace still benchmarks
        log.info("no FLOP count for %s: %s", source.name, exc)
        return None
    return int(s.flops + (s.backward_flops if mode == "train" else 0)) or None


def _isolated_row(spec: dict[str, Any], cfg: dict[str, Any]) -> BenchRow:
    """Run one configuration in a fresh interpreter (see :mod:`archlab.bench._worker`)."""
    payload = json.dumps({"spec": spec, **cfg})
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "archlab.bench._worker"],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        timeout=cfg.get("timeout_s", 1800),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return _row(
            cfg["backend"],
            cfg["mode"],
            cfg["batch_size"],
            cfg.get("dtype") or "fp32",
            cfg["threads"],
            status="failed",
            reason=f"isolated run failed (exit {proc.returncode}): {tail[:300]}",
        )
    return BenchRow(**json.loads(lines[-1]))


def benchmark(
    model: nn.Module | str | os.PathLike,
    input: Any = None,
    *,
    batch_sizes: Iterable[int] = (1, 8, 64),
    modes: Iterable[str] = ("infer",),
    backends: Iterable[str] = ("eager",),
    threads: int | None = None,
    min_time_s: float = 1.0,
    min_calls: int = 10,
    dtype: str | None = None,
    isolate: bool = False,
    overrides: dict[str, Any] | None = None,
    mfu: bool = True,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark a model per backend x mode x batch size.

    Args:
        model: an ``nn.Module`` (Hugging Face models too), a registry name, a saved-model dir or a
            run directory (its final weights).
        input: example input (tensor, tuple of forward's args, or a dict of keyword args) whose
            rows are repeated to each batch size; default: the model's ``example_input``.
        batch_sizes: batch sizes to measure.
        modes: ``"infer"`` and/or ``"train"`` (one AdamW step, fit's precision rules).
        backends: names from :data:`archlab.bench.backends.BACKENDS`.
        threads: intra-op threads (``None``: all cores); recorded, restored afterwards.
        min_time_s: measure each configuration at least this long ...
        min_calls: ... and at least this many calls.
        dtype: ``"fp32"`` / ``"bf16"`` / ``"fp16"``; ``None``: the model's own dtype.
        isolate: run every configuration in a fresh subprocess (clean RSS figures, including
            model load and backend set-up); needs a name, a run dir or a registry model.
        overrides: registry config overrides (names only).
        mfu: measure the GEMM peak (cached) and report achieved FLOP/s and MFU.
        progress: called as ``progress(done, total, label)`` after each configuration.

    Returns:
        A :class:`BenchResult`.
    """
    batch_sizes, modes, backends = list(batch_sizes), list(modes), list(backends)
    _check_args(batch_sizes, modes, backends)
    source = resolve(model, input, overrides=overrides)
    configs = [(bk, m, b) for m in modes for bk in backends for b in batch_sizes]
    with use_threads(threads) as n:
        dtype_name, _ = torch_dtype(dtype, source.module)
        result = BenchResult(model=source.name, threads=n, min_time_s=min_time_s, isolate=isolate, machine=describe(n))
        if isolate:
            work = Path(tempfile.mkdtemp(prefix="archlab-bench-"))
            spec = portable_spec(source, work)

            def run(bk: str, m: str, b: int):
                args = dict(backend=bk, mode=m, batch_size=b, threads=n, min_time_s=min_time_s, min_calls=min_calls)
                return _isolated_row(spec, {**args, "dtype": dtype})

        else:
            session = _Session(source, dtype, n, min_time_s, min_calls)
            run = session.run
        for i, (bk, m, b) in enumerate(configs):
            log.info("benchmarking %s: %s %s batch %d", source.name, bk, m, b)
            result.rows.append(run(bk, m, b))
            if progress is not None:
                progress(i + 1, len(configs), f"{bk} {m} b={b}")
        _add_flops(result, source, dtype_name, n, mfu)
    return result


def _add_flops(result: BenchResult, source: Source, dtype_name: str, n: int, mfu: bool) -> None:
    flops: dict[tuple[int, str], int | None] = {}
    for row in result.rows:
        if not row.p50_ms:
            continue
        key = (row.batch_size, row.mode)
        if key not in flops:
            flops[key] = _flops(source, *key)
        row.flops_per_call = flops[key]
        if row.flops_per_call:
            row.achieved_flops = row.flops_per_call / (row.p50_ms / 1e3)
    if any(v is None for v in flops.values()):
        result.notes.append("FLOPs could not be counted for some configurations (no MFU there)")
    if not mfu or not any(r.achieved_flops for r in result.rows):
        return
    from archlab.bench.roofline import gemm_peak

    try:
        peak = gemm_peak(dtype_name, n)
    except ArchlabError as exc:
        result.notes.append(f"no GEMM peak for {dtype_name}: {exc}")
        return
    result.peak_flops[dtype_name] = peak
    for row in result.rows:
        if row.achieved_flops:
            row.mfu = row.achieved_flops / peak
