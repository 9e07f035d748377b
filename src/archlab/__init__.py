"""archlab: a PyTorch workbench for designing neural networks.

Choose an architecture, build it from a typed config, see it (shapes, parameters, FLOPs, memory,
diagram), train it, measure it and ship it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from archlab.checkpoint import load, save
from archlab.errors import (
    ArchlabError,
    CheckpointError,
    ConfigError,
    DataError,
    MissingExtraError,
    ShapeError,
)
from archlab.registry import create, create_from_config, list_models, model_info, register
from archlab.train import RunResult, TrainConfig, fit


def summary(model, input=None, **kwargs):
    """Layer-by-layer summary; see :func:`archlab.analysis.summary.summary`."""
    from archlab.analysis.summary import summary as _summary

    return _summary(model, input, **kwargs)


def diagram(model, input=None, **kwargs):
    """Data-flow diagram; see :func:`archlab.analysis.diagram.diagram`."""
    from archlab.analysis.diagram import diagram as _diagram

    return _diagram(model, input, **kwargs)


def compare(models, input=None, **kwargs):
    """Side-by-side comparison; see :func:`archlab.analysis.compare.compare`."""
    from archlab.analysis.compare import compare as _compare

    return _compare(models, input, **kwargs)

__all__ = [
    "__version__",
    "ArchlabError", "CheckpointError", "ConfigError", "DataError", "MissingExtraError", "ShapeError",
    "create", "create_from_config", "list_models", "model_info", "register", "save", "load",
    "fit", "RunResult", "TrainConfig",
    "summary", "diagram", "compare",
]
