"""Runs: names to objects, run directories, and what a user does with them.

``fit`` / ``resume`` train by name or object and lay out the run directory; ``evaluate``,
``predict`` and ``generate_from_run`` use a finished run; :class:`RunSpec` is the YAML run file.
"""

from archlab.report.notebook import design_result_html, notebook_html
from archlab.runs.design import DesignResult, resume_design
from archlab.runs.spec import RunSpec
from archlab.runs.training import fit, resume
from archlab.runs.use import evaluate, load_run, predict

# a design result is drawn by the report layer, which cannot import its type (it sits below this one)
notebook_html.register(DesignResult, design_result_html)

__all__ = ["RunSpec", "fit", "resume", "evaluate", "predict", "load_run", "DesignResult", "resume_design"]
