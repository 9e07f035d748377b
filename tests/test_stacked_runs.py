"""Seeds and CV groups trained as one stack (archlab.runs.stacked): same layout and metrics as one
at a time, the choice recorded, a fallback with its reason, and a killed group resumed as a stack."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

from archlab.data import load
from archlab.rundir import RunDir, final_checkpoint
from archlab.runs.cv import cross_validate
from archlab.runs.seeds import repeat_seeds
from archlab.train.progress import Reporter
from archlab.train.state import load_model_weights

TOL = 1e-3
SMALL = {"max_steps": 12, "batch_size": 16, "eval_every": 4, "device": "cpu"}
NO_DROPOUT = {"hidden_sizes": [16], "dropout": 0.0}  # dropout masks are the stack's own (see train/stacked)


def _files(run_dir) -> set[str]:
    return {p.name for p in run_dir.iterdir() if not p.name.endswith((".prev", ".old"))}


def test_seeds_stacked_equal_one_at_a_time(tmp_path):
    data = load("iris")
    runs = {
        how: repeat_seeds(
            "mlp_tabular", data, n=3, model_overrides=NO_DROPOUT, out_dir=tmp_path / how, stack=how, **SMALL
        )
        for how in ("auto", "off")
    }
    on, off = runs["auto"], runs["off"]
    assert json.loads((on.run_dir / "stack.json").read_text())["stacked"] is True
    assert json.loads((off.run_dir / "stack.json").read_text()) == {"stacked": False, "reason": "train.stack=off"}
    for a, b in zip(on.member_dirs, off.member_dirs):
        assert a.name == b.name
        assert _files(a) == _files(b)
        assert RunDir(a).read_config()["train"]["stack"] == "auto"
    for ma, mb in zip(on.member_metrics, off.member_metrics):
        for k in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
            assert ma[k] == pytest.approx(mb[k], abs=TOL), k
    assert on.summary["test_accuracy"]["mean"] == pytest.approx(off.summary["test_accuracy"]["mean"], abs=TOL)


def test_cv_folds_stacked_equal_one_at_a_time(tmp_path):
    runs = {
        how: cross_validate(
            "mlp_tabular", "iris", k=3, model_overrides=NO_DROPOUT, out_dir=tmp_path / how, stack=how, **SMALL
        )
        for how in ("auto", "off")
    }
    assert json.loads((runs["auto"].run_dir / "stack.json").read_text())["stacked"] is True
    for ma, mb in zip(runs["auto"].member_metrics, runs["off"].member_metrics):
        for k in ("val_loss", "val_accuracy", "test_accuracy"):
            assert ma[k] == pytest.approx(mb[k], abs=TOL), k


class _DataDependent(nn.Module):
    """A model vmap cannot run: its forward branches on a tensor's value."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return self.fc(-x)


def test_model_vmap_cannot_run_falls_back_with_one_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="archlab.runs"):
        r = repeat_seeds(_DataDependent(), "iris", n=2, out_dir=tmp_path, **SMALL)
    lines = [rec.message for rec in caplog.records if "one at a time" in rec.message]
    assert len(lines) == 1 and "vmap cannot run this model" in lines[0]
    assert json.loads((r.run_dir / "stack.json").read_text())["stacked"] is False
    assert all((d / "final_metrics.json").is_file() for d in r.member_dirs)


class _Kill(Reporter):
    def record(self, rec):
        if rec.get("kind") == "train" and rec["step"] >= 9:
            raise KeyboardInterrupt


def test_killed_seed_group_resumes_as_a_stack(tmp_path):
    """A group killed mid-stack and called again resumes from the stack checkpoint: every
    member's final weights equal an uninterrupted group's, bitwise (dropout on)."""
    kw = {"n": 3, "model_overrides": {"hidden_sizes": [16], "dropout": 0.2}, "checkpoint_every": 4, **SMALL}
    ref = repeat_seeds("mlp_tabular", "iris", out_dir=tmp_path / "ref", **kw)
    with pytest.raises(KeyboardInterrupt):
        repeat_seeds("mlp_tabular", "iris", out_dir=tmp_path / "run", reporter=_Kill(), **kw)
    got = repeat_seeds("mlp_tabular", "iris", out_dir=tmp_path / "run", **kw)
    assert got.resumed == [0, 1, 2]
    for a, b in zip(got.member_dirs, ref.member_dirs):
        wa, wb = _weights(a), _weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wb)


def _weights(run_dir) -> dict[str, torch.Tensor]:
    from archlab.registry import create_from_config

    saved = RunDir(run_dir).read_config()
    net = create_from_config({"model": saved["model"]["name"], "config": saved["model"]["config"]})
    load_model_weights(final_checkpoint(run_dir, saved), net)
    return net.state_dict()
