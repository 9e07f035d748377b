"""Timing a zero-argument callable the way a careful benchmark does.

The recipe (timm's ``benchmark.py``, optimum-benchmark and ``torch.utils.benchmark`` agree on it):

1. The first call is timed on its own and never mixed into the latency: it pays for lazy
   initialisation, compilation, ONNX Runtime's first-run graph optimisation.
2. Warm-up runs in windows until the window median settles (two successive medians within
   ``settle_rel`` of each other), so caches, the allocator and CPU frequency reach steady state.
3. Measurement runs until both a minimum duration and a minimum number of calls are reached;
   every call is timed separately so p50 / p90 / p99 come from real call times.

On CUDA each call is followed by ``torch.cuda.synchronize()`` (``sync``), otherwise only the
kernel launch would be timed. The thread count is the caller's business: see :func:`threads`.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Timing", "measure", "percentile", "threads"]


@dataclass
class Timing:
    """Call times of one measured configuration (seconds).

    Attributes:
        first_call_s: the very first call (compilation, session warm-up), reported separately.
        warmup_calls: calls spent until the median settled.
        times_s: the timed calls, in order.
    """

    first_call_s: float
    warmup_calls: int
    times_s: list[float]

    @property
    def calls(self) -> int:
        return len(self.times_s)

    def p(self, q: float) -> float:
        return percentile(self.times_s, q)

    @property
    def total_s(self) -> float:
        return sum(self.times_s)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _window(fn: Callable[[], Any], n: int, sync: Callable[[], None] | None) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        out.append(time.perf_counter() - t0)
    return out


def measure(
    fn: Callable[[], Any],
    *,
    min_time_s: float = 1.0,
    min_calls: int = 10,
    max_warmup_s: float | None = None,
    settle_rel: float = 0.05,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """Time ``fn``: first call, warm-up until the median settles, then the timed calls.

    Args:
        fn: the work, with its inputs bound (no argument conversion inside).
        min_time_s: measure for at least this long ...
        min_calls: ... and at least this many calls.
        max_warmup_s: give up settling after this long (default ``max(min_time_s, 0.2)``).
        settle_rel: warm-up ends when two successive window medians differ by less than this.
        sync: called after every call (``torch.cuda.synchronize`` on CUDA).
    """
    t0 = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    first = time.perf_counter() - t0

    # Window size: about 20 ms of work (at least 3 calls), estimated from a few calls.
    probe = _window(fn, 3, sync)
    per_call = max(statistics.median(probe), 1e-7)
    window = max(3, min(1000, int(0.02 / per_call)))
    max_warmup_s = max(min_time_s, 0.2) if max_warmup_s is None else max_warmup_s
    warm, prev = len(probe), statistics.median(probe)
    start = time.perf_counter()
    while time.perf_counter() - start < max_warmup_s:
        cur = statistics.median(_window(fn, window, sync))
        warm += window
        if abs(cur - prev) <= settle_rel * max(prev, 1e-12):
            break
        prev = cur

    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_time_s:
        times.extend(_window(fn, window, sync))
    return Timing(first_call_s=first, warmup_calls=warm, times_s=times)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count for the block, yield it, restore the old one.

    ``None`` means all cores of this process (``os.sched_getaffinity``), stated explicitly so
    the result records the number actually used.
    """
    old = torch.get_num_threads()
    want = n if n is not None else all_cores()
    torch.set_num_threads(want)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def all_cores() -> int:
    """CPU cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
