"""Cost of checkpoint integrity (SHA-256 of every file) against the checkpoint write itself;
writes benchmarks/results/integrity.md.

    .venv/bin/python benchmarks/bench_integrity.py

For models of a few sizes, a full training checkpoint (``archlab.train.state.write_checkpoint``:
model, AdamW state, RNG, ``COMPLETE``) is written ``REPEATS`` times; the time spent hashing is
measured on the same bytes (serialised weights and optimizer state) with ``hashlib.sha256``, and
the verify-on-read cost (``archlab.rundir.verify_checkpoint``, re-reading every file) beside it.
The claim: hashing is a small fraction of the write time (it adds no fsync and no extra write).
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import archlab
from archlab.checkpoint import tensors_to_bytes
from archlab.io import sha256_bytes
from archlab.rundir import verify_checkpoint
from archlab.train.state import TrainState, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "integrity.md"
REPEATS = 5
MODELS = [
    ("mlp_tabular", {}),
    ("resnet18_cifar", {}),
    ("gpt_nano", {}),
    ("bert_base", {}),
]


def _median(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, overrides: dict) -> dict:
    torch.manual_seed(0)
    model = archlab.create(name, **overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # materialise the optimizer's moment tensors
    state = TrainState(step=1)
    with tempfile.TemporaryDirectory() as tmp:
        last = Path(tmp) / "last"
        write = _median(
            lambda: write_checkpoint(
                last, model, state=state, optimizers=[opt], schedulers=[None], data_gen=torch.Generator()
            )
        )
        size = sum(f.stat().st_size for f in last.iterdir())
        payload = [
            tensors_to_bytes(model.state_dict()),
            tensors_to_bytes(
                {
                    f"{i}.{k}": v
                    for i, s in opt.state_dict()["state"].items()
                    for k, v in s.items()
                    if isinstance(v, torch.Tensor)
                }
            ),
        ]
        hashing = _median(lambda: [sha256_bytes(b) for b in payload])
        verify = _median(lambda: verify_checkpoint(last))
    return {
        "name": name,
        "params": model.num_params(),
        "mb": size / 2**20,
        "write": write,
        "hash": hashing,
        "verify": verify,
    }


def main() -> None:
    rows = [measure(name, kw) for name, kw in MODELS]
    lines = [
        "# Checkpoint integrity: SHA-256 cost vs the checkpoint write",
        "",
        f"`.venv/bin/python benchmarks/bench_integrity.py` - {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS}.",
        "",
        "Write = `write_checkpoint` (model + AdamW state + RNG, atomic files with fsync, directory swap),",
        "hashing included. Hash = SHA-256 of the serialised weights and optimizer state (what the write",
        "adds). Verify = `verify_checkpoint` re-reading and hashing every file (what a resume adds).",
        "",
        "| model | parameters | checkpoint MB | write s | hash s | hash / write | verify s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['mb']:.1f} | {r['write']:.3f} | {r['hash']:.3f} | "
            f"{100 * r['hash'] / r['write']:.1f}% | {r['verify']:.3f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
