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

__all__ = [
    "__version__",
    "ArchlabError", "CheckpointError", "ConfigError", "DataError", "MissingExtraError", "ShapeError",
    "create", "create_from_config", "list_models", "model_info", "register", "save", "load",
]
