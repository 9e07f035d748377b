"""Char-LM on the full Shakespeare corpus: archlab vs a plain PyTorch loop of nanoGPT's recipe.

Rows (each in its own subprocess, so peak RSS is the row's own):
  (a) ``plain``: a plain PyTorch loop of nanoGPT's CPU baby-GPT recipe (4 layers, 4 heads,
      128 wide, block 64, batch 12, 2,000 iterations, lr 1e-3 with warmup 100 and cosine to
      1e-4, AdamW betas (0.9, 0.99), weight decay 0.1, clip 1, no dropout): the model and loop of
      ``benchmarks/lm_recipe_search.py``; it evaluates 200 x 12 random val windows every 500
      steps, as nanoGPT evaluates during training (counted in its wall time);
  (b) ``archlab_nanogpt``: ``archlab train examples/shakespeare_gpt_full.yaml`` with nanoGPT's
      recipe set on the command line (lr 1e-3, min_lr_ratio 0.1);
  (c) ``archlab_tuned``: ``archlab train examples/shakespeare_gpt_full.yaml`` as it is.
Wall time is the whole command, start-up included (like ``time python train.py``; preparing the data
is done before, untimed, like nanoGPT's ``prepare.py``); val loss
(nats/char) is over every non-overlapping block-64 window of the last 10 % of the corpus, for
all rows. The issue measured nanoGPT itself at 153 s / val 1.904 on a 2-core machine.

    python benchmarks/bench_char_lm.py            # the real thing (minutes; run on a quiet machine)
    python benchmarks/bench_char_lm.py --quick    # smoke run: 40 steps per row

Writes ``benchmarks/results/char_lm.{json,md}`` (``--quick`` writes ``char_lm_quick.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "shakespeare_gpt_full.yaml"
NANOGPT_SETS = [
    "train.lr=0.001",
    "train.min_lr_ratio=0.1",
    "train.fused=false",
]  # the example's other settings are nanoGPT's
ROWS = {
    "plain": "plain PyTorch loop, nanoGPT's recipe (reference)",
    "archlab_nanogpt": "archlab train, nanoGPT's recipe",
    "archlab_tuned": "archlab train examples/shakespeare_gpt_full.yaml",
    "archlab_tuned_2500": "the same, 2,500 steps",
}
LONGER = ["train.max_steps=2500"]  # the tuned recipe, 25% longer: where it reaches on this machine


def run_plain(steps: int, corpus: Path, out: Path) -> None:
    """Row (a), in this (child) process, on the corpus the parent exported (nanoGPT's prepare.py)."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from lm_recipe_search import GPT, Recipe, _step, eval_full, eval_sample, load_corpus, make_optimizer

    train, val, vocab = load_corpus(str(corpus), None)
    r = Recipe("ref")
    torch.manual_seed(1337)
    model = GPT(vocab, r)
    opt = make_optimizer(model, r)
    g = torch.Generator().manual_seed(1337)
    t0 = time.perf_counter()
    for s in range(steps):
        _step(model, opt, r, train, g, s, steps)
        if (s + 1) % 500 == 0 and s + 1 < steps:
            eval_sample(model, val, r.block)  # nanoGPT evaluates while it trains
    train_s = time.perf_counter() - t0
    out.write_text(json.dumps({"val_loss": eval_full(model, val, r.block), "train_s": train_s}))


def run_archlab(row: str, steps: int | None, out: Path) -> None:
    """Rows (b) and (c): the archlab CLI on the example, in a fresh directory."""
    with tempfile.TemporaryDirectory() as d:
        sets = {"archlab_nanogpt": NANOGPT_SETS, "archlab_tuned_2500": LONGER}.get(row, [])
        sets = sets + ([f"train.max_steps={steps}"] if steps else [])
        argv = ["archlab", "train", str(EXAMPLE), "--out-dir", d, "--name", row, "-q"]
        for s in sets:
            argv += ["--set", s]
        # `python -m archlab train ...` in this process, so the row's peak RSS is this process's.
        sys.argv = argv
        try:
            runpy.run_module("archlab", run_name="__main__", alter_sys=True)
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        m = json.loads((Path(d) / row / "final_metrics.json").read_text())
    out.write_text(json.dumps({"val_loss": m["val_loss"], "train_s": m["train_time_s"]}))


def prepare(corpus: Path) -> None:
    """Untimed, like nanoGPT's prepare.py: the text file for the plain row, archlab's token cache."""
    from archlab.data import load
    from archlab.data.text import shakespeare_text

    corpus.write_text(shakespeare_text(), encoding="utf-8")
    load("shakespeare", stream=True, block_size=64, val_fraction=0.1, test_fraction=0.0)


def measure(row: str, steps: int | None, corpus: Path) -> dict:
    """Run one row in a child process; wall time and peak RSS of that child."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "row.json"
        cmd = [sys.executable, __file__, "--row", row, "--row-out", str(out), "--corpus", str(corpus)]
        cmd += ["--steps", str(steps)] if steps else []
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if status != 0:
            raise SystemExit(f"row {row} failed (status {status})")
        res = json.loads(out.read_text())
    # ru_maxrss of the waited child (the whole row runs in it): KiB on Linux.
    rss_mb = usage.ru_maxrss / 1024
    return {
        "row": row,
        "what": ROWS[row],
        "wall_s": round(wall, 1),
        "train_s": round(res["train_s"], 1),
        "val_loss": round(res["val_loss"], 4),
        "peak_rss_mb": round(rss_mb),
    }


def machine() -> dict:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "fma") if f in have)
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_flags": flags,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_before": [round(x, 2) for x in load],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 40 steps per row")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    ap.add_argument("--row", choices=list(ROWS), help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--row-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.row:
        if a.row == "plain":
            run_plain(a.steps or 2000, a.corpus, a.row_out)
        else:
            run_archlab(a.row, a.steps, a.row_out)
        return

    steps = 40 if a.quick else None
    meta = machine()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "shakespeare.txt"
        prepare(corpus)
        for row in a.rows.split(","):
            rows.append(measure(row, steps, corpus))
            print(json.dumps(rows[-1]), flush=True)
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    out = {"meta": meta, "quick": a.quick, "steps": steps or "recipe's own (2000)", "rows": rows}
    stem = ROOT / "benchmarks" / "results" / ("char_lm_quick" if a.quick else "char_lm")
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Char-LM: full Shakespeare, nanoGPT's baby GPT (4x128, block 64)" + (" (QUICK smoke run)" if a.quick else ""),
        "",
        f"Machine: {meta['cpu']}, {meta['cpus']} CPUs (flags: {meta['cpu_flags'] or 'n/a'}), torch {meta['torch']} "
        f"({meta['torch_threads']} threads); load average before {meta['load_before']}, after {meta['load_after']} "
        "(a loaded machine makes every wall time pessimistic). nanoGPT itself, measured in issue 14 on a 2-core "
        "machine: 153 s, val 1.904.",
        "",
        "Preparation (the text file for the plain loop, archlab's token cache) is done before timing, like "
        "nanoGPT's prepare.py. Wall: the whole command, start-up included; train: the training loop's own clock (evaluations during "
        "training included); val: nats/char over every non-overlapping block-64 window of the last 10 % of the "
        "corpus; RSS: the row's own process peak.",
        "",
        "| row | wall s | train s | val loss | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['what']} | {r['wall_s']} | {r['train_s']} | {r['val_loss']:.4f} | {r['peak_rss_mb']:,} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
