"""One benchmark configuration in a fresh process (``benchmark(..., isolate=True)``).

Reads ``{"spec": ..., "backend", "mode", "batch_size", "threads", "min_time_s", "min_calls",
"dtype"}`` as JSON on stdin and prints one :class:`~archlab.bench.result.BenchRow` as a JSON
line. The memory figure starts before the model is loaded, so it is the RAM this configuration
needs to serve: weights, runtime, backend session and activations.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict


def main() -> int:
    cfg = json.loads(sys.stdin.read())
    import torch

    from archlab.bench.harness import _Session
    from archlab.bench.memory import PeakMemory
    from archlab.bench.source import from_spec

    torch.set_num_threads(cfg["threads"])
    backend = cfg["backend"]
    mem = PeakMemory().start()
    source = from_spec(cfg["spec"])
    session = _Session(source, cfg.get("dtype"), cfg["threads"], cfg["min_time_s"], cfg["min_calls"])
    if backend.startswith("onnxruntime") and cfg["mode"] == "infer":
        # A server loads the ONNX file, not torch and the exporter: export first, count from here.
        try:
            session.ctx.onnx_model(session.module, *session.inputs(2))
            if backend == "onnxruntime-int8":
                session.ctx.int8_path()
        except Exception:  # the row below reports the failure
            pass
        mem = PeakMemory().start()
    row = session.run(cfg["backend"], cfg["mode"], cfg["batch_size"])
    if row.p50_ms is not None:
        row.peak_mem_mb = mem.stop()
        row.mem_method = f"{mem.method}, fresh process: " + (
            "session + run" if backend.startswith("onnxruntime") else "model load + backend + run"
        )
    print(json.dumps(asdict(row)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
