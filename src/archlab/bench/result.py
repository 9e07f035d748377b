"""Result types of :func:`archlab.bench.benchmark`: plain dataclasses, JSON-ready."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from archlab.display import NotebookDisplay

SCHEMA_VERSION = 1

# Output tolerances by dtype (and for int8 backends): |backend - eager| <= atol + rtol * max|eager|.
TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-3),
    "fp64": (1e-8, 1e-7),
    "bf16": (1e-2, 3e-2),
    "fp16": (1e-3, 1e-2),
    "int8": (1e-2, 0.15),
}


@dataclass
class BenchRow:
    """One configuration: backend x mode x batch size.

    ``status`` is ``"ok"``, ``"mismatch"`` (outputs outside tolerance: measured, flagged, never
    the fastest) or ``"failed"`` (``reason`` says why, naming the op where the exporter did).
    Latencies are per call in milliseconds; ``first_call_ms`` (compilation, first-run graph
    optimisation) is never part of them; ``setup_s`` is export / session creation.
    """

    backend: str
    mode: str
    batch_size: int
    dtype: str
    threads: int
    status: str = "ok"
    reason: str | None = None
    setup_s: float | None = None
    first_call_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    calls: int = 0
    warmup_calls: int = 0
    samples_per_s: float | None = None
    peak_mem_mb: float | None = None
    mem_method: str | None = None
    flops_per_call: int | None = None
    achieved_flops: float | None = None
    mfu: float | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    tolerance: str | None = None
    precision: str | None = None  # train rows: what the step ran in (precision="auto" measures, see train/precision)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class BenchResult(NotebookDisplay):
    """Everything :func:`archlab.bench.benchmark` measured, with the machine it ran on.

    Attributes:
        model: the model's name.
        threads: intra-op threads used for every row (set explicitly, restored afterwards).
        machine: :func:`archlab.bench.machine.describe`.
        peak_flops: measured GEMM peak FLOP/s by dtype (the MFU denominator).
        rows: one per configuration.
        notes: things worth knowing (e.g. FLOPs unavailable for a model).
    """

    model: str
    threads: int
    min_time_s: float
    isolate: bool
    machine: dict[str, Any]
    peak_flops: dict[str, float] = field(default_factory=dict)
    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, backend: str, batch_size: int, mode: str = "infer") -> BenchRow | None:
        return next((r for r in self.rows if (r.backend, r.batch_size, r.mode) == (backend, batch_size, mode)), None)

    def fastest(self, batch_size: int, mode: str = "infer") -> BenchRow | None:
        """The lowest-p50 row at ``batch_size`` whose outputs matched eager (flagged rows never win)."""
        ok = [r for r in self.rows if r.batch_size == batch_size and r.mode == mode and r.ok and r.p50_ms]
        return min(ok, key=lambda r: r.p50_ms) if ok else None

    def best_throughput(self, mode: str = "infer") -> BenchRow | None:
        ok = [r for r in self.rows if r.mode == mode and r.ok and r.samples_per_s]
        return max(ok, key=lambda r: r.samples_per_s) if ok else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"schema_version": SCHEMA_VERSION, **d}

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        d = {k: v for k, v in d.items() if k != "schema_version"}
        d["rows"] = [BenchRow(**r) for r in d.get("rows", [])]
        return cls(**d)
