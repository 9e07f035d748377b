"""The largest batch that fits a memory budget.

Batch sizes double from 1; each is measured (a few eager forwards, or training steps) for its
peak memory growth: RSS on the CPU, ``max_memory_allocated`` on CUDA, where the sweep also stops
at the first out-of-memory error. The sweep stops at the first batch over the budget; the answer
is the largest batch measured within it. Fixed costs (weights, the runtime) are added from the
model's parameter bytes, so the figure compares with a serving process's budget.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlab.bench.memory import MB, PeakMemory
from archlab.bench.source import resolve
from archlab.bench.timing import threads as use_threads
from archlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class BatchSweep:
    """Result of :func:`max_batch_within`.

    Attributes:
        budget_mb: the memory budget.
        max_batch: largest batch measured within it (0: not even batch 1 fits).
        weights_mb: parameter + buffer bytes counted on top of the measured growth.
        measured: ``{batch: peak MB (growth + weights)}`` in the order measured.
        stopped_because: why the sweep ended.
    """

    budget_mb: float
    max_batch: int
    weights_mb: float
    measured: dict[int, float] = field(default_factory=dict)
    stopped_because: str = ""


def _weights_mb(module: nn.Module) -> float:
    n = sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))
    return n / MB


def max_batch_within(
    model: nn.Module | str | os.PathLike,
    memory_mb: float,
    input: Any = None,
    *,
    mode: str = "infer",
    max_batch: int = 4096,
    threads: int | None = None,
) -> BatchSweep:
    """The largest power-of-two batch whose measured peak memory stays within ``memory_mb``.

    Args:
        model: a module, registry name or run directory.
        memory_mb: the budget in MB (weights included).
        input: example input (rows repeated to each batch size).
        mode: ``"infer"`` (inference_mode forwards) or ``"train"`` (forward + backward).
        max_batch: stop here even if memory is left.
        threads: intra-op threads.
    """
    if memory_mb <= 0:
        raise ConfigError(f"memory_mb must be > 0; got {memory_mb}")
    source = resolve(model, input)
    module = source.module if mode == "infer" else copy.deepcopy(source.module).train()
    device = next((p.device.type for p in module.parameters()), "cpu")
    sweep = BatchSweep(budget_mb=memory_mb, max_batch=0, weights_mb=_weights_mb(module))
    b = 1
    with use_threads(threads):
        while b <= max_batch:
            args, kwargs = source.inputs(b)
            mem = PeakMemory(device=device).start()
            try:
                for _ in range(2):
                    if mode == "infer":
                        with torch.inference_mode():
                            module(*args, **kwargs)
                    else:
                        out = module(*args, **kwargs)
                        t = out if isinstance(out, torch.Tensor) else out[0]
                        t.float().pow(2).mean().backward()
                        module.zero_grad(set_to_none=True)
            except torch.OutOfMemoryError:
                sweep.stopped_because = f"out of memory at batch {b}"
                break
            peak = mem.stop() + sweep.weights_mb
            sweep.measured[b] = round(peak, 2)
            del args, kwargs
            if peak > memory_mb:
                sweep.stopped_because = f"batch {b} needs {peak:.1f} MB > {memory_mb:g} MB"
                break
            sweep.max_batch = b
            b *= 2
        else:
            sweep.stopped_because = f"reached max_batch={max_batch}"
    log.info("largest batch within %.0f MB: %d (%s)", memory_mb, sweep.max_batch, sweep.stopped_because)
    return sweep
