"""The design report: seed 004's six deliverables about one model, gathered into one document.

:func:`build_report` turns a subject (a registry name, an ``nn.Module``, a saved-model directory
or a training run directory) into a :class:`DesignReport`: plain data gathered from the layers
below (summary, diagram, benchmark, deployment requirements, the run's files). It renders
nothing but its figures (small SVG charts, PNGs read from a run, both kept as text so that the
JSON form carries every figure the HTML shows). :func:`report` builds one and writes it as
HTML (:mod:`archlab.report.html`), Markdown (:mod:`archlab.report.markdown`) or JSON, the
format following the extension.

A step that cannot run for this model (a backend that cannot export it, a dataset the advisor
cannot read, a missing optional package) becomes a stated reason in its section, never a failed
report: a report is most useful exactly when something about the model is unusual.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from archlab._version import __version__
from archlab.errors import ArchlabError, ConfigError
from archlab.report.format import fmt_bytes, fmt_count

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: the six deliverables of seed 004, in reading order: section id -> heading
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
#: text a task may leave in a run directory (generated samples) shown verbatim, at most this much
_TEXT_LIMIT = 4000


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
    kind: str  # "registry" | "module" | "saved" | "run"
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
        return ids

    def heading(self, section_id: str) -> str:
        return {**SECTIONS, **RUN_SECTIONS, COMPARE_SECTION[0]: COMPARE_SECTION[1]}[section_id]

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
            sections["pictures"] = {"images": run.get("pictures", []), "texts": run.get("texts", {})}
        if self.comparison is not None:
            sections["comparison"] = {"rows": self.comparison}
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


# ------------------------------------------------------------------------------------ subjects
def _kind_of(subject: Any) -> str:
    if isinstance(subject, nn.Module):
        return "module"
    if not isinstance(subject, (str, os.PathLike)):
        raise ConfigError(
            f"a report's subject is a registry name, an nn.Module or a run directory; got {type(subject).__name__}"
        )
    path = Path(subject)
    if path.is_dir():
        if (path / "config.yaml").is_file():
            return "run"
        if (path / "config.json").is_file():
            return "saved"
        raise ConfigError(f"{path} is neither a run directory (config.yaml) nor a saved model (config.json)")
    from archlab.registry import get_entry

    get_entry(str(subject))  # raises with the closest names
    return "registry"


def _load_module(subject: Any, kind: str, run_cfg: dict[str, Any] | None) -> tuple[nn.Module | None, str | None]:
    """The module to describe (trained weights for a run), or None and why not."""
    from archlab import checkpoint
    from archlab.registry import create, create_from_config

    try:
        if kind == "module":
            return subject, None
        if kind == "registry":
            # meta: the tree and config without allocating a large model's weights
            return create(str(subject), device="meta"), None
        if kind == "saved":
            return checkpoint.load(subject), None
        from archlab.rundir import final_checkpoint

        ckpt = final_checkpoint(Path(subject), run_cfg or {})
        if ckpt is not None:
            return checkpoint.load(ckpt), None
        model_cfg = (run_cfg or {}).get("model") or {}
        return create_from_config(model_cfg), "no finished checkpoint in the run: the untrained model is described"
    except ArchlabError as exc:
        return None, str(exc)


def _model_name(subject: Any, kind: str, module: nn.Module | None, run_cfg: dict[str, Any] | None) -> str:
    if kind == "registry":
        return str(subject)
    name = getattr(module, "registry_name", None) if module is not None else None
    if kind == "run":
        name = name or ((run_cfg or {}).get("model") or {}).get("name")
    return name or (type(module).__name__ if module is not None else Path(str(subject)).name)


# ------------------------------------------------------------------------------------ sections
def _architecture(rep: DesignReport, module: nn.Module | None, run_cfg: dict[str, Any] | None) -> None:
    from archlab.registry import entry_for_model, get_entry

    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "to_yaml"):
        rep.config_yaml = config.to_yaml()
    elif run_cfg and run_cfg.get("model"):
        import yaml

        rep.config_yaml = yaml.safe_dump(run_cfg["model"], sort_keys=False)
    rep.module_tree = str(module) if module is not None else ""
    entry = None
    try:
        entry = (
            get_entry(rep.model) if rep.kind == "registry" else entry_for_model(module) if module is not None else None
        )
    except ArchlabError:
        entry = None
    if entry is not None:
        rep.rationale = {
            "source": "registry",
            "family": entry.family,
            "description": entry.description,
            "when_to_use": entry.when_to_use,
            "modalities": list(entry.modalities),
            "tasks": list(entry.tasks),
        }
    if rep.kind == "run" and run_cfg:
        rep.rationale.update(_advisor(rep.model, run_cfg))


def _advisor(model: str, run_cfg: dict[str, Any]) -> dict[str, Any]:
    """Where the advisor ranks this run's model for the run's data (cheap: no latency measured)."""
    data = (run_cfg.get("data") or {}).get("name")
    task = (run_cfg.get("task") or {}).get("name")
    if not data:
        return {}
    try:
        from archlab.design import recommend

        rec = recommend(data, task=task, top=5)
    except Exception as exc:  # noqa: BLE001 - the rationale is optional: say why it is missing
        return {"advisor_skipped": f"the advisor could not read {data!r}: {' '.join(str(exc).split())[:200]}"}
    rows = [
        {
            "rank": c.rank,
            "name": c.name,
            "score": round(c.score, 3),
            "reasons": list(c.reasons),
            "tradeoffs": c.tradeoffs,
        }
        for c in rec.candidates
    ]
    mine = next((r for r in rows if r["name"] == model), None)
    return {
        "advisor": {
            "data": data,
            "task": task,
            "candidates": rows,
            "this_model_rank": mine["rank"] if mine else None,
            "warnings": [w.message for w in rec.warnings],
        }
    }


def _parameters(rep: DesignReport) -> None:
    from archlab.report.svg import bar_svg

    s = rep.summary
    top = [r for r in s.rows if r.depth == 1] or [r for r in s.rows if r.depth == 0]
    by_layer = [
        {
            "name": r.name,
            "type": r.type,
            "params": r.params,
            "trainable": r.trainable_params,
            "frozen": r.params - r.trainable_params,
            "share": (r.params / s.total_params) if s.total_params else 0.0,
        }
        for r in top
    ]
    by_type = sorted(
        ({"type": t, "count": v.count, "params": v.params} for t, v in s.by_type.items() if v.params),
        key=lambda d: -d["params"],
    )
    rep.params = {
        "total": s.total_params,
        "trainable": s.trainable_params,
        "frozen": s.total_params - s.trainable_params,
        "param_bytes": s.param_bytes,
        "by_layer": by_layer,
        "by_type": by_type,
    }
    with_params = [d for d in by_layer if d["params"]]
    if with_params:
        rep.add_figure(
            Figure(
                "params_by_layer",
                "Parameters by top-level layer",
                "image/svg+xml",
                bar_svg([d["name"] for d in with_params], [d["params"] for d in with_params], "Parameters by layer"),
            )
        )
    if by_type:
        rep.add_figure(
            Figure(
                "params_by_type",
                "Parameters by layer type",
                "image/svg+xml",
                bar_svg([d["type"] for d in by_type], [d["params"] for d in by_type], "Parameters by layer type"),
            )
        )


def _dataflow(rep: DesignReport, target: Any) -> None:
    from archlab.analysis import diagram
    from archlab.report.diagram import to_svg

    graph = diagram(target, depth=2)
    rep.graph = graph.to_dict()
    rep.add_figure(
        Figure(
            "dataflow",
            "Data-flow diagram",
            "image/svg+xml",
            to_svg(graph),
            "Runs of identical blocks are drawn once, labelled 'xN'.",
        )
    )


def _benchmarks(rep: DesignReport, target: Any) -> None:
    from archlab.bench import benchmark
    from archlab.report.svg import bar_svg

    res = benchmark(target, batch_sizes=(1, 8), backends=("eager", "onnxruntime"), min_time_s=0.3, isolate=False)
    rep.bench = res
    ok = [r for r in res.rows if r.ok and r.p50_ms is not None]
    failed = [r for r in res.rows if not r.ok]
    if failed:
        rep.notes.append(
            "benchmark rows that did not run: "
            + "; ".join(f"{r.backend} batch {r.batch_size}: {r.status} ({r.reason})" for r in failed)
        )
    if ok:
        labels = [f"{r.backend} b={r.batch_size}" for r in ok]
        rep.add_figure(
            Figure(
                "bench_latency",
                "Latency (p50, ms per call)",
                "image/svg+xml",
                bar_svg(labels, [r.p50_ms for r in ok], "p50 latency (ms)", fmt=_fmt_float),
            )
        )
        rep.add_figure(
            Figure(
                "bench_throughput",
                "Throughput (samples/s)",
                "image/svg+xml",
                bar_svg(labels, [r.samples_per_s or 0 for r in ok], "samples / s", fmt=_fmt_float),
            )
        )


def _deployment(rep: DesignReport, target: Any, budgets: dict[str, float | None], isolate: bool) -> None:
    from archlab.deploy import deploy_report

    rep.deploy = deploy_report(target, isolate=isolate, min_time_s=0.3, **budgets)
    if not isolate:
        rep.deploy.notes.append(
            "measured in the report's own process (isolate=False): RAM figures are lower bounds; "
            "`archlab deploy` measures each configuration in a fresh process"
        )


def _fmt_float(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else fmt_count(v)


def _step(rep: DesignReport, section: str, fn, *args: Any) -> None:
    """Run one section's gathering; a failure becomes the section's stated reason."""
    t0 = time.perf_counter()
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - a report states what it could not measure
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        log.warning("report: %s skipped: %s", section, reason)
        rep.skipped[section] = reason
    rep.timings_s[section] = round(time.perf_counter() - t0, 3)


# ------------------------------------------------------------------------------------ runs
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None


def _png(path: Path, fig_id: str, title: str) -> Figure:
    return Figure(fig_id, title, "image/png", base64.b64encode(path.read_bytes()).decode(), path.name)


def _run_files(rep: DesignReport, run_dir: Path, run_cfg: dict[str, Any]) -> None:
    from archlab.rundir import RunDir

    records = RunDir(run_dir).read_metrics()
    run: dict[str, Any] = {
        "path": str(run_dir),
        "data_config": run_cfg.get("data"),
        "task_config": run_cfg.get("task"),
        "train_config": run_cfg.get("train"),
        "data_info": _read_json(run_dir / "data_info.json") if (run_dir / "data_info.json").is_file() else None,
        "final_metrics": _read_json(run_dir / "final_metrics.json")
        if (run_dir / "final_metrics.json").is_file()
        else None,
        "n_records": len(records),
        "pictures": [],
        "texts": {},
    }
    if (run_dir / "curves.png").is_file():
        rep.add_figure(_png(run_dir / "curves.png", "curves", "Training curves"))
    for i, png in enumerate(sorted(p for p in run_dir.glob("*.png") if p.name != "curves.png")):
        fig_id = f"picture_{i}"
        rep.add_figure(_png(png, fig_id, png.stem.replace("_", " ")))
        run["pictures"].append(fig_id)
    for txt in sorted(run_dir.glob("*.txt")):
        text = txt.read_text(encoding="utf-8", errors="replace")
        run["texts"][txt.name] = text[:_TEXT_LIMIT] + ("\n..." if len(text) > _TEXT_LIMIT else "")
    rep.run = run


# ------------------------------------------------------------------------------------ compare
def _test_metric(metrics: dict[str, Any] | None) -> tuple[str, float] | None:
    if not isinstance(metrics, dict):
        return None
    flat = metrics.get("test") if isinstance(metrics.get("test"), dict) else metrics
    for k, v in flat.items():
        if (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and "loss" not in k
            and (k.startswith("test") or flat is not metrics)
        ):
            return k, float(v)
    for k, v in flat.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k.startswith("test"):
            return k, float(v)
    return None


def _comparison(rep: DesignReport, subjects: Sequence[Any], bench: bool) -> None:
    """Seed 004's figure: parameters on a log scale, beside FLOPs, memory, latency, test metric."""
    from archlab.analysis import summary
    from archlab.report.svg import bar_svg

    rows: list[dict[str, Any]] = []
    for subj in subjects:
        kind = _kind_of(subj)
        label = subj if isinstance(subj, str) else getattr(subj, "registry_name", None) or type(subj).__name__
        if kind == "run":
            label = f"{Path(str(subj)).name}"
        s = summary(subj, depth=0)
        row: dict[str, Any] = {
            "model": str(label),
            "architecture": s.model,
            "kind": kind,
            "params": s.total_params,
            "flops": s.flops,
            "param_bytes": s.param_bytes,
            "training_peak_bytes": s.memory.training_peak(),
            "latency_ms": None,
            "latency_note": "not measured (--no-bench)" if not bench else "",
            "test_metric": None,
            "test_metric_name": None,
        }
        if bench:
            try:
                from archlab.bench import benchmark

                b = benchmark(subj, batch_sizes=(1,), backends=("eager",), min_time_s=0.1, mfu=False)
                r = b.rows[0]
                row["latency_ms"] = r.p50_ms if r.ok else None
                row["latency_note"] = "" if r.ok else f"{r.status}: {r.reason}"
            except Exception as exc:  # noqa: BLE001
                row["latency_note"] = " ".join(str(exc).split())[:200]
        if kind == "run":
            tm = _test_metric(_read_json(Path(str(subj)) / "final_metrics.json"))
            if tm:
                row["test_metric_name"], row["test_metric"] = tm
        rows.append(row)
    rep.comparison = rows
    names = [r["model"] for r in rows]
    panels = [
        ("cmp_params", "Parameters (log scale)", [r["params"] for r in rows], fmt_count, True),
        ("cmp_flops", "FLOPs per forward", [r["flops"] for r in rows], fmt_count, None),
        ("cmp_memory", "Training memory peak", [r["training_peak_bytes"] for r in rows], fmt_bytes, None),
    ]
    if any(r["latency_ms"] is not None for r in rows):
        panels.append(
            ("cmp_latency", "Latency p50, batch 1 (ms)", [r["latency_ms"] or 0 for r in rows], _fmt_float, None)
        )
    if any(r["test_metric"] is not None for r in rows):
        metric = next(r["test_metric_name"] for r in rows if r["test_metric_name"])
        panels.append(
            ("cmp_metric", f"Test metric ({metric})", [r["test_metric"] or 0 for r in rows], _fmt_float, False)
        )
    for fig_id, title, values, fmt, log_scale in panels:
        # a model without the measurement (no test split, --no-bench) gets no bar rather than a 0
        shown = [(n, v) for n, v, r in zip(names, values, rows) if not _missing(fig_id, r)]
        labels, vals = [n for n, _ in shown], [v for _, v in shown]
        rep.add_figure(Figure(fig_id, title, "image/svg+xml", bar_svg(labels, vals, title, fmt=fmt, log=log_scale)))


def _missing(fig_id: str, row: dict[str, Any]) -> bool:
    key = {"cmp_latency": "latency_ms", "cmp_metric": "test_metric"}.get(fig_id)
    return key is not None and row[key] is None


# ------------------------------------------------------------------------------------ entry
def build_report(
    subject: nn.Module | str | os.PathLike,
    *,
    bench: bool = True,
    deploy: bool = True,
    compare: Sequence[nn.Module | str | os.PathLike] | None = None,
    latency_ms: float | None = None,
    memory_mb: float | None = None,
    size_mb: float | None = None,
    advisor: bool = True,
    depth: int = 3,
    isolate: bool = False,
) -> DesignReport:
    """Gather the design report of ``subject``.

    Args:
        subject: a registry name, an ``nn.Module``, a saved-model directory or a run directory.
        bench: measure latency and throughput (eager and onnxruntime, batch 1 and 8; ~5-20 s).
        deploy: measure the deployment requirements (export, int8, RAM, batch sweep; ~1 min).
        compare: other subjects shown beside this one (seed 004's comparison figure).
        latency_ms, memory_mb, size_mb: deployment budgets checked in section 6.
        advisor: for a run, ask the advisor where it ranks the run's model for the run's data.
        isolate: measure deployment in fresh processes (clean RAM figures; ~1 min instead of ~10 s).
        depth: deepest module level of the layer table.

    Returns:
        A :class:`DesignReport`; sections that could not be measured say why in ``skipped``.
    """
    from archlab.analysis import summary

    t_start = time.perf_counter()
    kind = _kind_of(subject)
    run_cfg = None
    if kind == "run":
        from archlab.rundir import RunDir

        run_cfg = RunDir(subject).read_config()
    module, why = _load_module(subject, kind, run_cfg)
    rep_notes = [why] if why else []
    name = _model_name(subject, kind, module, run_cfg)
    rep = DesignReport(
        title=f"Design report: {name}",
        subject=str(subject) if kind != "module" else f"<{type(subject).__name__} module>",
        kind=kind,
        model=name,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        notes=rep_notes,
    )
    # a name: the analysis layer builds it on meta itself; a run: its trained model
    target = subject if kind in ("registry", "module") or module is None else module
    _step(rep, "architecture", _architecture, rep, module, run_cfg if advisor else None)

    def _summary() -> None:
        rep.summary = summary(target, depth=depth)
        _parameters(rep)

    _step(rep, "layers", _summary)
    if rep.summary is None:
        rep.skipped["parameters"] = rep.skipped["layers"]
    _step(rep, "dataflow", _dataflow, rep, target)
    bench_target = module if kind == "saved" else subject
    if bench:
        _step(rep, "benchmarks", _benchmarks, rep, bench_target)
    else:
        rep.skipped["benchmarks"] = "not measured: the report was built with bench=False (--no-bench)"
    if deploy:
        budgets = {"latency_ms": latency_ms, "memory_mb": memory_mb, "size_mb": size_mb}
        _step(rep, "deployment", _deployment, rep, bench_target, budgets, isolate)
    else:
        rep.skipped["deployment"] = "not measured: the report was built with deploy=False (--no-bench / --no-deploy)"
    if kind == "run":
        _step(rep, "run", _run_files, rep, Path(subject), run_cfg or {})
    if compare:
        _step(rep, "comparison", _comparison, rep, [subject, *compare], bench)
        if rep.comparison is None:
            rep.comparison = []
    rep.timings_s["total"] = round(time.perf_counter() - t_start, 3)
    return rep
