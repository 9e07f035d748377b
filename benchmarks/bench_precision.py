"""Is bf16 worth it on this CPU? The facts behind ``precision="auto"``.

Measures, side by side in one run: 1024x1024 matmul throughput in fp32 and bf16, and the time per
training step of the MNIST-1D CNN (batch 100) in fp32 and under bf16 autocast. Prints and writes
benchmarks/results/precision.md with the CPU flags and what ``auto`` picks here.

    python benchmarks/bench_precision.py
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

import archlab
from archlab.train.precision import autocast, cpu_flags, resolve_precision

OUT = Path(__file__).parent / "results" / "precision.md"


def matmul_gflops(dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def step_ms(precision: str, steps: int = 300) -> float:
    torch.manual_seed(0)
    model = archlab.create("cnn1d_mnist1d")
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x, y = torch.randn(100, 1, 40), torch.randint(0, 10, (100,))
    device = torch.device("cpu")
    for i in range(steps + 20):
        if i == 20:
            t = time.perf_counter()
        with autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t) / steps * 1e3


def main() -> None:
    torch.set_num_threads(1)
    flags = sorted(f for f in cpu_flags() if "bf16" in f or f.startswith("amx") or f == "avx512f")
    auto = resolve_precision("auto", torch.device("cpu"))
    fp32_gf, bf16_gf = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    fp32_ms, bf16_ms = step_ms("fp32"), step_ms("bf16")
    lines = [
        "# Precision on this CPU",
        "",
        f"Command: `python benchmarks/bench_precision.py` (1 thread, {platform.machine()}, torch {torch.__version__}).",
        f'CPU flags that matter: {", ".join(flags) or "none"}. `precision="auto"` picks **{auto}** here.',
        "",
        "| measure | fp32 | bf16 | bf16 / fp32 |",
        "|---|---:|---:|---:|",
        f"| 1024x1024 matmul, GFLOP/s | {fp32_gf:.1f} | {bf16_gf:.1f} | {bf16_gf / fp32_gf:.2f}x throughput |",
        f"| MNIST-1D CNN train step (batch 100), ms | {fp32_ms:.2f} | {bf16_ms:.2f} | {bf16_ms / fp32_ms:.2f}x time |",
        "",
        "On a CPU without avx512_bf16/AMX, bf16 matmul falls back to slow emulation (~0.3 GFLOP/s",
        "measured on such a machine), which is why `auto` only picks bf16 where those flags exist.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
