"""The architecture advisor: recommendations, auto-sizing to a budget, and the baselines.

- :func:`recommend` reads the data (a bundle, a bundled name or a path) and the constraints,
  fires the rule table of :mod:`archlab.advise.rules` (selection rules, each citing its evidence) and
  ranks registry presets, each sized to the budgets, with the rule ids behind it.
- :func:`autosize` finds the largest config of a preset's family within parameter, FLOPs,
  memory and latency budgets by moving the family's knobs (:mod:`archlab.advise.knobs`).
- :func:`train_recipe` gives the default training length for data of a size (:mod:`archlab.advise.recipe`).
- :func:`fit_baselines` fits the baselines a user of the data would try first (:mod:`archlab.advise.baselines`).

The end-to-end pipeline that uses them is :func:`archlab.design` (:mod:`archlab.runs.design`).
"""

from archlab.advise.autosize import Candidate, SizedConfig, autosize, measure_latency_ms
from archlab.advise.baselines import Baseline, fit_baselines
from archlab.advise.facts import DataFacts, inspect_data
from archlab.advise.knobs import FAMILY_KNOBS, Knob, knobs_for
from archlab.advise.recipe import train_recipe
from archlab.advise.recommend import Advice, RecCandidate, Recommendation, recommend
from archlab.advise.rules import RULES, Rule, rules_for

__all__ = [
    "Advice",
    "Baseline",
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
    "fit_baselines",
    "inspect_data",
    "knobs_for",
    "measure_latency_ms",
    "recommend",
    "rules_for",
    "train_recipe",
]
