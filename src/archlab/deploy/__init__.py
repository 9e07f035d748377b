"""Ship a model: verified ONNX / torch.export exports with everything a server needs, dynamic
int8, and a deployment-requirements report (size, RAM, latency, packages, budgets)."""

from __future__ import annotations

from archlab.deploy.export import FORMATS, ExportResult, Verification, export

__all__ = ["FORMATS", "ExportResult", "Verification", "export", "deploy_report", "DeployReport"]


def __getattr__(name: str):
    # deploy_report pulls in the benchmark harness; load it on first use.
    if name in ("deploy_report", "DeployReport"):
        from archlab.deploy import report

        return getattr(report, name)
    raise AttributeError(name)
