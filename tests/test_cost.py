"""Costs said before training: the one-line estimate, its warning, and the evaluation floor (issue 15)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml
from torch import nn

import archlab
from archlab.runs import cost

TRAIN = {"precision": "fp32", "batch_size": 64}  # iris: 96 training rows -> 2 steps per epoch


def test_step_flops_are_forward_plus_backward():
    b, n_in, n_out = 10, 4, 3
    forward = 2 * b * n_in * n_out  # one multiply-add per weight and sample
    # backward: the input's gradient and the weight's gradient, each as costly as the forward
    assert cost.step_flops(nn.Linear(n_in, n_out), (torch.randn(b, n_in),)) == 3 * forward


def test_machine_speed_is_measured_once_per_process(monkeypatch):
    monkeypatch.setattr(cost, "_SPEED", {})
    first = cost.machine_flops(torch.device("cpu"))
    assert first > 0 and cost._SPEED == {"cpu": first}
    monkeypatch.setattr(cost.time, "perf_counter", lambda: pytest.fail("measured again"))
    assert cost.machine_flops(torch.device("cpu")) == first


@pytest.mark.parametrize(
    ("per_epoch", "total", "expected"),
    [
        (2, 500, 50),  # 80 samples, 500 steps: 10 evaluations, not 250
        (2, 5000, 50),  # a long run: at most one evaluation per 50 steps
        (2, 20, None),  # a short run already evaluates 10 times per epoch
        (3, 100, 10),
        (100, 1000, None),  # an epoch of 100 steps: once per epoch as before
        (20, 800, None),  # digits: 20-step epochs are not tiny; 40 evaluations as before
        (9, 900, 50),  # 9-step epochs are
    ],
)
def test_eval_floor(per_epoch, total, expected):
    assert cost.eval_floor(per_epoch, total) == expected


def _evals(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r.get("kind") == "eval"]


def test_tiny_data_is_not_evaluated_every_epoch(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="archlab.runs"):
        result = archlab.fit("mlp_tabular", "iris", out_dir=tmp_path, run_name="a", max_steps=40, **TRAIN)
    assert _evals(result.run_dir) == list(range(4, 41, 4))  # every 4 steps: 10 evaluations, not 20
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["train"]["eval_every"] == 4
    assert "evaluating every 4 steps" in caplog.text
    assert "FLOP/step x 40 steps" in caplog.text  # the cost line, before the first step


def test_eval_every_given_by_the_user_is_kept(tmp_path):
    result = archlab.fit("mlp_tabular", "iris", out_dir=tmp_path, run_name="b", max_steps=12, eval_every=2, **TRAIN)
    assert _evals(result.run_dir) == list(range(2, 13, 2))


def test_a_long_run_is_warned_about(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cost, "_SPEED", {"cpu": 1.0})  # a machine doing one FLOP per second
    with caplog.at_level(logging.INFO, logger="archlab.runs"):
        archlab.fit("mlp_tabular", "iris", out_dir=tmp_path, run_name="c", max_steps=2, **TRAIN)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "cost:" in r.getMessage()]
    assert len(warned) == 1 and f"longer than {cost.WARN_SECONDS:.0f} s" in warned[0].getMessage()


def test_an_uncountable_model_still_trains(tmp_path, caplog, monkeypatch):
    def fail(model, inputs):
        raise RuntimeError("this module cannot be traced")

    monkeypatch.setattr(cost, "step_flops", fail)
    with caplog.at_level(logging.INFO, logger="archlab.runs"):
        result = archlab.fit("mlp_tabular", "iris", out_dir=tmp_path, run_name="d", max_steps=2, **TRAIN)
    assert "cost: not estimated (RuntimeError: this module cannot be traced)" in caplog.text and result.steps == 2
