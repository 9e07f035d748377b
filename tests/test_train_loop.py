"""The trainer's mechanics: config validation, precision choice, parameter groups, schedules,
NaN handling, early stopping and gradient accumulation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import archlab
from archlab.errors import ArchlabError, ConfigError
from archlab.rundir import find_checkpoint
from archlab.train.config import TrainConfig
from archlab.train.optim import build_optimizer, lr_factor, param_groups
from archlab.train.precision import static_precision
from test_train_support import digits_bundle

FAST = dict(precision="fp32")


# -- config ---------------------------------------------------------------------------------------


def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(ConfigError, match="unknown key 'lrr'.*did you mean 'lr'"):
        TrainConfig.build(lrr=0.1)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig.build(batch_size=0)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig.build(precision="fp8")
    with pytest.raises(ConfigError, match="nesterov"):
        TrainConfig.build(optimizer="sgd", nesterov=True, momentum=0.0)
    with pytest.raises(ConfigError, match="unknown key"):
        archlab.fit("mlp_tabular", digits_bundle(200), max_step=3)


# -- precision ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device,flags,cuda_bf16,expected",
    [
        ("cpu", {"avx2", "fma"}, False, "fp32"),  # the project machine: no native bf16
        ("cpu", {"avx2", "avx512f", "avx512_bf16"}, False, "bf16"),
        ("cpu", {"avx2", "amx_tile", "amx_bf16"}, False, "bf16"),
        ("cuda", set(), True, "bf16"),
        ("cuda", set(), False, "fp16"),
        ("mps", {"avx512_bf16"}, False, "fp32"),
    ],
)
def test_auto_precision_from_injected_flags(device, flags, cuda_bf16, expected):
    assert static_precision("auto", device, flags=flags, cuda_bf16=cuda_bf16) == expected


def test_explicit_precision_is_kept_and_fp16_needs_cuda():
    assert static_precision("fp32", "cuda", cuda_bf16=True) == "fp32"
    assert static_precision("bf16", "cpu", flags=set()) == "bf16"
    with pytest.raises(ConfigError, match="fp16"):
        static_precision("fp16", "cpu")


# -- optimizer groups and schedules ---------------------------------------------------------------


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Conv1d(8, 8, 3), nn.BatchNorm1d(8), nn.Embedding(5, 8))
    groups = param_groups(model, 0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert sorted(decay["names"]) == ["0.weight", "2.weight", "4.weight"]
    assert sorted(no_decay["names"]) == ["0.bias", "1.bias", "1.weight", "2.bias", "3.bias", "3.weight"]
    opt = build_optimizer(model, TrainConfig.build(weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    sgd = build_optimizer(model, TrainConfig.build(optimizer="sgd", nesterov=True, lr=0.1))
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.9
    # frozen parameters are left out
    model[0].weight.requires_grad_(False)
    assert "0.weight" not in param_groups(model, 0.1)[0]["names"]


def test_schedules_shape():
    cfg = TrainConfig.build(schedule="warmup_cosine", warmup_steps=10)
    f = [lr_factor(s, cfg, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[-1] < 0.01
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))  # warms up
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # then decays
    step = TrainConfig.build(schedule="step", step_size=30, gamma=0.5)
    assert [lr_factor(s, step, 100) for s in (0, 29, 30, 60)] == [1, 1, 0.5, 0.25]
    one = TrainConfig.build(schedule="onecycle")
    g = [lr_factor(s, one, 100) for s in range(100)]
    assert g[0] == pytest.approx(1 / 25) and max(g) == pytest.approx(1.0, abs=0.01) and g[-1] < 1e-3


# -- NaN ------------------------------------------------------------------------------------------


class _NaNAfter(nn.Module):
    """An MLP whose output turns NaN from the n-th training forward on (a fault injection)."""

    def __init__(self, n: int):
        super().__init__()
        self.inner = archlab.create("mlp_tabular", in_features=64, out_features=10, hidden_sizes=[16])
        self.config, self.registry_name = self.inner.config, "mlp_tabular"
        self.n, self.calls = n, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                out = out * float("nan")
        return out

    def state_dict(self, *a, **k):  # saved as the registry model it wraps
        return self.inner.state_dict(*a, **k)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    model = _NaNAfter(23)
    with pytest.raises(ArchlabError, match=r"NaN/Inf at step 23\b.*last good checkpoint"):
        archlab.fit(
            model,
            digits_bundle(),
            max_steps=60,
            batch_size=32,
            log_every=5,
            eval_every=10,
            out_dir=str(tmp_path),
            run_name="nan",
            **FAST,
        )
    run = tmp_path / "nan"
    last = find_checkpoint(run, "last")
    assert json.loads((last / "COMPLETE").read_text())["step"] == 20
    w = archlab.load(last)
    assert all(torch.isfinite(p).all() for p in w.parameters())
    assert not (run / "final_metrics.json").exists()


# -- early stopping, accumulation -----------------------------------------------------------------


@pytest.mark.parametrize(("monitor", "pick"), [("auto", max), ("val_loss", min)])
def test_early_stopping_stops_and_restores_best(tmp_path, monitor, pick):
    # lr far too high: the model gets worse after the first evaluations. By default the monitor is
    # the task's selection metric (classification: val_accuracy, higher is better).
    r = archlab.fit(
        "mlp_tabular",
        digits_bundle(),
        max_steps=400,
        lr=0.3,
        schedule="constant",
        batch_size=32,
        eval_every=5,
        patience=3,
        monitor=monitor,
        out_dir=str(tmp_path),
        **FAST,
    )
    key = "val_accuracy" if monitor == "auto" else monitor
    assert r.metrics["monitor"] == key
    evals = [h for h in r.history if h["kind"] == "eval"]
    assert r.stopped_early and r.steps < 400
    best = pick(e[key] for e in evals)
    assert r.best_value == best and r.best_step == next(e["step"] for e in evals if e[key] == best)
    # three evaluations without improvement after the best one, then stop
    assert evals[-1]["step"] == r.best_step + 3 * 5
    assert r.metrics[key] == pytest.approx(best, rel=1e-6)  # final metrics use the best weights


def test_monitor_max_metric(tmp_path):
    r = archlab.fit(
        "mlp_tabular",
        digits_bundle(),
        max_steps=20,
        eval_every=10,
        monitor="val_accuracy",
        out_dir=str(tmp_path),
        **FAST,
    )
    evals = [h for h in r.history if h["kind"] == "eval"]
    assert r.best_value == max(e["val_accuracy"] for e in evals)
    with pytest.raises(ConfigError, match="monitor='val_acc'"):
        archlab.fit(
            "mlp_tabular", digits_bundle(), max_steps=2, eval_every=1, monitor="val_acc", out_dir=str(tmp_path), **FAST
        )


def test_grad_accumulation_matches_larger_batch(tmp_path):
    def run(bs, accum, name):
        torch.manual_seed(0)
        model = archlab.create("mlp_tabular", in_features=64, out_features=10, hidden_sizes=[32], dropout=0.0)
        r = archlab.fit(
            model,
            digits_bundle(),
            max_steps=10,
            batch_size=bs,
            grad_accum=accum,
            shuffle=False,
            optimizer="sgd",
            lr=0.1,
            schedule="constant",
            out_dir=str(tmp_path),
            run_name=name,
            restore_best=False,
            **FAST,
        )
        return r.model.state_dict()

    a, b = run(16, 1, "big"), run(8, 2, "accum")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    c = run(8, 1, "small")  # and it is not trivially equal to plain small batches
    assert not all(torch.allclose(a[k], c[k], atol=1e-5) for k in a)


def test_run_name_clash_and_resume_config_is_fixed(tmp_path):
    archlab.fit("mlp_tabular", digits_bundle(300), max_steps=2, out_dir=str(tmp_path), run_name="r", **FAST)
    with pytest.raises(ConfigError, match="already holds a run"):
        archlab.fit("mlp_tabular", digits_bundle(300), max_steps=2, out_dir=str(tmp_path), run_name="r", **FAST)
    from archlab.runs import resume

    with pytest.raises(ConfigError, match="cannot change"):
        resume(tmp_path / "r", data=digits_bundle(300), lr=0.5)


def test_task_with_two_optimizers_fits_the_same_loop(tmp_path):
    """A GAN-style task owns two optimizers and steps them itself; the loop, checkpoints and
    resume need no change (issue 6)."""
    from archlab.tasks.classification import ClassificationTask
    from archlab.train.optim import build_optimizer, build_scheduler

    class TwoOpt(ClassificationTask):
        def configure_optimizers(self, model, cfg, total_steps):
            body = build_optimizer(list(model.body.named_parameters()), cfg)
            head = build_optimizer(list(model.head.named_parameters()), cfg.replace(optimizer="sgd", lr=0.05))
            return [body, head], [build_scheduler(body, cfg, total_steps), None]

        def training_step(self, model, batch, optimizers, ctx):
            body, head = optimizers
            with ctx.autocast():  # step 1: the head alone, on detached features
                feats = model.body(*batch.inputs).detach()
                loss_head = self.loss(model.head(feats), batch.target)
            ctx.backward(loss_head)
            ctx.step(head)
            with ctx.autocast():  # step 2: the body through the (updated) head
                loss = self.loss(model(*batch.inputs), batch.target)
            ctx.backward(loss)
            ctx.step(body)
            head.zero_grad(set_to_none=True)
            return {"loss": loss.detach(), "loss_head": loss_head.detach()}

    r = archlab.fit(
        "mlp_tabular",
        digits_bundle(),
        TwoOpt(),
        max_steps=40,
        lr=3e-3,
        log_every=10,
        out_dir=str(tmp_path),
        run_name="two",
        **FAST,
    )
    train = [h for h in r.history if h["kind"] == "train"]
    assert {"loss", "loss_head"} <= set(train[-1]) and train[-1]["loss"] < train[0]["loss"]
    assert r.metrics["test_accuracy"] > 0.8
    meta = json.loads((tmp_path / "two" / "last" / "state.json").read_text())
    assert len(meta["optimizers"]) == 2 and meta["schedulers"][1] is None
