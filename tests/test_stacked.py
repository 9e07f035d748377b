"""The stacked engine (archlab.train.stacked): members equal single runs, stop on their own, resume bitwise.

Equality. With the same seed, a member's initial weights and batch order are the single run's
exactly; vmap batches the arithmetic (other reduction order) and the vectorised Adam/AdamW
writes torch's update with per-member tensors, so final weights agree to ATOL and metrics to
METRIC_TOL, not bitwise. Dropout is the exception: under vmap a member draws its masks from the
stack's generator, not from its own torch RNG stream, so the equality tests run the models with
dropout layers present at p=0 (the same modules, eval-equivalent), and a separate test checks
what does hold with dropout on (reproducible, different masks per member, training works).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import archlab
from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError
from archlab.tasks import get_task
from archlab.train import TrainConfig, stacked_ckpt, train_model
from archlab.train.progress import Reporter
from archlab.train.stacked import StackMember, fit_stack, why_not_stack
from archlab.train.state import seed_everything

ATOL = 2e-4  # final weights, member vs single run
METRIC_TOL = 1e-3  # final val/test loss and accuracy


def _bundle(shape: tuple[int, ...], n: int = 96, classes: int = 3, seed: int = 0, dtype=torch.float32) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn((n, *shape), generator=g) + y.reshape((n,) + (1,) * len(shape)).float()
    cut1, cut2 = int(0.6 * n), int(0.8 * n)
    return DataBundle(
        name=f"synthetic{seed}",
        modality="tabular",
        task="classification",
        train=Split((x[:cut1],), y[:cut1]),
        val=Split((x[cut1:cut2],), y[cut1:cut2]),
        test=Split((x[cut2:],), y[cut2:]),
        info={"num_classes": classes},
    )


MODELS = {  # name -> (preset, model kwargs, input shape); dropout p is filled in per test
    "mlp": ("mlp_tabular", {"in_features": 8, "hidden_sizes": [16, 16], "out_features": 3}, (8,)),
    "cnn1d_bn": (
        "cnn1d_mnist1d",
        {"channels": [4, 8], "kernel_sizes": [3], "input_size": [16], "num_classes": 3},
        (1, 16),
    ),
    "cnn2d_bn": (
        "cnn_digits",
        {"channels": [4, 8], "hidden_sizes": [16], "input_size": [8, 8], "num_classes": 3},
        (1, 8, 8),
    ),
    "gru": ("gru_mnist1d", {"hidden_size": 12, "seq_len": 10, "out_features": 3}, (10, 1)),
}


def _model(kind: str, dropout: float) -> torch.nn.Module:
    preset, kw, _ = MODELS[kind]
    extra = {"dropout": dropout}
    if preset in ("cnn1d_mnist1d", "cnn_digits"):
        extra["head_dropout"] = dropout
    return archlab.create(preset, **kw, **extra)


def _members(kind, tmp: Path, cfgs: list[dict], data: list[DataBundle], dropout: float = 0.0) -> list[StackMember]:
    """Members built as the runs layer builds them: seeded with the member's seed, then the model."""
    out = []
    for i, (c, d) in enumerate(zip(cfgs, data)):
        cfg = TrainConfig.build(c)
        seed_everything(cfg.seed)
        out.append(StackMember(_model(kind, dropout), d, get_task("classification"), cfg, tmp / f"member{i}"))
    return out


def _single(kind, tmp: Path, c: dict, data: DataBundle, i: int):
    cfg = TrainConfig.build(c)
    seed_everything(cfg.seed)
    model = _model(kind, 0.0)
    return train_model(model, data, get_task("classification"), cfg, run_dir=tmp / f"single{i}", seed=False)


BASE = {"batch_size": 16, "eval_every": 4, "log_every": 3, "device": "cpu", "precision": "fp32"}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_members_equal_single_runs(kind, tmp_path):
    """Per-member seed, data (a different split each), lr, weight decay, length and schedule:
    every member's final weights and metrics equal its single run's."""
    shape = MODELS[kind][2]
    cfgs = [
        {**BASE, "seed": 0, "lr": 3e-3, "weight_decay": 0.01, "max_steps": 14},
        {**BASE, "seed": 1, "lr": 1e-3, "weight_decay": 0.0, "max_steps": 10, "schedule": "constant"},
        {**BASE, "seed": 2, "lr": 5e-3, "weight_decay": 0.1, "max_steps": 14, "grad_clip": None},
    ]
    data = [_bundle(shape, seed=0), _bundle(shape, n=90, seed=1), _bundle(shape, seed=0)]
    stacked = fit_stack(_members(kind, tmp_path, cfgs, data), stack_dir=tmp_path / "stack")
    for i, (c, d) in enumerate(zip(cfgs, data)):
        single = _single(kind, tmp_path, c, d, i)
        got, want = stacked[i].model.state_dict(), single.model.state_dict()
        assert got.keys() == want.keys()
        for k in want:
            if want[k].is_floating_point():
                torch.testing.assert_close(got[k], want[k], atol=ATOL, rtol=1e-3, msg=f"member {i} {k}")
            else:  # BatchNorm's num_batches_tracked: the member's own count
                assert torch.equal(got[k], want[k]), (i, k)
        assert stacked[i].steps == single.steps == c["max_steps"]
        for k in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
            assert stacked[i].metrics[k] == pytest.approx(single.metrics[k], abs=METRIC_TOL), (i, k)
        assert stacked[i].metrics["stack"] == {"members": 3, "index": i}


def test_early_stopped_member_is_frozen(tmp_path):
    """A member that stops early (patience) keeps the weights it had when it stopped, as its
    single run does, while the other members train on."""
    shape = MODELS["mlp"][2]
    quick = {**BASE, "seed": 4, "lr": 0.3, "max_steps": 40, "patience": 1, "monitor": "val_accuracy", "eval_every": 2}
    cfgs = [quick, {**BASE, "seed": 5, "max_steps": 40}]
    data = [_bundle(shape, seed=3), _bundle(shape, seed=3)]
    stacked = fit_stack(_members("mlp", tmp_path, cfgs, data), stack_dir=tmp_path / "stack")
    single = _single("mlp", tmp_path, quick, data[0], 0)
    assert single.stopped_early and stacked[0].stopped_early
    assert stacked[0].steps == single.steps < 40
    assert stacked[1].steps == 40
    for k, v in single.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(stacked[0].model.state_dict()[k], v, atol=ATOL, rtol=1e-3)


class _Kill(Reporter):
    """Raises at the first train record at or after ``at`` (a process dying mid-run)."""

    def __init__(self, at: int):
        self.at = at

    def record(self, rec):
        if rec.get("kind") == "train" and rec["step"] >= self.at:
            raise KeyboardInterrupt


def _stack_weights(results) -> list[dict[str, torch.Tensor]]:
    return [{k: v.clone() for k, v in r.model.state_dict().items()} for r in results]


@pytest.mark.parametrize("kill", ["mid-run", "mid-checkpoint"])
def test_killed_stack_resumes_bitwise(kill, tmp_path, monkeypatch):
    """BatchNorm and dropout on: a stack stopped mid-run (or inside a checkpoint write) and
    resumed ends with every member's weights bitwise equal to an uninterrupted stack's."""
    shape = MODELS["cnn1d_bn"][2]
    cfgs = [{**BASE, "seed": s, "max_steps": 20, "checkpoint_every": 5} for s in (0, 1, 2)]
    data = [_bundle(shape, seed=0)] * 3
    ref = _stack_weights(fit_stack(_members("cnn1d_bn", tmp_path / "ref", cfgs, data, 0.3), stack_dir=tmp_path / "r"))
    run = tmp_path / "killed"
    if kill == "mid-run":
        with pytest.raises(KeyboardInterrupt):
            fit_stack(_members("cnn1d_bn", run, cfgs, data, 0.3), stack_dir=run / "stack", reporter=_Kill(13))
    else:
        calls = {"n": 0}
        real = stacked_ckpt.atomic_write_bytes

        def dies_on_third(*a, **k):  # the third stack checkpoint (step 10) never completes
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(stacked_ckpt, "atomic_write_bytes", dies_on_third)
        with pytest.raises(KeyboardInterrupt):
            fit_stack(_members("cnn1d_bn", run, cfgs, data, 0.3), stack_dir=run / "stack")
        monkeypatch.setattr(stacked_ckpt, "atomic_write_bytes", real)
    resumed = fit_stack(_members("cnn1d_bn", run, cfgs, data, 0.3), stack_dir=run / "stack", resume=True)
    for i, (got, want) in enumerate(zip(_stack_weights(resumed), ref)):
        for k in want:
            assert torch.equal(got[k], want[k]), (kill, i, k)
    steps = [r["step"] for r in resumed[0].history if r["kind"] == "train"]
    assert steps == sorted(set(steps)), "metrics.jsonl holds each step once after the resume"


def test_dropout_members_draw_their_own_masks(tmp_path):
    """With dropout on, two members of the same seed get the same initial weights and batches but
    their own masks (so their weights part), and a stack is reproducible run to run."""
    shape = MODELS["cnn2d_bn"][2]
    cfgs = [{**BASE, "seed": 7, "max_steps": 6}, {**BASE, "seed": 7, "max_steps": 6}]
    data = [_bundle(shape, seed=0)] * 2
    a = fit_stack(_members("cnn2d_bn", tmp_path / "a", cfgs, data, 0.5), stack_dir=tmp_path / "a" / "s")
    b = fit_stack(_members("cnn2d_bn", tmp_path / "b", cfgs, data, 0.5), stack_dir=tmp_path / "b" / "s")
    wa0, wa1 = a[0].model.state_dict(), a[1].model.state_dict()
    assert any(not torch.equal(wa0[k], wa1[k]) for k in wa0 if wa0[k].is_floating_point())
    for x, y in zip(a, b):
        for k, v in x.model.state_dict().items():
            assert torch.equal(v, y.model.state_dict()[k])


def test_members_that_cannot_stack_are_named(tmp_path):
    shape = MODELS["mlp"][2]
    data = [_bundle(shape)] * 2
    sgd = _members("mlp", tmp_path, [{**BASE, "optimizer": "sgd"}, {**BASE, "optimizer": "sgd"}], data)
    assert "optimizer='sgd'" in why_not_stack(sgd)
    mixed = _members("mlp", tmp_path, [{**BASE, "batch_size": 8}, BASE], data)
    assert "train.batch_size differs" in why_not_stack(mixed)
    other = copy.copy(mixed[1])
    other.model = archlab.create("mlp_tabular", in_features=8, hidden_sizes=[4], out_features=3)
    assert "different parameters" in why_not_stack([mixed[1], other])
    with pytest.raises(ConfigError, match="cannot train as one stack"):
        fit_stack(sgd, stack_dir=tmp_path / "s")


def test_pruned_member_stops_and_the_others_train_on(tmp_path):
    """A search's pruner stops member 1 at its first evaluation: its weights stay those of that
    step (equal to a single run of that length), member 0 trains to the end."""
    shape = MODELS["mlp"][2]
    const = {**BASE, "max_steps": 12, "schedule": "constant"}  # the lr does not depend on the length
    cfgs = [{**const, "seed": 0}, {**const, "seed": 1}]
    data = [_bundle(shape, seed=0)] * 2
    seen = []

    def prune(index, rec):
        seen.append((index, rec["step"]))
        return index == 1

    res = fit_stack(_members("mlp", tmp_path, cfgs, data), stack_dir=tmp_path / "s", prune=prune)
    assert (1, 4) in seen and not any(i == 1 and step > 4 for i, step in seen)
    assert res[0].steps == 12 and res[1].steps == 4 and res[1].stopped_early
    single = _single("mlp", tmp_path, {**cfgs[1], "max_steps": 4}, data[1], 1)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(res[1].model.state_dict()[k], v, atol=ATOL, rtol=1e-3)
