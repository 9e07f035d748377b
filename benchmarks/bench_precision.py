"""Does ``precision="auto"`` pick the faster of fp32 and bf16 on this CPU?

Side by side in one run, for a small model (nanoGPT's baby GPT; the digits CNN), a medium one (a
transformer encoder, d=512 x 6 layers) and a large one (gpt2_small at a short sequence): the time
of one training step (forward, cross-entropy, backward, AdamW) in fp32, under bf16 autocast, and
in what ``auto`` picks (:func:`archlab.train.precision.choose_precision`, the function the engine
calls), with the time its calibration took. fp32 and auto steps alternate round by round on
private copies (a load change on this shared machine hits both); the fastest step of each counts.

bf16 runs in a subprocess with a time limit: on a CPU without avx512_bf16/AMX it is emulated and
one step of a large model takes minutes, so a row may say only that it took longer than the
limit. ``auto`` never measures (nor picks) bf16 there. Writes benchmarks/results/precision.md.

    python benchmarks/bench_precision.py            # about 3-5 minutes on 2 cores
"""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import archlab
from archlab.train.precision import autocast, candidates, choose_precision, cpu_flags

OUT = Path(__file__).parent / "results" / "precision.md"
ROUNDS = 5  # timed steps per precision, after one warm-up
BF16_LIMIT_S = 45.0  # wall-clock limit of the bf16 subprocess of one model

# name -> (registry model, overrides, batch size, sequence length or None)
MODELS = {
    "baby GPT (4x128, block 64)": (
        "gpt_nano",
        dict(d_model=128, n_heads=4, n_layers=4, dropout=0.0, max_seq_len=64),
        12,
        64,
    ),
    "digits CNN (8x8)": ("cnn_digits", {}, 64, None),
    "transformer encoder d=512 x 6": ("transformer_encoder_512", dict(dropout=0.0), 4, 64),
    "gpt2_small (124M), seq 32": ("gpt2_small", {}, 2, 32),
}
SIZE = {"baby GPT (4x128, block 64)": "small", "digits CNN (8x8)": "small"}


def build(name: str):
    """The model and one batch's (inputs, targets), seeded."""
    reg, overrides, batch, seq = MODELS[name]
    torch.manual_seed(0)
    model = archlab.create(reg, **overrides)
    if seq is None:
        inputs = model.example_input(batch_size=batch)
    else:
        inputs = (torch.randint(0, model.config.vocab_size, (batch, seq)),)  # tokens; no padding
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.no_grad():
        out = model(*inputs)
    return model, inputs, torch.randint(0, out.shape[-1], out.shape[:-1])


def trial(model, inputs, target):
    """``choose_precision``'s trial: precision -> one AdamW step on a private copy."""

    def make(precision: str):
        m = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(m.parameters(), 1e-4)
        device = torch.device("cpu")

        def step() -> None:
            with autocast(device, precision):
                out = m(*inputs)
            loss = torch.nn.functional.cross_entropy(out.float().reshape(-1, out.shape[-1]), target.reshape(-1))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    return make


def timed(step) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def measure_fp32_and_auto(name: str) -> dict:
    model, inputs, target = build(name)
    make = trial(model, inputs, target)
    t0 = time.perf_counter()
    choice = choose_precision("auto", "cpu", make)  # a benchmark: no budget
    calib_s = time.perf_counter() - t0
    steps = {"fp32": make("fp32"), "auto": make(choice.precision)}
    for s in steps.values():
        s()  # warm-up
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(ROUNDS):
        for k, s in steps.items():
            best[k] = min(best[k], timed(s))
    return {
        "fp32_ms": best["fp32"] * 1e3,
        "auto_ms": best["auto"] * 1e3,
        "choice": choice.to_dict(),
        "calib_s": calib_s,
    }


def measure_bf16(name: str) -> dict:
    """bf16 steps in a subprocess that prints each step's time; killed at BF16_LIMIT_S."""
    cmd = [sys.executable, __file__, "--bf16", name]
    times, t0 = [], time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=BF16_LIMIT_S).stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    times = [float(line.split()[1]) for line in out.splitlines() if line.startswith("step ")]
    done = len(times) == ROUNDS + 1
    if len(times) > 1:
        return {"bf16_ms": min(times[1:]) * 1e3, "bf16_note": "" if done else f" ({len(times) - 1} warm steps)"}
    if times:
        return {"bf16_ms": times[0] * 1e3, "bf16_note": " (first step only)"}
    return {"bf16_ms": None, "bf16_note": f"> {time.perf_counter() - t0:.0f} s, stopped"}


def bf16_child(name: str) -> None:
    torch.set_num_threads(1)
    model, inputs, target = build(name)
    step = trial(model, inputs, target)("bf16")
    for _ in range(ROUNDS + 1):
        print(f"step {timed(step):.6f}", flush=True)


def _flags() -> str:
    wanted = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")) or f == "avx2")
    return ", ".join(wanted) or "none of avx2/avx512*/amx*"


def main() -> None:
    torch.set_num_threads(1)  # on shared cores a second thread's stalls swamp the differences measured
    rows = []
    for name in MODELS:
        r = {"name": name, **measure_fp32_and_auto(name), **measure_bf16(name)}
        rows.append(r)
        print(json.dumps(r), flush=True)
    native = candidates("cpu", flags=cpu_flags())
    lines = [
        '# fp32, bf16 and `precision="auto"`: train-step time on this CPU',
        "",
        "Command: `python benchmarks/bench_precision.py`. One training step = forward, cross-entropy, backward,",
        "AdamW; fastest of 5 warm steps (bf16: of those done within its limit); fp32 and auto alternate round by round. auto = "
        "`archlab.train.precision.choose_precision` (the engine's chooser).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
        f"torch threads, torch {torch.__version__}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (the cores are shared with other jobs).",
        f"CPU flags: {_flags()}. Native candidates here: {', '.join(native)}.",
        "",
        "| model | size | fp32 ms | bf16 ms | auto picks | auto ms | auto / faster | calibration |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        bf16 = r["bf16_ms"]
        faster = min(r["fp32_ms"], bf16) if bf16 is not None else r["fp32_ms"]
        c = r["choice"]
        calib = f"{r['calib_s']:.2f} s ({c['reason']})" if c["measured"] else f"none ({c['reason']})"
        bf16_text = f"{bf16:.1f}{r['bf16_note']}" if bf16 is not None else r["bf16_note"]
        lines.append(
            f"| {r['name']} | {SIZE.get(r['name'], 'medium' if 'encoder' in r['name'] else 'large')} "
            f"| {r['fp32_ms']:.1f} | {bf16_text} | {c['precision']} | {r['auto_ms']:.1f} "
            f"| {r['auto_ms'] / faster:.3f} | {calib} |"
        )
    lines += [
        "",
        "Target: auto within 5% of the faster of fp32 and bf16 on every row (auto / faster <= 1.05).",
        "Without avx512_bf16/AMX bf16 is emulated (a 1024x1024 bf16 matmul runs at ~0.3 GFLOP/s here against",
        "~20 GFLOP/s in fp32), so auto does not measure it and trains in fp32; its row differs from fp32's only",
        "by measurement noise. On a CPU with AMX auto measures both and keeps bf16 only when it is 10% faster.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bf16":
        bf16_child(sys.argv[2])
    else:
        main()
