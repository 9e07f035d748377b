"""Peak memory of the streaming path is bounded by the batch, not the dataset.

A child process caps its own address space with ``resource.setrlimit(RLIMIT_AS)`` well below
what the in-memory windows of a ~200 MB token file need, then trains a tiny GPT for a few steps
on the file streamed from disk, and reports its peak RSS. The same cap makes the in-memory path
fail, which shows the cap binds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

CAP_BYTES = 1536 * 2**20  # address space: python + torch (~0.6 GB mapped) + a 200 MB file map + training
TOKENS = 100_000_000  # uint16: a 200 MB file; its in-memory windows (block 64) need about 2.4 GB

CHILD = r"""
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), int(sys.argv[3])))
import torch
torch.set_num_threads(1)
import archlab, archlab.data as D

mode, path, out = sys.argv[1], sys.argv[2], sys.argv[4]
try:
    bundle = D.load(path, stream=mode == "stream", block_size=64, vocab_size=65, val_fraction=0.001)
    model = archlab.create("gpt_nano", vocab_size=65, d_model=32, n_heads=2, n_layers=1, max_seq_len=64)
    result = archlab.fit(model, bundle, out_dir=out, max_steps=5, batch_size=12, eval_batch_size=64, eval_samples=24, seed=0)
    report = {"ok": True, "steps": result.metrics["step"], "val_loss": result.metrics["val_loss"]}
except (MemoryError, archlab.errors.DataError) as exc:
    report = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
except RuntimeError as exc:  # torch's allocator: "can't allocate memory"
    if "alloc" not in str(exc):
        raise
    report = {"ok": False, "error": "RuntimeError (allocation)"}
report["streamed"] = mode == "stream"
report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(report))
"""


def _run(mode: str, path, tmp_path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARCHLAB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(CAP_BYTES), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS caps address space on Linux only")
def test_streamed_training_fits_under_a_cap_the_in_memory_path_exceeds(tmp_path):
    path = tmp_path / "tokens.npy"
    np.save(path, np.random.default_rng(0).integers(0, 65, size=TOKENS, dtype=np.uint16))
    assert path.stat().st_size > 190 * 2**20
    streamed = _run("stream", path, tmp_path)
    print(f"streamed: peak RSS {streamed['peak_rss_mb']:.0f} MB under a {CAP_BYTES / 2**20:.0f} MB address-space cap")
    assert streamed["ok"], streamed
    assert streamed["steps"] == 5 and np.isfinite(streamed["val_loss"])
    in_memory = _run("memory", path, tmp_path)
    assert not in_memory["ok"], f"the in-memory path fitted under the cap, so the cap does not bind: {in_memory}"
