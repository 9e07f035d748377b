"""Exact resume: a run SIGKILLed at any moment (mid-step, mid-evaluation, mid-checkpoint-write,
between the renames of a checkpoint swap) and resumed ends with the same weights, bitwise, as a
run that was never interrupted."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from archlab.checkpoint import tensors_from_bytes
from test_train_support import run_child

TESTS = Path(__file__).resolve().parent

CHILD = textwrap.dedent(r"""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[5])
    from test_train_support import digits_bundle
    import archlab, archlab.io, archlab.checkpoint, archlab.train.state as st
    from archlab.runs import resume

    run_dir, mode, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = {"n": 0}

    def die_on_nth(fn):
        def wrapped(*a, **k):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return wrapped

    if kind == "write":      # the n-th atomic file write (inside checkpoints, configs)
        w = die_on_nth(archlab.io.atomic_write_bytes)
        archlab.checkpoint.atomic_write_bytes = w
        st.atomic_write_bytes = w
    elif kind == "replace":  # the n-th rename (file writes and the checkpoint directory swap)
        os.replace = die_on_nth(os.replace)
    data = digits_bundle()
    if mode == "fresh":
        torch.manual_seed(0)
        model = archlab.create("mlp_tabular", in_features=64, out_features=10, hidden_sizes=[32], dropout=0.2)
        if kind == "forward":  # the n-th forward call (training or evaluation)
            model.register_forward_pre_hook(lambda m, a: die_on_nth(lambda: None)())
        archlab.fit(model, data, out_dir=os.path.dirname(run_dir), run_name=os.path.basename(run_dir),
                    max_steps=36, batch_size=32, lr=3e-3, log_every=5, eval_every=8, checkpoint_every=6,
                    precision="fp32", deterministic=True, seed=3)
    else:
        resume(run_dir, data=data)
""")


def _run(run_dir: Path, mode: str, kind: str = "none", n: int = 0) -> int:
    return run_child(CHILD, str(run_dir), mode, kind, str(n), str(TESTS))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return tensors_from_bytes((run_dir / "last" / "model.safetensors").read_bytes())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    assert _run(run_dir, "fresh") == 0
    return _weights(run_dir)


@pytest.mark.parametrize(
    "kind,n",
    [
        ("forward", 9),  # during the first evaluation (after step 8)
        ("write", 5),  # inside a checkpoint's temp directory, after its weights
        ("replace", 20),  # mid-swap: last/ already renamed to last.old/, the new one not yet in place
        ("replace", 25),  # mid-swap of best/
    ],
)
def test_sigkill_then_resume_is_bitwise_exact(tmp_path, reference, kind, n):
    run_dir = tmp_path / "run"
    assert _run(run_dir, "fresh", kind, n) == -9, "the child was expected to be killed"
    assert not (run_dir / "final_metrics.json").exists()
    assert _run(run_dir, "resume") == 0
    got = _weights(run_dir)
    assert got.keys() == reference.keys()
    for k in reference:
        assert torch.equal(got[k], reference[k]), f"{k} differs after kill at {kind} #{n} and resume"
    # metrics.jsonl was truncated to the checkpoint and redone: one train record per logged step.
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps)) == list(range(5, 36, 5)) + [36]
    assert not any(p.name.endswith((".tmp", ".old")) for p in run_dir.iterdir())


def test_killed_again_while_resuming(tmp_path, reference):
    run_dir = tmp_path / "run"
    assert _run(run_dir, "fresh", "forward", 30) == -9
    assert _run(run_dir, "resume", "write", 3) == -9  # the resumed process dies mid-checkpoint too
    assert _run(run_dir, "resume") == 0
    got = _weights(run_dir)
    assert all(torch.equal(got[k], reference[k]) for k in reference)
