"""Tasks: what a model is trained to do (loss, metrics, what a prediction is).

``get_task(name, **options)`` builds a task by name; modules are imported on first use so this
package stays light. Names are words of :mod:`archlab.capabilities` (hyphens and synonyms accepted).
Every task is one file holding its math and its :class:`~archlab.tasks.base.Task`; the contract
the engine relies on is in :mod:`archlab.tasks.base`, the pictures tasks make in
:mod:`archlab.tasks.pictures`.
"""

from __future__ import annotations

import importlib
from typing import Any

from archlab import capabilities
from archlab.errors import ConfigError

# name -> "module:Class" (relative to archlab.tasks)
TASKS: dict[str, str] = {
    "classification": "classification:ClassificationTask",
    "regression": "regression:RegressionTask",
    "forecasting": "forecasting:ForecastingTask",
    "tagging": "tagging:TaggingTask",
    "language_modeling": "language_model:LanguageModelTask",
    "segmentation": "segmentation:SegmentationTask",
    "reconstruction": "reconstruction:ReconstructionTask",
    "vae": "vae:VAETask",
    "flow": "flow:FlowTask",
    "gan": "gan:GANTask",
    "diffusion": "diffusion:DiffusionTask",
    "contrastive": "contrastive:ContrastiveTask",
    "node_classification": "graph:NodeClassificationTask",
    "graph_classification": "graph:GraphClassificationTask",
    "ctr": "recommendation:CTRTask",
}


def list_tasks() -> list[str]:
    return sorted(TASKS)


def canonical(name: str) -> str:
    """The vocabulary word for a task name (``"language-modeling"`` -> ``"language_modeling"``)."""
    return capabilities.task(name)


def get_task(name: str, **options: Any):
    """A new task object by name (see :data:`TASKS`)."""
    key = canonical(name)
    if key not in TASKS:
        raise ConfigError(f"archlab has no trainer for task {key!r} yet (trainers: {', '.join(sorted(TASKS))})")
    module, cls = TASKS[key].split(":")
    return getattr(importlib.import_module(f"archlab.tasks.{module}"), cls)(**options)
