"""Design: the architecture advisor and auto-sizing to a budget (recommend, autosize).

- :func:`recommend` reads the data (a bundle, a bundled name or a path) and the constraints,
  fires the rule table of :mod:`archlab.design.rules` (selection knowledge from the seeds) and
  ranks registry presets, each sized to the budgets, with the rule ids behind it.
- :func:`autosize` finds the largest config of a preset's family within parameter, FLOPs,
  memory and latency budgets by moving the family's knobs (:mod:`archlab.design.knobs`).
"""

from archlab.design.autosize import Candidate, SizedConfig, autosize, measure_latency_ms
from archlab.design.facts import DataFacts, inspect_data
from archlab.design.knobs import FAMILY_KNOBS, Knob, knobs_for
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
]
