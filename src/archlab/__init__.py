"""archlab: a PyTorch workbench for designing neural networks.

Choose an architecture, build it from a typed config, see it (shapes, parameters, FLOPs, memory,
diagram), train it, measure it and ship it.

Every name below is imported on first use (PEP 562), so ``import archlab`` and ``archlab --help``
do not pay for torch and the layers until something needs them; ``archlab.fit`` and
``from archlab import fit`` work as usual.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from archlab._version import __version__

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ArchlabError": "archlab.errors",
    "CheckpointError": "archlab.errors",
    "ConfigError": "archlab.errors",
    "DataError": "archlab.errors",
    "MissingExtraError": "archlab.errors",
    "ShapeError": "archlab.errors",
    "create": "archlab.registry",
    "create_from_config": "archlab.registry",
    "list_models": "archlab.registry",
    "model_info": "archlab.registry",
    "register": "archlab.registry",
    "save": "archlab.checkpoint",
    "load": "archlab.checkpoint",
    "fit": "archlab.runs",
    "resume": "archlab.runs",
    "evaluate": "archlab.runs",
    "predict": "archlab.runs",
    "RunSpec": "archlab.runs",
    "RunResult": "archlab.train",
    "TrainConfig": "archlab.train",
    "Reporter": "archlab.train",
    "summary": "archlab.analysis",
    "diagram": "archlab.analysis",
    "compare": "archlab.analysis",
    "ModelSummary": "archlab.analysis",
    "ModelGraph": "archlab.analysis",
    "Comparison": "archlab.analysis",
    "render": "archlab.report",
    "make_report": "archlab.report.output",
    "design": "archlab.runs.design",
    "resume_design": "archlab.runs.design",
    "recommend": "archlab.advise",
    "autosize": "archlab.advise",
    "benchmark": "archlab.bench",
    "export": "archlab.deploy",
    "deploy_report": "archlab.deploy",
}

__all__ = [  # spelled out (not derived from _EXPORTS) so that linters and IDEs read it
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
    "make_report",
    "design",
    "resume_design",
    "recommend",
    "autosize",
    "benchmark",
    "export",
    "deploy_report",
]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    # the defining modules: the subpackages' own names (e.g. archlab.analysis.summary) are also modules
    from archlab.advise.autosize import autosize
    from archlab.advise.recommend import recommend
    from archlab.analysis.compare_models import Comparison, compare
    from archlab.analysis.diagram import ModelGraph, diagram
    from archlab.analysis.summary import ModelSummary, summary
    from archlab.bench import benchmark
    from archlab.checkpoint import load, save
    from archlab.deploy.export import export
    from archlab.deploy.requirements import deploy_report
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
    from archlab.report.output import make_report
    from archlab.runs import RunSpec, evaluate, fit, predict, resume
    from archlab.runs.design import design, resume_design
    from archlab.train import Reporter, RunResult, TrainConfig


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # a subpackage, e.g. archlab.report.render(...) or archlab.data.load(...)
        try:
            return importlib.import_module(f"archlab.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"archlab.{name}":
                raise
        raise AttributeError(f"module 'archlab' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if "IPython" in sys.modules:  # results render as Markdown/HTML in a notebook (the report layer is heavy)
    from archlab.report import register_notebook_display as _register_notebook_display

    _register_notebook_display()
