"""Peak memory of a configuration.

On CUDA: ``torch.cuda.max_memory_allocated`` after a reset. On the CPU: the growth of the
process's resident set (RSS) over the run. Linux lets a process reset its RSS high-water mark
(``echo 5 > /proc/self/clear_refs``), so ``VmHWM - RSS before`` is the peak growth of this run;
where that is not possible the figure is ``ru_maxrss`` growth, which only sees new highs. In one
process allocator caches from earlier configurations hide part of the growth; the benchmark's
``isolate=True`` runs each configuration in a fresh subprocess for clean figures.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import torch

MB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """The current resident set size in MB (None where /proc is missing)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class PeakMemory:
    """Measures the peak memory growth between :meth:`start` and :meth:`stop`."""

    device: str = "cpu"
    method: str = ""
    _base_kb: float = 0.0

    def start(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base_kb = torch.cuda.memory_allocated() / 1024
            self.method = "cuda max_memory_allocated"
            return self
        if _reset_hwm() and _status_kb("VmHWM") is not None:
            self.method = "RSS growth (VmHWM)"
            self._base_kb = float(_status_kb("VmRSS") or 0)
        else:
            self.method = "RSS growth (ru_maxrss, new highs only)"
            self._base_kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return self

    def stop(self) -> float:
        """Peak growth in MB since :meth:`start` (0 when nothing grew)."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            peak_kb = torch.cuda.max_memory_allocated() / 1024
        elif self.method.startswith("RSS growth (VmHWM"):
            peak_kb = float(_status_kb("VmHWM") or 0)
        else:
            peak_kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return max(0.0, peak_kb - self._base_kb) / 1024
