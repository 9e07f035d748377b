"""The learning-rate range test: a suggestion below the loss minimum, on batches and on a whole graph."""

from __future__ import annotations

import torch

from archlab.data import load
from archlab.runs.adapt import build_model
from archlab.runs.lr_range import lr_range_test
from archlab.tasks import get_task


def _sweep(dataset: str, model: str, batch_size: int = 32):
    bundle = load(dataset)
    task = get_task(bundle.task)
    net = build_model(model, bundle, task)
    state = torch.get_rng_state()
    res = lr_range_test(net, bundle, task, batch_size=batch_size, steps=30)
    assert torch.equal(state, torch.get_rng_state())  # the runs after it do not depend on it
    return res


def test_the_suggestion_is_a_tenth_of_the_rate_at_the_smoothed_minimum():
    res = _sweep("iris", "mlp_tabular")
    assert res.note == "" and res.lr_at_min is not None
    assert res.lr == min(max(res.lr_at_min * 0.1, 1e-5), 1e-2)
    assert res.losses[res.lrs.index(res.lr_at_min)] == min(res.losses) < res.losses[0]
    assert all(b > a for a, b in zip(res.lrs, res.lrs[1:]))  # a geometric sweep upwards


def test_a_whole_graph_is_swept_as_one_batch():
    res = _sweep("karate", "gcn_karate")  # node classification: the split cannot be indexed
    assert res.lrs and 1e-5 <= res.lr <= 1e-2


def test_a_sweep_its_time_cannot_buy_falls_back_to_the_recipe_rate():
    bundle = load("iris")
    task = get_task(bundle.task)
    net = build_model("mlp_tabular", bundle, task)
    res = lr_range_test(net, bundle, task, batch_size=32, fallback=3e-3, max_seconds=1e-9)
    assert res.lr == 3e-3 and res.lr_at_min is None and "would take over" in res.note
    assert len(res.lrs) == 1 and res.seconds_per_step is not None and res.seconds_per_step > 0
