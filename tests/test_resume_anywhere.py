"""Exact resume from a SIGKILL at any moment of a run's life (issue 16).

A run of a registry model (built by archlab from its seed, so a run killed before its first
complete checkpoint can rebuild the same initial weights) is killed at chosen points - inside the
very first checkpoint write, while the resumed run truncates its metrics - and at random times
across its whole life, then resumed until it finishes. Final weights, the final metrics and every
metrics record must equal an uninterrupted run's, bitwise (timing fields aside); no temp files
may be left behind.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from archlab.checkpoint import tensors_from_bytes

TESTS = Path(__file__).resolve().parent
TIMING = {"samples_per_s", "train_time_s", "train_cpu_s"}

CHILD = textwrap.dedent(r"""
    import os, signal, sys, threading
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[6])
    from test_train_support import digits_bundle
    import archlab, archlab.io, archlab.rundir
    from archlab.runs import resume

    run_dir, mode, kind, n, after_s = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    calls = {"n": 0}

    def die_on_nth(fn):
        def wrapped(*a, **k):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return wrapped

    if kind == "write":        # the n-th atomic file write anywhere (checkpoints, config, metrics)
        archlab.io.atomic_write_bytes.__code__  # exists
        import archlab.checkpoint, archlab.train.state
        w = die_on_nth(archlab.io.atomic_write_bytes)
        for mod in (archlab.io, archlab.checkpoint, archlab.train.state, archlab.rundir):
            if hasattr(mod, "atomic_write_bytes"):
                mod.atomic_write_bytes = w
    elif kind == "truncate":   # inside the resumed run's metrics truncation
        archlab.rundir.RunDir.truncate_metrics = die_on_nth(archlab.rundir.RunDir.truncate_metrics)
    elif kind == "timer":      # at a random moment
        threading.Timer(after_s, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
    data = digits_bundle()
    if mode == "fresh":
        archlab.fit("mlp_tabular", data, out_dir=os.path.dirname(run_dir), run_name=os.path.basename(run_dir),
                    model_overrides=dict(hidden_sizes=[32], dropout=0.2), max_steps=36, batch_size=32, lr=3e-3,
                    log_every=5, eval_every=8, checkpoint_every=6, precision="fp32", deterministic=True, seed=3)
    else:
        resume(run_dir, data=data)
""")


def _run(run_dir: Path, mode: str, kind: str = "none", n: int = 0, after_s: float = 0.0) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    args = [sys.executable, "-c", CHILD, str(run_dir), mode, kind, str(n), str(after_s), str(TESTS)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode not in (0, -9):
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode


def _finish(run_dir: Path) -> None:
    """Resume until the run completes (a resume is never killed here)."""
    if not (run_dir / "config.yaml").exists():  # killed before the run directory existed: start again
        assert _run(run_dir, "fresh") == 0
    elif not (run_dir / "final_metrics.json").exists():
        assert _run(run_dir, "resume") == 0


def _state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict, list[dict]]:
    weights = tensors_from_bytes((run_dir / "last" / "model.safetensors").read_bytes())
    final = {k: v for k, v in json.loads((run_dir / "final_metrics.json").read_text()).items() if k not in TIMING}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    records = [{k: v for k, v in r.items() if k not in TIMING} for r in records]
    return weights, final, records


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    t0 = time.perf_counter()
    assert _run(run_dir, "fresh") == 0
    return _state(run_dir), time.perf_counter() - t0


def _assert_same(run_dir: Path, reference) -> None:
    (weights, final, records), _ = reference
    got_w, got_final, got_records = _state(run_dir)
    assert got_w.keys() == weights.keys()
    for k in weights:
        assert torch.equal(got_w[k], weights[k]), k
    assert got_final == final
    assert got_records == records
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".") or p.name.endswith((".tmp", ".old"))]
    assert leftovers == []


@pytest.mark.parametrize("kind,n", [("write", 1), ("write", 2), ("write", 4)])
def test_kill_before_the_first_complete_checkpoint(tmp_path, reference, kind, n):
    """The first writes are config.yaml, data_info.json and the step-0 checkpoint: a kill there
    leaves no complete checkpoint, and the resumed run must rebuild the same initial weights."""
    run_dir = tmp_path / "run"
    assert _run(run_dir, "fresh", kind, n) == -9
    _finish(run_dir)
    _assert_same(run_dir, reference)


def test_kill_while_the_resume_truncates_metrics(tmp_path, reference):
    run_dir = tmp_path / "run"
    assert _run(run_dir, "fresh", "write", 12) == -9  # somewhere mid-run
    assert _run(run_dir, "resume", "truncate", 1) == -9
    _finish(run_dir)
    _assert_same(run_dir, reference)


def test_kill_at_random_moments(tmp_path, reference):
    """Three kills at random times across the run's life (start-up included), each resumed."""
    _, duration = reference
    rng = random.Random(int(os.environ.get("ARCHLAB_KILL_SEED", "0")) or None)
    for i in range(3):
        run_dir = tmp_path / f"run{i}"
        after = rng.uniform(0.0, duration)
        code = _run(run_dir, "fresh", "timer", 0, after)
        _finish(run_dir)
        _assert_same(run_dir, reference)
        print(f"kill {i}: after {after:.2f} s of {duration:.2f} s -> {'killed' if code == -9 else 'finished first'}")
