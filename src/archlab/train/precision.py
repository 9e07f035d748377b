"""Device and numeric-precision selection.

``precision="auto"`` picks bf16 autocast only where the hardware runs bf16 natively: CUDA GPUs
that report bf16 support, and CPUs with ``avx512_bf16`` or AMX (``amx_bf16``/``amx_tile``) in
``/proc/cpuinfo``. Other CUDA GPUs get fp16 autocast with a GradScaler; everything else plain
fp32. On a CPU without those flags bf16 matmul runs hundreds of times slower than fp32 (see
DATA.md), so it is never chosen there. The choice is a pure function of (device, CPU flags,
CUDA bf16 support) so tests can inject the flags.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable
from pathlib import Path

import torch

from archlab.errors import ConfigError

_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "amx_tile"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") or line.startswith("Features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, then mps, then cpu; anything else is checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


def choose_precision(
    requested: str,
    device_type: str,
    *,
    flags: Iterable[str] = (),
    cuda_bf16: bool = False,
) -> str:
    """Resolve a precision request to ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Args:
        requested: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"``, ``"cuda"``, ``"mps"``.
        flags: the CPU's feature flags (only used for ``cpu``).
        cuda_bf16: whether the CUDA device supports bf16 natively.
    """
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"precision={requested!r} must be one of auto, fp32, bf16, fp16")
    if requested == "fp16" and device_type != "cuda":
        raise ConfigError(f"precision='fp16' needs a CUDA device (GradScaler); got device {device_type!r}")
    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "bf16" if cuda_bf16 else "fp16"
    if device_type == "cpu" and _CPU_BF16_FLAGS & set(flags):
        return "bf16"
    return "fp32"


def resolve_precision(requested: str, device: torch.device) -> str:
    """:func:`choose_precision` with this machine's facts."""
    cuda_bf16 = bool(device.type == "cuda" and torch.cuda.is_bf16_supported())
    flags = cpu_flags() if device.type == "cpu" else frozenset()
    return choose_precision(requested, device.type, flags=flags, cuda_bf16=cuda_bf16)


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
