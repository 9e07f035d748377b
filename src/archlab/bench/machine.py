"""A description of this machine for results that quote speed: CPU model, cores, ISA flags that
decide which kernels run (avx2, avx512*, amx*), GPU, and the versions of the runtimes."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import torch

# The flags that change which GEMM / conv / int8 kernels a CPU runs.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "neon",
    "asimd",
    "sve",
)


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model or platform.machine(), flags


def isa_flags() -> list[str]:
    """The ISA flags of :data:`ISA_FLAGS` this CPU has, e.g. ``["avx", "avx2", "fma"]``."""
    have = _cpuinfo()[1]
    return [f for f in ISA_FLAGS if f in have]


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(threads: int | None = None) -> dict[str, Any]:
    """This machine, as a JSON-ready dict.

    Args:
        threads: the thread count used for the measurements it accompanies.
    """
    from archlab.bench.timing import all_cores

    model, _ = _cpuinfo()
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "cpu": model,
        "cores": all_cores(),
        "logical_cpus": os.cpu_count(),
        "threads_used": threads,
        "isa_flags": isa_flags(),
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": package_version("onnxruntime"),
    }
