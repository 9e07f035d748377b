"""Exact resume on the streaming path: a run reading its batches from disk, SIGKILLed mid-epoch
and resumed, ends with the same weights, bitwise, as a run that was never interrupted.

Two samplers: a token stream (random windows drawn from the run's data generator, a GPT with
dropout so the torch RNG matters too) and a memory-mapped ``.npy`` visited in a seeded order per
epoch through a DataLoader worker (the order is rebuilt from (seed, epoch, position))."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from archlab.checkpoint import tensors_from_bytes
from test_train_support import run_child

CHILD = textwrap.dedent(r"""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import archlab
    from archlab.runs import resume

    run_dir, mode, kind, data_path, kill_at = sys.argv[1:6]
    kill_at = int(kill_at)
    calls = {"n": 0}

    def maybe_die(module, args):
        calls["n"] += 1
        if calls["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "resume":
        resume(run_dir)
        sys.exit(0)
    common = dict(out_dir=os.path.dirname(run_dir), run_name=os.path.basename(run_dir), log_every=4,
                  checkpoint_every=5, eval_every=10, precision="fp32", seed=1)
    if kind == "tokens":
        data = archlab.data.load(data_path, stream=True, block_size=16)
        torch.manual_seed(1)
        model = archlab.create("gpt_nano", vocab_size=data.info["vocab_size"], d_model=16, n_heads=2, n_layers=1,
                               max_seq_len=16, dropout=0.1)
        spec = {"name": data_path, "options": {"stream": True, "block_size": 16}}
        train = dict(max_steps=23, batch_size=8, lr=3e-3)
    else:
        data = archlab.data.load(data_path, labels=data_path.replace("x.npy", "y.npy"), stream=True)
        torch.manual_seed(1)
        model = archlab.create("mlp_tabular", in_features=8, out_features=3, hidden_sizes=[16], dropout=0.2)
        spec = {"name": data_path, "options": {"labels": data_path.replace("x.npy", "y.npy"), "stream": True}}
        train = dict(max_steps=23, batch_size=16, lr=3e-3, num_workers=1)
    if kill_at:
        model.register_forward_pre_hook(maybe_die)
    archlab.fit(model, data, data_spec=spec, **common, **train)
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("stream_data")
    rng = np.random.default_rng(0)
    np.save(root / "tokens.npy", (np.cumsum(rng.integers(0, 3, 6000)) % 11).astype(np.uint8))
    x = rng.normal(size=(150, 8)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64))
    return {"tokens": str(root / "tokens.npy"), "npy": str(root / "x.npy")}


def _run(run_dir: Path, mode: str, kind: str, data: str, kill_at: int = 0) -> int:
    return run_child(CHILD, str(run_dir), mode, kind, data, str(kill_at))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return tensors_from_bytes((run_dir / "last" / "model.safetensors").read_bytes())


@pytest.mark.parametrize("kind,kill_at", [("tokens", 13), ("npy", 8)])
def test_streamed_run_killed_mid_epoch_resumes_bitwise(tmp_path, files, kind, kill_at):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert _run(ref, "fresh", kind, files[kind]) == 0
    assert _run(run, "fresh", kind, files[kind], kill_at) == -9, "the child was expected to be killed"
    assert not (run / "final_metrics.json").exists()
    assert _run(run, "resume", kind, files[kind]) == 0
    want, got = _weights(ref), _weights(run)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), f"{k} differs after a kill at forward #{kill_at} and resume"


def test_predict_on_a_streamed_split_equals_the_in_memory_split(tmp_path, files):
    """``predict(run, "val")`` reads a streamed split a batch at a time and gives what the same
    windows held in memory give."""
    import archlab
    from archlab.runs.use import load_run, predict
    from archlab.train.evaluate import predict_split

    opts = {"stream": True, "block_size": 16}
    data = archlab.data.load(files["tokens"], **opts)
    model = archlab.create(
        "gpt_nano", vocab_size=data.info["vocab_size"], d_model=16, n_heads=2, n_layers=1, max_seq_len=16
    )
    res = archlab.fit(
        model, data, data_spec={"name": files["tokens"], "options": opts}, out_dir=tmp_path, max_steps=3, batch_size=8
    )
    got = predict(res.run_dir, "val")
    held = archlab.data.load(files["tokens"], stream=False, block_size=16)
    _, loaded, task, _ = load_run(res.run_dir)
    want = predict_split(loaded, task, held.val.inputs, batch_size=512, device=torch.device("cpu"))
    assert len(held.val) == len(data.val) and got.shape[0] == len(data.val)
    assert torch.equal(got, want)
