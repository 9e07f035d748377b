"""Measure a model: latency, throughput, memory and MFU per backend (eager, torch.compile,
torch.export, ONNX Runtime, ONNX Runtime int8), with every backend checked against eager.

    >>> from archlab.bench import benchmark
    >>> r = benchmark("mlp_784_128_10", batch_sizes=(1, 64), backends=("eager", "onnxruntime"))
    >>> r.fastest(1).backend
"""

from __future__ import annotations

from archlab.bench.backends import BACKENDS
from archlab.bench.harness import benchmark, compare
from archlab.bench.result import SCHEMA_VERSION, TOLERANCES, BenchResult, BenchRow
from archlab.bench.roofline import cache_dir, clear_cache, gemm_peak
from archlab.bench.sweep import BatchSweep, max_batch_within
from archlab.bench.timing import Timing, measure, threads

__all__ = [
    "BACKENDS",
    "SCHEMA_VERSION",
    "TOLERANCES",
    "BatchSweep",
    "BenchResult",
    "BenchRow",
    "Timing",
    "benchmark",
    "cache_dir",
    "clear_cache",
    "compare",
    "gemm_peak",
    "max_batch_within",
    "measure",
    "threads",
]
