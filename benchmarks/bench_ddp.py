"""Data-parallel scaling on this machine: samples/s of ``archlab train`` on 1 process vs ``--nproc N``.

The same run (the MNIST-1D CNN, ``cnn1d_mnist1d``, a global batch of 512, fp32 on the CPU, no
evaluation inside the timed steps) is trained by one process using every core, then by N
processes through torchrun (``--nproc N``; each process gets cores // N threads), alternating
(1, N, 1, N, ...) so load on the machine hits both alike. Throughput is the median of the
engine's logged ``samples_per_s`` (all ranks together) after the first logging window, so
start-up, data loading and the process group's set-up are not counted. Scaling = samples/s with
N processes / samples/s with 1.

    python benchmarks/bench_ddp.py                  # writes benchmarks/results/ddp.{json,md}
    python benchmarks/bench_ddp.py --steps 40 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from archlab.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def train_once(nproc: int, threads: int, args: argparse.Namespace, out: Path) -> dict:
    """One ``archlab train`` run on ``nproc`` processes of ``threads`` threads; its throughput from
    metrics.jsonl and its wall time."""
    name = f"p{nproc}t{threads}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "archlab", "train", "--model", args.model, "--data", args.data, "-q"]
    sets = {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "eval_every": args.steps,  # one evaluation, at the end (outside the timed windows)
        "log_every": args.log_every,
        "device": "cpu",
        "precision": "fp32",
        "seed": 0,
    }
    for k, v in sets.items():
        cmd += ["--set", f"train.{k}={v}"]
    cmd += ["--out-dir", str(out), "--name", name]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if r.get("kind") == "train"][1:]  # the first window warms up
    if not rates:
        raise SystemExit(f"no training records after the first window: raise --steps above {args.log_every}")
    return {"samples_per_s": statistics.median(rates), "wall_s": round(wall, 2), "windows": len(rates)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn1d_mnist1d")
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    share = max(1, cores // args.nproc)
    # (processes, threads each): one process on every core (the baseline), one process on one
    # process's share of the cores (scaling without the threading effect), N processes
    setups = [(1, cores), (1, share), (args.nproc, share)]
    runs: dict[tuple[int, int], list[dict]] = {s: [] for s in dict.fromkeys(setups)}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for n, t in runs:
                runs[n, t].append(train_once(n, t, args, Path(tmp)))
                print(f"nproc={n} threads={t}: {runs[n, t][-1]}", file=sys.stderr)
    rate = {k: statistics.median(r["samples_per_s"] for r in rs) for k, rs in runs.items()}
    scaling = rate[args.nproc, share] / rate[1, cores]
    scaling_share = rate[args.nproc, share] / rate[1, share]
    result = {
        "model": args.model,
        "data": args.data,
        "global_batch": args.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "cores": cores,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "samples_per_s": {f"{n}x{t}": round(v, 1) for (n, t), v in rate.items()},
        "runs": {f"{n}x{t}": rs for (n, t), rs in runs.items()},
        "scaling": round(scaling, 3),
        "scaling_same_threads_per_process": round(scaling_share, 3),
        "command": "python benchmarks/bench_ddp.py " + " ".join(sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "ddp.json", result)
    lines = [
        "# Data-parallel scaling (`archlab train --nproc N`)",
        "",
        f"{args.model} on {args.data}, global batch {args.batch_size}, {args.steps} steps, fp32 on the CPU "
        f"({cores} cores, torch {torch.__version__}); median of {args.repeats} alternating runs "
        "of the median logged samples/s (first logging window left out).",
        "",
        "| processes | threads each | samples/s | wall s (whole command) |",
        "|---:|---:|---:|---:|",
    ]
    for (n, t), rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        lines.append(f"| {n} | {t} | {rate[n, t]:,.0f} | {wall:.1f} |")
    lines += [
        "",
        f"Scaling with {args.nproc} processes: **{scaling:.2f}x** the throughput of one process on all "
        f"{cores} cores ({scaling_share:.2f}x that of one process with {share} thread(s)).",
        "",
        f"Command: `{result['command'].strip()}`",
        "",
    ]
    atomic_write_text(args.out / "ddp.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
