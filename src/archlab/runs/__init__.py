"""Runs: names to objects, run directories, and what a user does with them.

``fit`` / ``resume`` train by name or object and lay out the run directory; ``evaluate``,
``predict`` and ``generate_from_run`` use a finished run; :class:`RunSpec` is the YAML run file.
"""

from archlab.runs.design import DesignResult, resume_design
from archlab.runs.spec import RunSpec
from archlab.runs.training import fit, resume
from archlab.runs.use import evaluate, load_run, predict

__all__ = ["RunSpec", "fit", "resume", "evaluate", "predict", "load_run", "DesignResult", "resume_design"]
