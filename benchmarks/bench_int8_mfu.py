"""int8 on a trained transformer encoder classifier, and transformer MFU.

Claims, measured side by side in one run:

1. int8 ONNX on a trained transformer encoder classifier (sequence 128) is >= 1.5x faster than
   fp32 ONNX Runtime at batch 1 with 1 thread, model file <= 0.3x, test metric within 1 point.
   The recipes of ``archlab.deploy.int8.choose_int8`` are tried (dynamic; ONNX Runtime's
   transformer fusion then dynamic, per-tensor and per-channel; static QDQ per-channel calibrated
   on training samples) and the fastest within 1 point is kept, as ``archlab export --int8`` does.
2. A transformer encoder training step (d_model 512, 6 layers, sequence 256, batch 8, fp32)
   reaches >= 50% of the measured fp32 GEMM peak; MFU of the inference path too.

The classifier is trained briefly on a synthetic task (is token 7 more frequent than token 9 in
the sequence?), so the metric has signal. Writes benchmarks/results/int8_mfu.md.

    python benchmarks/bench_int8_mfu.py [--steps 150] [--min-time 1.0]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from archlab.bench import benchmark, gemm_peak
from archlab.bench.backends import ort_session
from archlab.bench.graph_export import onnx_export
from archlab.bench.machine import describe
from archlab.bench.timing import all_cores
from archlab.deploy.int8 import choose_int8
from archlab.registry import create

OUT = Path(__file__).parent / "results" / "int8_mfu.md"
SEQ = 128


def data(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, 50, (n, SEQ), generator=g)
    y = ((x == 7).sum(1) > (x == 9).sum(1)).long()
    return x, y


def train_classifier(steps: int) -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = create("transformer_encoder_256", vocab_size=50, num_classes=2, dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for _ in range(steps):
        x, y = data(16, g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), data(512, g)


def accuracy(sess, x: torch.Tensor, y: torch.Tensor) -> float:
    name = sess.get_inputs()[0].name
    pred = np.concatenate([sess.run(None, {name: x[i : i + 64].numpy()})[0].argmax(-1) for i in range(0, len(x), 64)])
    return float((pred == y.numpy()).mean())


def int8_claim(steps: int, min_time: float) -> list[str]:
    model, (x, y) = train_classifier(steps)
    work = Path(tempfile.mkdtemp())
    onnx_export(model, (x[:2],), path=work / "fp32.onnx")
    name = ort_session(str(work / "fp32.onnx"), 1).get_inputs()[0].name
    train_x, _ = data(64, torch.Generator().manual_seed(0))  # the first 64 training samples
    choice = choose_int8(
        work / "fp32.onnx",
        work / "int8.onnx",
        feed={name: x[:1].numpy()},
        metric=lambda path: accuracy(ort_session(str(path), 1), x, y),
        metric_name="test_accuracy",
        calibration=[{name: train_x[i : i + 1].numpy()} for i in range(len(train_x))],
        num_heads=model.config.n_heads,
        hidden_size=model.config.d_model,
        min_time_s=3 * min_time,
    )
    t32, size32, a32 = choice.fp32_p50_ms, choice.fp32_size_bytes, choice.fp32_metric
    rows = [
        f"transformer_encoder_256 (3 post-norm layers, d_model 256, vocab 50, 2 classes), trained {steps} AdamW "
        f"steps at batch 16; batch 1, sequence {SEQ}, 1 thread, ONNX Runtime CPU EP. Latency: p50, best of 3 "
        "interleaved rounds. Accuracy on 512 held-out sequences; static calibration on the first 64 training samples.",
        "",
        "| recipe | p50 ms | speed-up vs fp32 | file MB | size vs fp32 | test accuracy | change (points) | fused ops | kept |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| fp32 | {t32:.3f} | 1.00x | {size32 / 1e6:.2f} | 1.00x | {a32:.4f} | | | |",
    ]
    for c in choice.candidates:
        if c.error:
            rows.append(f"| {c.recipe} | failed: {c.error} | | | | | | | |")
            continue
        fused = ", ".join(f"{k} {v}" for k, v in (c.fused or {}).items())
        rows.append(
            f"| {c.recipe} | {c.p50_ms:.3f} | {t32 / c.p50_ms:.2f}x | {c.size_bytes / 1e6:.2f} | "
            f"{c.size_bytes / size32:.2f}x | {c.metric:.4f} | {100 * (c.metric - a32):+.2f} | {fused} | "
            f"{'**kept**' if c.recipe == choice.chosen else ''} |"
        )
    best = choice.chosen_candidate()
    speed, size, delta = t32 / best.p50_ms, best.size_bytes / size32, best.metric - a32
    return rows + [
        "",
        f"Kept: **{choice.chosen}** ({choice.why}).",
        "",
        "| figure | fp32 ONNX | int8 ONNX (kept) | ratio | target | met |",
        "|---|---|---|---|---|---|",
        f"| p50 latency ms | {t32:.3f} | {best.p50_ms:.3f} | {speed:.2f}x faster | >= 1.5x | {'yes' if speed >= 1.5 else 'NO'} |",
        f"| model file MB | {size32 / 1e6:.2f} | {best.size_bytes / 1e6:.2f} | {size:.2f}x | <= 0.3x | {'yes' if size <= 0.3 else 'NO'} |",
        f"| test accuracy (512 held-out) | {a32:.4f} | {best.metric:.4f} | {100 * delta:+.2f} points | within 1 point | "
        f"{'yes' if abs(delta) <= 0.01 else 'NO'} |",
    ]


def mfu_claim(min_time: float) -> list[str]:
    rows = [
        "| path | threads | batch | seq | p50 ms | GFLOP/call | GFLOP/s | fp32 GEMM peak GFLOP/s | MFU | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    model = create("transformer_encoder_512", dropout=0.0)
    x = torch.randint(0, 1000, (8, 256))
    n = all_cores()
    r = benchmark(model, (x,), batch_sizes=(8,), modes=("train", "infer"), threads=n, min_time_s=min_time, min_calls=3)
    peak = gemm_peak("fp32", n)
    for row in r.rows:
        target = ">= 50%" if row.mode == "train" else "(reported)"
        met = ("yes" if (row.mfu or 0) >= 0.5 else "NO") if row.mode == "train" else ""
        rows.append(
            f"| {row.mode} | {n} | 8 | 256 | {row.p50_ms:.1f} | {(row.flops_per_call or 0) / 1e9:.2f} | "
            f"{(row.achieved_flops or 0) / 1e9:.1f} | {peak / 1e9:.1f} | {(row.mfu or 0):.1%} | {target} | {met} |"
        )
    return rows


def _previous_mfu() -> list[str]:
    """With --skip-mfu: the MFU table of the previous full run, marked as such."""
    old = OUT.read_text() if OUT.is_file() else ""
    table = [line for line in old.split("## 2.", 1)[-1].splitlines() if line.startswith("|")] if "## 2." in old else []
    return ["Not measured in this run (--skip-mfu); the table of the previous full run of this script:", "", *table]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--skip-mfu", action="store_true", help="the int8 claim only")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    m = describe(all_cores())
    text = (
        "\n".join(
            [
                "# Dynamic int8 and transformer MFU",
                "",
                f"Machine: {m['cpu']}, {m['cores']} cores, ISA flags: {' '.join(m['isa_flags'])}; torch {m['torch']}, "
                f"onnxruntime {m['onnxruntime']}. Shared machine: other processes ran beside this one "
                f"(load average {os.getloadavg()[0]:.2f} at the start).",
                "",
                f"Command: `python benchmarks/bench_int8_mfu.py --steps {a.steps} --min-time {a.min_time}"
                f"{' --skip-mfu' if a.skip_mfu else ''}`",
                "",
                "## 1. int8 recipes vs fp32 ONNX Runtime",
                "",
                *int8_claim(a.steps, a.min_time),
                "",
                "## 2. Transformer encoder (transformer_encoder_512: d_model 512, 6 layers), fp32, MFU vs measured GEMM peak",
                "",
                *(_previous_mfu() if a.skip_mfu else mfu_claim(a.min_time)),
            ]
        )
        + "\n"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
