"""Every examples/*.yaml validates: parses, loads its data, builds its task, model and TrainConfig,
and one forward + loss on two training samples is finite (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_validates(path):
    from archlab.data import load
    from archlab.runs import RunSpec
    from archlab.runs.adapt import build_model
    from archlab.tasks import get_task
    from archlab.train.config import TrainConfig

    spec = RunSpec.from_file(path)
    cfg = TrainConfig.build(spec.train)
    bundle = load(spec.data.name, **spec.data.options)
    task = get_task(spec.task.name or bundle.task, **spec.task.options)
    model = build_model(spec.model.name, bundle, task, spec.model.options)
    assert cfg.lr > 0
    # One forward + loss on two training samples: the data layout fits the model.
    task.setup(bundle, cfg, torch.device("cpu"))
    batch = bundle.train.take(torch.arange(2)) if bundle.train.indexable else bundle.train
    model.eval()
    with torch.no_grad():
        loss = task.batch_loss(task.forward(model, batch), batch)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_registry_lists_each_examples_model_for_its_data(path):
    """One vocabulary: filtering the registry by the data's modality and the example's task finds
    the model the example trains (issue 9)."""
    import archlab
    from archlab.data import list_datasets
    from archlab.runs import RunSpec
    from archlab.tasks import canonical

    spec = RunSpec.from_file(path)
    entry = next(d for d in list_datasets() if d["name"] == spec.data.name)
    task = canonical(spec.task.name) if spec.task.name else entry["tasks"][0]
    assert spec.model.name in archlab.list_models(modality=entry["modality"], task=task)
