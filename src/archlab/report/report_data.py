"""The design report's data: :class:`DesignReport` and its :class:`Figure` s, the section
names, and the small readers the section builders share (:mod:`archlab.report.document`,
:mod:`archlab.report.choice`, :mod:`archlab.report.compare_subjects`)."""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from archlab._version import __version__
from archlab.errors import ConfigError
from archlab.report.format import fmt_count
from archlab.rundir import DesignDir, RunDir

log = logging.getLogger("archlab.report.document")

SCHEMA_VERSION = 1
#: the six deliverables of a design report, in reading order: section id -> heading
SECTIONS: dict[str, str] = {
    "architecture": "1. Architecture definition",
    "parameters": "2. Parameter count analysis",
    "layers": "3. Layer-by-layer description",
    "dataflow": "4. Data-flow diagram",
    "benchmarks": "5. Performance benchmarks",
    "deployment": "6. Deployment requirements",
}
#: sections a training run adds after the six
RUN_SECTIONS: dict[str, str] = {
    "data": "Data",
    "training": "Training curves",
    "metrics": "Final metrics",
    "pictures": "Task pictures",
}
COMPARE_SECTION = ("comparison", "Model comparison")
CHOICE_SECTION = ("choice", "Why this model")


@dataclass
class Figure:
    """One figure: SVG markup (``mime`` image/svg+xml) or base64 PNG (image/png)."""

    id: str
    title: str
    mime: str
    data: str
    caption: str = ""

    @property
    def ext(self) -> str:
        return "svg" if self.mime == "image/svg+xml" else "png"

    def to_bytes(self) -> bytes:
        return self.data.encode() if self.ext == "svg" else base64.b64decode(self.data)

    def data_uri(self) -> str:
        if self.ext == "svg":
            return "data:image/svg+xml;base64," + base64.b64encode(self.data.encode()).decode()
        return "data:image/png;base64," + self.data


@dataclass
class DesignReport:
    """Everything the report shows, as plain data (``to_dict`` is the JSON form).

    ``skipped`` maps a section id to the reason it has no measurement (``--no-bench``, a package
    missing, a model that cannot be traced); ``figures`` maps a figure id to its
    :class:`Figure`; the ``section`` fields hold the tables each section draws.
    """

    title: str
    subject: str
    kind: str  # "registry" | "module" | "saved" | "run" | "design" (a design's winning run)
    model: str
    created: str
    archlab_version: str = __version__
    config_yaml: str | None = None
    module_tree: str = ""
    rationale: dict[str, Any] = field(default_factory=dict)
    summary: Any = None  # ModelSummary
    params: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] | None = None
    bench: Any = None  # BenchResult
    deploy: Any = None  # DeployReport
    run: dict[str, Any] | None = None
    comparison: list[dict[str, Any]] | None = None
    choice: dict[str, Any] | None = None  # a design directory: the candidates and why the winner
    figures: dict[str, Figure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def section_ids(self) -> list[str]:
        ids = list(SECTIONS)
        if self.run is not None:
            ids += list(RUN_SECTIONS)
        if self.comparison is not None:
            ids.insert(0, COMPARE_SECTION[0])
        if self.choice is not None:
            ids.insert(0, CHOICE_SECTION[0])
        return ids

    def heading(self, section_id: str) -> str:
        extra = dict([COMPARE_SECTION, CHOICE_SECTION])
        return {**SECTIONS, **RUN_SECTIONS, **extra}[section_id]

    def add_figure(self, fig: Figure | None) -> None:
        if fig is not None:
            self.figures[fig.id] = fig

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: every section's tables and every figure (SVG text / PNG base64)."""
        s = self.summary
        sections: dict[str, Any] = {
            "architecture": {
                "config_yaml": self.config_yaml,
                "module_tree": self.module_tree,
                "rationale": self.rationale,
            },
            "parameters": self.params,
            "layers": s.to_dict() if s is not None else None,
            "dataflow": self.graph,
            "benchmarks": self.bench.to_dict() if self.bench is not None else None,
            "deployment": self.deploy.to_dict() if self.deploy is not None else None,
        }
        if self.run is not None:
            run = self.run
            sections["data"] = {"config": run.get("data_config"), "data_info": run.get("data_info")}
            sections["training"] = {"train_config": run.get("train_config"), "records": run.get("n_records")}
            sections["metrics"] = run.get("final_metrics")
            sections["spread"] = run.get("spread")  # None unless the run is in a CV / seed group
            sections["pictures"] = {"images": run.get("pictures", []), "texts": run.get("texts", {})}
        if self.comparison is not None:
            sections["comparison"] = {"rows": self.comparison}
        if self.choice is not None:
            sections["choice"] = self.choice
        return {
            "schema_version": SCHEMA_VERSION,
            "title": self.title,
            "subject": self.subject,
            "kind": self.kind,
            "model": self.model,
            "created": self.created,
            "archlab_version": self.archlab_version,
            "section_ids": self.section_ids,
            "sections": sections,
            "skipped": dict(self.skipped),
            "figures": {k: asdict(f) for k, f in self.figures.items()},
            "timings_s": dict(self.timings_s),
            "notes": list(self.notes),
        }


def kind_of(subject: Any) -> str:
    if isinstance(subject, nn.Module):
        return "module"
    if not isinstance(subject, (str, os.PathLike)):
        raise ConfigError(
            f"a report's subject is a registry name, an nn.Module or a run directory; got {type(subject).__name__}"
        )
    path = Path(subject)
    if path.is_dir():
        if (path / DesignDir.MANIFEST).is_file():
            return "design"
        if (path / RunDir.CONFIG).is_file():
            return "run"
        if (path / "config.json").is_file():
            return "saved"
        raise ConfigError(
            f"{path} is neither a run directory (config.yaml), a design directory (design.json) "
            "nor a saved model (config.json)"
        )
    from archlab.registry import get_entry

    get_entry(str(subject))  # raises with the closest names
    return "registry"


def fmt_float(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else fmt_count(v)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None
