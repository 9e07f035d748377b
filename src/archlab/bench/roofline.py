"""The measured GEMM peak of this machine: the denominator of MFU (model FLOP utilisation).

A vendor's datasheet peak is not what PyTorch reaches on a shared, throttled or virtualised CPU;
the largest square matmul throughput we can measure is. It is measured once per (CPU, dtype,
thread count, torch version) and cached as JSON in the user's cache directory::

    $ARCHLAB_CACHE_DIR/roofline.json         when the variable is set
    ~/.cache/archlab/roofline.json           otherwise on Linux (platformdirs' user cache dir)

Delete the file (or call :func:`clear_cache`) to measure again, e.g. after a hardware change.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from archlab.bench.timing import measure
from archlab.bench.timing import threads as use_threads
from archlab.errors import ConfigError
from archlab.io import atomic_write_text

log = logging.getLogger(__name__)
CACHE_FILE = "roofline.json"
SIZES = (512, 1024, 2048)  # square matmul sizes tried; the best throughput wins
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def cache_dir() -> Path:
    """archlab's cache directory (``ARCHLAB_CACHE_DIR`` overrides the platform default)."""
    env = os.environ.get("ARCHLAB_CACHE_DIR")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("archlab"))
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "archlab"


def clear_cache() -> None:
    """Forget every measured peak."""
    path = cache_dir() / CACHE_FILE
    if path.exists():
        path.unlink()


def dtype_key(dtype: torch.dtype | str) -> str:
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(_DTYPES)}; got {dtype!r}")
        return dtype
    for k, v in _DTYPES.items():
        if v == dtype:
            return k
    raise ConfigError(f"no GEMM roofline for dtype {dtype}; supported: {sorted(_DTYPES)}")


def _key(dtype: str, n_threads: int, device: str) -> str:
    from archlab.bench.machine import describe

    m = describe()
    where = m["gpu"] if device.startswith("cuda") else m["cpu"]
    return f"{where}|{device.split(':')[0]}|{dtype}|threads={n_threads}|torch={torch.__version__}"


def _measure_peak(dtype: torch.dtype, device: str, sizes: tuple[int, ...], min_time_s: float) -> float:
    best = 0.0
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        t = measure(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), min_time_s=min_time_s, min_calls=5, sync=sync)
        best = max(best, 2 * n**3 / t.p(50))
    return best


def gemm_peak(
    dtype: torch.dtype | str = "fp32",
    threads: int | None = None,
    *,
    device: str = "cpu",
    sizes: tuple[int, ...] | None = None,
    min_time_s: float = 0.3,
    refresh: bool = False,
) -> float:
    """Peak FLOP/s of a square matmul for ``dtype`` at ``threads`` (cached, see module doc).

    Args:
        dtype: ``"fp32"``, ``"bf16"``, ``"fp16"`` or a torch dtype.
        threads: intra-op threads (``None``: all cores).
        device: ``"cpu"`` or a CUDA device.
        sizes: matrix sizes tried (default :data:`SIZES`); the best median throughput wins.
        min_time_s: measuring time per size.
        refresh: measure again even if cached.

    Returns:
        FLOP/s (a multiply-add counts as 2, as in archlab's FLOP counts).
    """
    name = dtype_key(dtype)
    path = cache_dir() / CACHE_FILE
    with use_threads(threads) as n:
        key = _key(name, n, device)
        cache: dict[str, float] = {}
        if path.is_file():
            try:
                cache = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, OSError):
                cache = {}
        if not refresh and key in cache:
            return float(cache[key])
        log.info("measuring the %s GEMM peak with %d thread(s) (cached in %s)", name, n, path)
        with torch.inference_mode():
            peak = _measure_peak(_DTYPES[name], device, sizes or SIZES, min_time_s)
    cache[key] = peak
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(cache, indent=1, sort_keys=True))
    except OSError as exc:  # a read-only home still gets a figure, just not cached
        log.warning("could not cache the GEMM peak in %s (%s)", path, exc)
    return peak
