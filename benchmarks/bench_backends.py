"""ONNX Runtime vs eager batch-1 latency, and archlab's timer vs torch.utils.benchmark.

Claims measured side by side in one run (issue 10):

1. ONNX Runtime batch-1 latency <= 0.6x eager for the seeds' 784-128-10 MLP and <= 0.2x for the
   seeds' LeNet-style CIFAR CNN, at 1 thread and at all threads.
2. On a tiny MLP, archlab's p50 is within 10% of ``Timer.blocked_autorange``'s median at the
   same thread count.

Writes benchmarks/results/backends.md (CPU, flags, every figure, met or missed).

    python benchmarks/bench_backends.py [--min-time 1.0]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import torch.utils.benchmark as tb

from archlab.bench import benchmark
from archlab.bench.machine import describe
from archlab.bench.timing import all_cores, measure
from archlab.registry import create

OUT = Path(__file__).parent / "results" / "backends.md"
TARGETS = {"mlp_784_128_10": 0.6, "cnn_lenet_cifar": 0.2}


def ort_vs_eager(min_time: float) -> list[str]:
    rows = [
        "| model | threads | eager p50 ms | onnxruntime p50 ms | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, target in TARGETS.items():
        for n in sorted({1, all_cores()}):
            r = benchmark(
                name, batch_sizes=(1,), backends=("eager", "onnxruntime"), threads=n, min_time_s=min_time, mfu=False
            )
            e, o = r.row("eager", 1), r.row("onnxruntime", 1)
            ratio = o.p50_ms / e.p50_ms
            rows.append(
                f"| {name} | {n} | {e.p50_ms:.4f} | {o.p50_ms:.4f} ({o.status}) | {ratio:.2f} | "
                f"<= {target} | {'yes' if ratio <= target else 'NO'} |"
            )
    return rows


def harness_vs_timer(min_time: float, rounds: int = 5) -> list[str]:
    """Both timers on the same statement in the same grad mode (plain forward: Timer runs the
    statement as given), interleaved A/B for ``rounds`` rounds; the median ratio is reported."""
    import statistics

    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)).eval()
    x = torch.randn(1, 32)
    rows = [
        "| threads | archlab p50 us (median of rounds) | Timer.blocked_autorange median us | archlab / Timer "
        "(median of per-round ratios) | within 10% |",
        "|---|---|---|---|---|",
    ]
    for n in sorted({1, all_cores()}):
        torch.set_num_threads(n)
        ours, theirs, ratios = [], [], []
        for _ in range(rounds):
            a = measure(lambda: model(x), min_time_s=min_time).p(50)
            timer = tb.Timer("model(x)", globals={"model": model, "x": x}, num_threads=n)
            b = timer.blocked_autorange(min_run_time=min_time).median
            ours.append(a)
            theirs.append(b)
            ratios.append(a / b)
        ratio = statistics.median(ratios)
        rows.append(
            f"| {n} | {statistics.median(ours) * 1e6:.2f} | {statistics.median(theirs) * 1e6:.2f} | "
            f"{ratio:.3f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) | "
            f"{'yes' if abs(ratio - 1) <= 0.10 else 'NO'} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-time", type=float, default=1.0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    create("mlp_784_128_10")  # load the registry before timing
    m = describe(all_cores())
    head = [
        "# Backends: ONNX Runtime vs eager, and the harness vs torch.utils.benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, ISA flags: {' '.join(m['isa_flags'])}; torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}. Shared machine: other processes ran beside this one.",
        "",
        f"Command: `python benchmarks/bench_backends.py --min-time {a.min_time}`",
        "",
    ]
    text = (
        "\n".join(
            head
            + ["## 1. Batch-1 latency, ONNX Runtime / eager", ""]
            + ort_vs_eager(a.min_time)
            + ["", "## 2. Harness p50 vs Timer.blocked_autorange median (tiny MLP 32-64-10, batch 1)", ""]
            + harness_vs_timer(a.min_time)
        )
        + "\n"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
