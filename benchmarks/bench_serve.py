"""Dynamic batching in the HTTP server of an export folder, measured under load on loopback.

Claims, measured side by side in one run (each export's own server.py in a subprocess, an asyncio
httpx client in this process, both on this machine):

1. With dynamic batching (max batch 32, max wait 2 ms) the server answers >= 3x the requests/s
   of the same server without batching (max batch 1) at concurrency 32, with p99 no worse than
   2 x single-request p50 x max batch (single request: concurrency 1, batching off).
2. No request fails or is lost (every request answered 200) over 10,000 requests at concurrency
   32 (cnn_digits, batching on), nor in the other runs.
3. Overload (a short queue, more clients than it holds): the excess is answered 503 with
   Retry-After, and the p99 of the admitted requests stays near the p99 without overload.

Models: cnn_digits (8x8 digits CNN, one (1, 8, 8) image per request) and transformer_encoder_256
(vocab 50, 2 classes, one sequence of 128 token ids and its all-False padding mask per request); untrained (the figures do not
depend on the weights). Writes benchmarks/results/serve.md and serve.json.

    python benchmarks/bench_serve.py [--requests 200] [--endurance 10000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from archlab.bench.machine import describe
from archlab.bench.timing import all_cores
from archlab.deploy import export
from archlab.deploy.loadtest import LoadResult, serve_and_measure

OUT = Path(__file__).parent / "results" / "serve.md"
LEVELS = (1, 8, 32)
MAX_BATCH = 32
MODELS = {
    "cnn_digits": ({}, lambda rng: rng.integers(0, 17, (1, 1, 8, 8)).astype(float).tolist()),
    "transformer_encoder_256": (
        {"vocab_size": 50, "num_classes": 2, "dropout": 0.0},
        lambda rng: {"tokens": rng.integers(0, 50, (1, 128)).tolist(), "padding_mask": [[False] * 128]},
    ),
}
MODES = {"batching off": ("--max-batch", "1"), "batching on": ("--max-batch", str(MAX_BATCH), "--max-wait-ms", "2")}


def _row(model: str, mode: str, r: LoadResult) -> str:
    errs = ", ".join(f"{k}: {n}" for k, n in r.errors.items()) or "0"
    return (
        f"| {model} | {mode} | {r.concurrency} | {r.requests} | {r.requests_per_s:.1f} | {r.p50_ms:.2f} | "
        f"{r.p99_ms:.2f} | {errs} |"
    )


def run(requests: int, endurance: int, work: Path) -> tuple[list[str], dict]:
    rows = [
        "| model | server | concurrency | requests | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    claims = ["| model | figure | measured | target | met |", "|---|---|---|---|---|"]
    raw: dict = {}
    total = failed = 0
    rng = np.random.default_rng(0)
    for model, (overrides, sample) in MODELS.items():
        torch.manual_seed(0)
        folder = export(model, "onnx", work / model, overrides=overrides or None).out_dir
        body = json.dumps({"inputs": sample(rng)}).encode()
        res = {}
        for mode, args in MODES.items():
            res[mode] = serve_and_measure(folder, body, concurrency=LEVELS, requests=requests, server_args=args)
            for r in res[mode]:
                rows.append(_row(model, mode, r))
                total, failed = total + r.requests, failed + r.failed
        raw[model] = {m: [r.to_dict() for r in rs] for m, rs in res.items()}
        off, on = res["batching off"], res["batching on"]
        speed = on[-1].requests_per_s / off[-1].requests_per_s
        bound = 2 * off[0].p50_ms * MAX_BATCH
        claims += [
            f"| {model} | requests/s at concurrency 32, batching on / off | {on[-1].requests_per_s:.1f} / "
            f"{off[-1].requests_per_s:.1f} = {speed:.2f}x | >= 3x | {'yes' if speed >= 3 else 'NO'} |",
            f"| {model} | p99 at concurrency 32, batching on | {on[-1].p99_ms:.1f} ms | <= 2 x {off[0].p50_ms:.2f} ms "
            f"x {MAX_BATCH} = {bound:.1f} ms | {'yes' if on[-1].p99_ms <= bound else 'NO'} |",
        ]
        if model == "cnn_digits" and endurance:
            long = serve_and_measure(
                folder, body, concurrency=(32,), requests=endurance, server_args=MODES["batching on"]
            )
            raw["endurance"] = long[0].to_dict()
            rows.append(_row(model, "batching on (endurance)", long[0]))
            claims.append(
                f"| {model} | failed or lost over {endurance:,} requests (concurrency 32, batching on) | "
                f"{long[0].failed} | 0 of 10,000 | {'yes' if long[0].failed == 0 and endurance >= 10_000 else 'NO'} |"
            )
        if model == "cnn_digits":
            over = serve_and_measure(
                folder,
                body,
                concurrency=(128,),
                requests=4 * requests,
                server_args=(*MODES["batching on"], "--queue", "16"),
            )[0]
            raw["overload"] = over.to_dict()
            rows.append(_row(model, "batching on, queue 16 (overload)", over))
            flat = over.ok_p99_ms is not None and over.ok_p99_ms <= 2 * on[-1].p99_ms
            shed = bool(over.errors.get("503")) and set(over.errors) == {"503"}
            claims.append(
                f"| {model} | overload (128 clients, queue 16): 503s; p99 of admitted vs p99 at concurrency 32 | "
                f"{over.errors.get('503', 0)} of {over.requests} answered 503; {over.ok_p99_ms:.1f} ms vs "
                f"{on[-1].p99_ms:.1f} ms | 503s only; admitted p99 <= 2x | 503s: {'yes' if shed else 'NO'}; "
                f"flat p99: {'yes' if flat else 'NO'} |"
            )
    claims.append(
        f"| all | failed or lost requests (batching on and off, concurrency 1/8/32) | {failed} of {total} | 0 | "
        f"{'NO' if failed else 'yes'} |"
    )
    return claims + ["", *rows], raw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200, help="requests per model x server x concurrency")
    ap.add_argument("--endurance", type=int, default=10_000, help="requests in the zero-failure run (0: skip)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load0 = os.getloadavg()[0]
    m = describe(all_cores())
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        table, raw = run(a.requests, a.endurance, Path(tmp))
    load1 = os.getloadavg()[0]
    n = a.requests * len(MODELS) * len(MODES) * len(LEVELS)
    text = "\n".join(
        [
            "# Serving: dynamic batching over HTTP",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, ISA flags: {' '.join(m['isa_flags'])}; torch {m['torch']}, "
            f"onnxruntime {m['onnxruntime']}. Shared machine: other processes ran beside this one (load average "
            f"{load0:.2f} at the start, {load1:.2f} at the end), and the client shares the cores with the server.",
            "",
            f"Command: `python benchmarks/bench_serve.py --requests {a.requests} --endurance {a.endurance}`",
            "",
            "Each export's own server.py (numpy + onnxruntime + Starlette + uvicorn, no torch) in a subprocess on "
            "loopback, default ONNX Runtime threads; one JSON request = one sample; latency is the client's, "
            "from send to answer; 20 warm-up requests per server are not counted.",
            "",
            f"{n} requests in the batching runs, {a.endurance:,} in the endurance run, {4 * a.requests} in the "
            "overload run.",
            "",
            *table,
        ]
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n")
    OUT.with_suffix(".json").write_text(json.dumps({"requests": a.requests, "load": [load0, load1], **raw}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
