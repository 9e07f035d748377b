"""Ship a model: verified ONNX / torch.export exports with everything a server needs, dynamic
int8, and a deployment-requirements report (size, RAM, latency, packages, budgets).

:mod:`archlab.deploy.serve` needs numpy and onnxruntime only: without torch this package still
imports, so ``archlab predict EXPORT_DIR`` serves an export on a machine without torch.
"""

from __future__ import annotations

from archlab.errors import MissingExtraError

try:
    from archlab.deploy.export import FORMATS, ExportResult, Verification, export
except ImportError as exc:  # no torch: serving an export folder still works
    if exc.name != "torch" and not (exc.name or "").startswith("torch."):
        raise

__all__ = ["FORMATS", "ExportResult", "Verification", "export", "deploy_report", "DeployReport"]


def __getattr__(name: str):
    # deploy_report pulls in the benchmark harness; load it on first use.
    if name in ("deploy_report", "DeployReport"):
        from archlab.deploy import requirements

        return getattr(requirements, name)
    if name in ("FORMATS", "ExportResult", "Verification", "export"):
        raise MissingExtraError(f"archlab.deploy.{name} needs torch (pip install torch); serving an export does not")
    raise AttributeError(name)
