"""Tasks: what a model is trained to do (loss, metrics, what a prediction is).

``get_task(name, **options)`` builds a task by name; modules are imported on first use so this
package stays light. Names accept ``-`` or ``_`` (``language_modeling``). Other task modules add
themselves to ``TASKS`` with one line.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from archlab.errors import ConfigError

# name -> "module:Class" (relative to archlab.tasks)
TASKS: dict[str, str] = {
    "classification": "classification:ClassificationTask",
    "regression": "regression:RegressionTask",
    "forecasting": "forecasting:ForecastingTask",
    "tagging": "tagging:TaggingTask",
    "language-modeling": "language_model:LanguageModelTask",
    "segmentation": "segmentation:SegmentationTask",
    "reconstruction": "generative:ReconstructionTask",
    "vae": "generative:VAETask",
    "flow": "generative:FlowTask",
    "gan": "generative_adv:GANTask",
    "diffusion": "generative_adv:DiffusionTask",
    "contrastive": "contrastive_task:ContrastiveTask",
    "node-classification": "graph:NodeClassificationTask",
    "graph-classification": "graph:GraphClassificationTask",
    "ctr": "recommendation:CTRTask",
}
ALIASES = {"lm": "language-modeling", "language-model": "language-modeling", "sequence-tagging": "tagging"}


def list_tasks() -> list[str]:
    return sorted(TASKS)


def canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return ALIASES.get(key, key)


def get_task(name: str, **options: Any):
    """A new task object by name (see :data:`TASKS`)."""
    key = canonical(name)
    if key not in TASKS:
        close = difflib.get_close_matches(key, list(TASKS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown task {name!r}{hint} (known: {', '.join(sorted(TASKS))})")
    module, cls = TASKS[key].split(":")
    return getattr(importlib.import_module(f"archlab.tasks.{module}"), cls)(**options)
