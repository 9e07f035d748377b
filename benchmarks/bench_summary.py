"""Benchmark of archlab.summary on huge decoders; writes benchmarks/results/summary.md.

    .venv/bin/python benchmarks/bench_summary.py

(a) a 65 B-parameter GPT-style decoder (80 layers, d_model 8192, 64 heads, seq 1024, vocab
    32000) on the meta device: wall time and peak RSS of a fresh process (import included),
    targets <= 10 s and <= 1 GB;
(b) the 0.84 B GPT-style decoder (36 layers, d_model 1280, seq 1024, vocab 50257, untied head):
    archlab.summary vs torchinfo.summary side by side (each in its own process), target >= 5x,
    and archlab's total FLOPs vs FlopCounterMode on meta, target within 1%.
Each measurement runs in a subprocess so peak RSS (resource.getrusage) is its own.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "summary.md"
CONFIGS = {
    "65b": dict(n_layer=80, d_model=8192, n_head=64, vocab=32000, seq=1024),
    "0.84b": dict(n_layer=36, d_model=1280, n_head=20, vocab=50257, seq=1024),
}


class Block(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Decoder(nn.Module):
    """A plain GPT-2-style decoder (pre-norm, learned positions, untied head)."""

    def __init__(self, n_layer, d_model, n_head, vocab, seq):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d_model), nn.Embedding(seq, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head) for _ in range(n_layer))
        self.ln, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def _child(kind: str, size: str) -> dict:
    import resource

    t0 = time.perf_counter()
    cfg = CONFIGS[size]
    out: dict = {}
    if kind == "archlab":
        import archlab

        with torch.device("meta"):
            model = Decoder(**cfg)
        s = archlab.summary(model, torch.zeros(1, cfg["seq"], dtype=torch.long), depth=3)
        out = dict(
            params=s.total_params,
            flops=s.flops,
            macs=s.macs,
            rows=len(s.rows),
            activation_gib=s.memory.activation_bytes / 2**30,
            uncounted=s.uncounted,
        )
    elif kind == "flopcounter":
        from torch.utils.flop_counter import FlopCounterMode

        with torch.device("meta"):
            model = Decoder(**cfg)
        with FlopCounterMode(display=False) as fc:
            model(torch.zeros(1, cfg["seq"], dtype=torch.long, device="meta"))
        out = dict(flops=fc.get_total_flops())
    elif kind == "torchinfo":
        import torchinfo

        torch.manual_seed(0)
        model = Decoder(**cfg)
        stats = torchinfo.summary(model, input_data=torch.zeros(1, cfg["seq"], dtype=torch.long), verbose=0, depth=3)
        out = dict(params=stats.total_params, mult_adds=stats.total_mult_adds)
    out["wall_s"] = time.perf_counter() - T_START
    out["work_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run(kind: str, size: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", kind, size], capture_output=True, text=True, check=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0  # includes interpreter start and `import torch`
    return res


def main() -> None:
    big = _run("archlab", "65b")
    mid = _run("archlab", "0.84b")
    fc = _run("flopcounter", "0.84b")
    ti = _run("torchinfo", "0.84b")
    speedup = ti["process_s"] / mid["process_s"]
    flop_err = abs(mid["flops"] - fc["flops"]) / fc["flops"]
    ok = lambda b: "yes" if b else "**NO**"  # noqa: E731
    lines = [
        "# archlab.summary benchmark",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_summary.py`; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Each figure is one fresh process "
        "(interpreter start and `import torch` included); peak RSS from `resource.getrusage`.",
        "",
        "## (a) 65 B decoder (80 layers, d_model 8192, seq 1024, vocab 32000), meta device",
        "",
        "| Metric | Measured | Target | Met |",
        "|---|---|---|---|",
        f"| Parameters | {big['params'] / 1e9:.2f} B | | |",
        f"| Forward FLOPs (batch 1) | {big['flops'] / 1e12:.1f} T | | |",
        f"| Wall time, whole process | {big['process_s']:.2f} s | <= 10 s | {ok(big['process_s'] <= 10)} |",
        f"| Wall time, summary() incl. building the model on meta | {big['work_s']:.2f} s | | |",
        f"| Peak RSS | {big['peak_rss_mb']:.0f} MB | <= 1024 MB | {ok(big['peak_rss_mb'] <= 1024)} |",
        f"| Activations saved for backward (batch 1) | {big['activation_gib']:.1f} GiB | | |",
        "",
        "## (b) 0.84 B GPT-style decoder (36 layers, d_model 1280, seq 1024), archlab vs torchinfo",
        "",
        "| Tool | Process wall time | Peak RSS | Parameters | Reported compute |",
        "|---|---|---|---|---|",
        f"| archlab.summary (meta) | {mid['process_s']:.2f} s | {mid['peak_rss_mb']:.0f} MB | {mid['params'] / 1e9:.3f} B "
        f"| {mid['flops'] / 1e9:.1f} GFLOPs = {mid['macs'] / 1e9:.1f} GMACs |",
        f"| torchinfo.summary (cpu, real weights) | {ti['process_s']:.2f} s | {ti['peak_rss_mb']:.0f} MB | {ti['params'] / 1e9:.3f} B "
        f"| {ti['mult_adds'] / 1e9:.1f} G mult-adds |",
        f"| FlopCounterMode (meta), reference | {fc['process_s']:.2f} s | {fc['peak_rss_mb']:.0f} MB | | {fc['flops'] / 1e9:.1f} GFLOPs |",
        "",
        "| Check | Measured | Target | Met |",
        "|---|---|---|---|",
        f"| Speed-up over torchinfo | {speedup:.1f}x | >= 5x | {ok(speedup >= 5)} |",
        f"| FLOPs vs FlopCounterMode on meta | {100 * flop_err:.3f}% apart | <= 1% | {ok(flop_err <= 0.01)} |",
        "",
        "torchinfo's mult-adds miss the attention matmuls (it sums per-module estimates), hence the gap.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    from archlab.io import atomic_write_text

    atomic_write_text(RESULTS, "\n".join(lines) + "\n")
    print("\n".join(lines))


T_START = time.perf_counter()
if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        torch.set_num_threads(1)
        print(json.dumps(_child(sys.argv[2], sys.argv[3])))
    else:
        main()
