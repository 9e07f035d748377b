"""archlab: a PyTorch workbench for designing neural networks.

Choose an architecture, build it from a typed config, see it (shapes, parameters, FLOPs, memory,
diagram), train it, measure it and ship it.
"""

from __future__ import annotations

from archlab._version import __version__
from archlab.analysis import Comparison, ModelGraph, ModelSummary, compare, diagram, summary
from archlab.checkpoint import load, save
from archlab.design import autosize, recommend
from archlab.errors import (
    ArchlabError,
    CheckpointError,
    ConfigError,
    DataError,
    MissingExtraError,
    ShapeError,
)
from archlab.registry import create, create_from_config, list_models, model_info, register
from archlab.report import render
from archlab.runs import RunSpec, evaluate, fit, predict, resume
from archlab.train import Reporter, RunResult, TrainConfig

__all__ = [
    "__version__",
    "ArchlabError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MissingExtraError",
    "ShapeError",
    "create",
    "create_from_config",
    "list_models",
    "model_info",
    "register",
    "save",
    "load",
    "fit",
    "resume",
    "evaluate",
    "predict",
    "RunSpec",
    "RunResult",
    "TrainConfig",
    "Reporter",
    "summary",
    "diagram",
    "compare",
    "ModelSummary",
    "ModelGraph",
    "Comparison",
    "render",
    "recommend",
    "autosize",
]

from archlab.report import register_notebook_display as _register_notebook_display  # noqa: E402

_register_notebook_display()

_LAZY = {"benchmark": "archlab.bench", "export": "archlab.deploy", "deploy_report": "archlab.deploy"}
__all__ += list(_LAZY)


def __getattr__(name: str):
    # Measuring and shipping pull in their backends (onnx, onnxruntime) only when first used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archlab' has no attribute {name!r}")
