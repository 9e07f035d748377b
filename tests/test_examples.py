"""Every examples/*.yaml validates: parses, loads its data, builds its task, model and TrainConfig,
and one forward + loss on two training samples is finite (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_validates(path):
    from archlab.cli.train import _section
    from archlab.data import load
    from archlab.tasks import get_task
    from archlab.train.adapt import build_model
    from archlab.train.config import TrainConfig

    doc = yaml.safe_load(path.read_text())
    assert set(doc) <= {"model", "data", "task", "train"}
    model_name, model_over = _section(doc["model"], "model")
    data_name, data_opts = _section(doc["data"], "data")
    task_name, task_opts = _section(doc.get("task"), "task")
    cfg = TrainConfig.build(dict(doc.get("train") or {}))
    bundle = load(data_name, **data_opts)
    task = get_task(task_name or bundle.task, **task_opts)
    model = build_model(model_name, bundle, task, model_over)
    assert cfg.lr > 0
    # One forward + loss on two training samples: the data layout fits the model.
    task.setup(bundle, cfg, torch.device("cpu"))
    batch = bundle.train.take(torch.arange(2)) if bundle.train.indexable else bundle.train
    model.eval()
    with torch.no_grad():
        loss = task.batch_loss(task.forward(model, batch), batch)
    assert torch.isfinite(loss)
