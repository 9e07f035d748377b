"""Device and numeric-precision selection: by the hardware's facts, then by measurement.

``precision="auto"`` first narrows the candidates to what the hardware runs natively
(:func:`candidates`): fp32 everywhere; bf16 on CUDA GPUs that report it and on CPUs with
``avx512_bf16`` or AMX (``amx_bf16``/``amx_tile``) in ``/proc/cpuinfo``; fp16 with a GradScaler on
CUDA. On a CPU without those flags bf16 matmul is emulated, hundreds of times slower than fp32, so
it is never a candidate (and never measured) there.

Native is not the same as faster: a small model on a CPU with AMX can train slower under bf16
autocast (the casts cost more than the matmuls save). So with more than one candidate,
:func:`choose_precision` times a few warm training steps of the actual model and batch in each
(on a private copy, with every RNG restored afterwards, so training is unchanged) and keeps a
lower precision only when it is at least :data:`MIN_GAIN` faster than fp32. The calibration is
skipped, and the static rule (:func:`static_precision`) used, when it would cost more than
:data:`BUDGET` of the planned training time. The result, a :class:`PrecisionChoice`, is recorded
in the run (its checkpoints and final metrics) so a resume reuses it without measuring again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.errors import ConfigError

log = logging.getLogger("archlab.train")

_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "amx_tile"})
#: a lower precision is kept only when its step is at least this much faster than fp32's
MIN_GAIN = 0.10
#: the calibration may cost at most this fraction of the planned training time
BUDGET = 0.02
#: timed steps per candidate (after one warm-up step each); the fastest is kept
TIMED_STEPS = 3
_PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: precision -> a function doing one forward + backward + optimizer step on a private copy
Trial = Callable[[str], Callable[[], Any]]


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


def _check_request(requested: str, device_type: str) -> None:
    if requested not in _PRECISIONS:
        raise ConfigError(f"precision={requested!r} must be one of auto, fp32, bf16, fp16")
    if requested == "fp16" and device_type != "cuda":
        raise ConfigError(f"precision='fp16' needs a CUDA device (GradScaler); got device {device_type!r}")


def candidates(device_type: str, *, flags: Iterable[str] = (), cuda_bf16: bool = False) -> list[str]:
    """The precisions this device runs natively, fp32 first (the reference of every comparison)."""
    if device_type == "cuda":
        return ["fp32", "bf16", "fp16"] if cuda_bf16 else ["fp32", "fp16"]
    if device_type == "cpu" and _CPU_BF16_FLAGS & set(flags):
        return ["fp32", "bf16"]
    return ["fp32"]


def static_precision(
    requested: str,
    device_type: str,
    *,
    flags: Iterable[str] = (),
    cuda_bf16: bool = False,
) -> str:
    """The rule without measurement: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    An explicit request is kept; ``auto`` takes the lowest native precision (bf16 where native,
    fp16 on other CUDA GPUs, else fp32).

    Args:
        requested: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"``, ``"cuda"``, ``"mps"``.
        flags: the CPU's feature flags (only used for ``cpu``).
        cuda_bf16: whether the CUDA device supports bf16 natively.
    """
    _check_request(requested, device_type)
    if requested != "auto":
        return requested
    native = candidates(device_type, flags=flags, cuda_bf16=cuda_bf16)
    if device_type == "cuda":
        return "bf16" if "bf16" in native else "fp16"
    return native[-1]


def _machine_facts(device: torch.device) -> tuple[frozenset[str], bool]:
    cuda_bf16 = bool(device.type == "cuda" and torch.cuda.is_bf16_supported())
    return (cpu_flags() if device.type == "cpu" else frozenset()), cuda_bf16


@dataclass(frozen=True)
class PrecisionChoice:
    """What training runs in, and why.

    Attributes:
        requested: the configured precision (``auto`` or an explicit one).
        precision: the one used: ``fp32``, ``bf16`` or ``fp16``.
        device: the device type it was chosen for.
        step_ms: measured milliseconds per training step by precision (empty when not measured).
        measured: whether the choice came from the timings (False: an explicit request, a single
            candidate, the static rule, or a choice reused from the run's record).
        reason: one clause saying why.
    """

    requested: str
    precision: str
    device: str
    step_ms: dict[str, float] = field(default_factory=dict)
    measured: bool = False
    reason: str = ""
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrecisionChoice:
        """Rebuild a recorded choice (from a checkpoint or a run's config)."""
        if not isinstance(d, dict) or d.get("precision") not in _PRECISIONS[1:]:
            raise ConfigError(f"a recorded precision choice needs 'precision' in fp32/bf16/fp16; got {d!r:.120}")
        keys = {"requested", "precision", "device", "step_ms", "measured", "reason"}
        return cls(**{k: v for k, v in d.items() if k in keys})

    def timings(self) -> str:
        """``fp32 3.1 ms, bf16 2.4 ms``: the measured step times ('' when not measured)."""
        return ", ".join(f"{p} {ms:.3g} ms" for p, ms in self.step_ms.items())

    def line(self) -> str:
        """One line for the log: the choice, the timings and why."""
        timed = self.timings()
        return f"precision: {self.precision} (requested {self.requested}{'; step ' + timed if timed else ''}; {self.reason})"


def choose_precision(
    requested: str,
    device: torch.device | str,
    trial: Trial | None = None,
    *,
    total_steps: int | None = None,
    budget: float | None = None,
    flags: Iterable[str] | None = None,
    cuda_bf16: bool | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> PrecisionChoice:
    """Resolve a precision request, measuring ``auto`` where more than one precision is native.

    Args:
        requested: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: where training runs.
        trial: ``trial(precision)`` returns a function that does one forward + backward +
            optimizer step of the actual model and batch on a private copy (see
            :func:`archlab.train.precision_trial.task_trial`); None uses the static rule.
        total_steps: optimizer steps of the planned run; the calibration is skipped when it would
            cost more than ``budget`` of their time (None: no limit, e.g. a benchmark).
        budget: that fraction (default :data:`BUDGET`).
        flags, cuda_bf16: the hardware's facts (default: this machine's), injectable for tests.
        clock: the timer (injectable for tests).

    Returns:
        A :class:`PrecisionChoice`; the global RNG states are as they were before the call.
    """
    device = torch.device(device)
    budget = BUDGET if budget is None else budget
    if flags is None or cuda_bf16 is None:
        own_flags, own_bf16 = _machine_facts(device)
        flags = own_flags if flags is None else flags
        cuda_bf16 = own_bf16 if cuda_bf16 is None else cuda_bf16
    static = static_precision(requested, device.type, flags=flags, cuda_bf16=cuda_bf16)

    def choice(precision: str, reason: str, step_ms: dict[str, float] | None = None) -> PrecisionChoice:
        return PrecisionChoice(requested, precision, device.type, dict(step_ms or {}), step_ms is not None, reason)

    if requested != "auto":
        return choice(static, "requested")
    native = candidates(device.type, flags=flags, cuda_bf16=cuda_bf16)
    if len(native) == 1:
        why = "no avx512_bf16/AMX: bf16 would be emulated" if device.type == "cpu" else f"only fp32 on {device.type}"
        return choice("fp32", why)
    if trial is None:
        return choice(static, "static rule (nothing to measure)")
    calibration_steps = len(native) * (1 + TIMED_STEPS)
    if total_steps is not None and calibration_steps > budget * total_steps:
        return choice(
            static,
            f"static rule: measuring takes ~{calibration_steps} steps, more than {budget:.0%} of {total_steps}",
        )
    try:
        with _rng_preserved(device):
            step_ms = _measure(native, trial, device, total_steps, budget, clock)
    except Exception as exc:  # a model that cannot be copied or stepped twice: training decides, not this
        return choice(static, f"static rule: not measured ({type(exc).__name__}: {str(exc)[:120]})")
    if isinstance(step_ms, str):
        return choice(static, step_ms)
    return _pick(step_ms, choice)


def _pick(step_ms: dict[str, float], choice: Callable[..., PrecisionChoice]) -> PrecisionChoice:
    """The fastest precision, where a lower one must beat fp32 by at least MIN_GAIN."""
    fp32 = step_ms["fp32"]
    lower = {p: t for p, t in step_ms.items() if p != "fp32" and t <= (1 - MIN_GAIN) * fp32}
    if not lower:
        return choice("fp32", f"measured: no lower precision is {MIN_GAIN:.0%} faster than fp32", step_ms)
    best = min(lower, key=lower.__getitem__)
    return choice(best, f"measured: {best} is {fp32 / lower[best]:.2f}x as fast as fp32", step_ms)


def _measure(
    native: list[str],
    trial: Trial,
    device: torch.device,
    total_steps: int | None,
    budget: float,
    clock: Callable[[], float],
) -> dict[str, float] | str:
    """Milliseconds per step by precision, or a reason (str) when the budget ran out.

    One warm-up step each (the first call pays for allocation and kernel selection), then rounds
    that step each precision in turn, so a load change on a shared machine hits all of them; the
    fastest step of each is kept.
    """
    on_gpu = device.type == "cuda" and torch.cuda.is_available()  # kernels run asynchronously: wait for them
    sync = (lambda: torch.cuda.synchronize(device)) if on_gpu else (lambda: None)

    def timed(step: Callable[[], Any]) -> float:
        t0 = clock()
        step()
        sync()
        return clock() - t0

    start = clock()
    steps: dict[str, Callable[[], Any]] = {}
    best: dict[str, float] = {}
    for p in native:
        steps[p] = trial(p)
        timed(steps[p])  # warm-up: not counted
        best[p] = timed(steps[p])
        if total_steps is None:
            continue
        # what the calibration will have cost once the precisions seen so far finish their
        # rounds, against the run at the fastest step seen
        projected = clock() - start + (TIMED_STEPS - 1) * sum(best.values())
        planned = min(best.values()) * total_steps
        if projected > budget * planned:
            return f"static rule: measuring would take ~{projected:.2g} s, more than {budget:.0%} of the run's ~{planned:.2g} s"
    for _ in range(TIMED_STEPS - 1):
        for p in native:
            best[p] = min(best[p], timed(steps[p]))
    return {p: round(best[p] * 1e3, 3) for p in native}


@contextlib.contextmanager
def _rng_preserved(device: torch.device):
    """Python, NumPy and torch (CPU and this CUDA device) RNG states as they were before."""
    py, npy = random.getstate(), np.random.get_state()
    cuda = [device.index or 0] if device.type == "cuda" and torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda, device_type="cuda"):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
