"""The design report: six deliverables about one model, gathered into one document.

:func:`build_report` turns a subject (anything :func:`archlab.subject.resolve_subject` takes but
an export folder: a registry name, an ``nn.Module``, a saved-model, run or design directory) into a :class:`DesignReport`: plain data gathered from the layers
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
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from archlab.errors import ArchlabError, ConfigError
from archlab.report.report_data import (  # noqa: F401 - the section names are part of this module's API
    CHOICE_SECTION,
    COMPARE_SECTION,
    RUN_SECTIONS,
    SCHEMA_VERSION,
    SECTIONS,
    DesignReport,
    Figure,
    fmt_float,
    read_json,
)
from archlab.rundir import RunDir
from archlab.subject import Subject, resolve_subject

log = logging.getLogger(__name__)

#: text a task may leave in a run directory (generated samples) shown verbatim, at most this much
_TEXT_LIMIT = 4000


# ------------------------------------------------------------------------------------ subjects
@dataclass
class _Opened:
    """The report's subject, resolved, and the module it describes.

    Attributes:
        subject: the resolved subject (a design: its winner's run, ``subject.design`` set).
        module: the module described (None when it could not be built; ``why`` says why).
        run_cfg: a run's config.yaml, else None.
        why: a note on the weights (a fallback checkpoint, an untrained model), else None.
    """

    subject: Subject
    module: nn.Module | None
    run_cfg: dict[str, Any] | None
    why: str | None

    @property
    def kind(self) -> str:
        return "module" if self.subject.kind == "python" else self.subject.kind

    @property
    def given(self) -> Any:
        """What the layers below are given for this subject: the name, the module, the directory."""
        s = self.subject
        return s.name if s.kind == "registry" else s.module if s.module is not None else s.path

    @property
    def target(self) -> Any:
        """What the analysis layer describes: a name or a module as given (a name is built on meta
        there), else the loaded module (a run's trained weights), else the directory."""
        if self.kind in ("registry", "module") or self.module is None:
            return self.given
        return self.module

    @property
    def bench_target(self) -> Any:
        """What is measured: a saved model as loaded here, anything else as given (a run: with
        its data info)."""
        return self.module if self.kind == "saved" else self.given


def _open(value: Any) -> _Opened:
    """Resolve the subject (a run group: its first member) and load the module it describes."""
    from archlab.report.spread import member_subject  # a CV / seed group -> its first member

    subject = resolve_subject(member_subject(value), follow_design=True)
    if subject.kind == "export":
        raise ConfigError(
            f"{subject.given} is an export folder; a report's subject is a registry name, an nn.Module, "
            "a run, design or saved-model directory"
        )
    run_cfg = subject.run_config() if subject.kind == "run" else None
    module, why = _load_module(subject)
    return _Opened(subject, module, run_cfg, why)


def _load_module(subject: Subject) -> tuple[nn.Module | None, str | None]:
    """The module to describe (trained weights for a run), or None and why not."""
    from archlab import checkpoint
    from archlab.registry import create_from_config

    try:
        if subject.kind == "registry":
            # meta: the tree and config without allocating a large model's weights
            return subject.build("meta"), None
        if subject.kind != "run":
            return subject.load(), None
        weights = subject.final_weights_or_none()
        if weights is not None:  # a fallback (older weights than the run's result) is a note, with why
            return checkpoint.load(weights.path), weights.describe() if weights.is_fallback else None
        model_cfg = subject.run_config().get("model") or {}
        return create_from_config(model_cfg), "no finished checkpoint in the run: the untrained model is described"
    except ArchlabError as exc:
        return None, str(exc)


def _model_name(opened: _Opened) -> str:
    subject, module = opened.subject, opened.module
    if subject.kind == "registry":
        return str(subject.name)
    name = getattr(module, "registry_name", None) if module is not None else None
    if subject.kind == "run":
        name = name or ((opened.run_cfg or {}).get("model") or {}).get("name")
    return name or (type(module).__name__ if module is not None else Path(subject.given).name)


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
        from archlab.advise import recommend

        rec = recommend(data, task=task, top=5)
    except Exception as exc:  # the rationale is optional: say why it is missing
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

    rep.bench = benchmark(target, batch_sizes=(1, 8), backends=("eager", "onnxruntime"), min_time_s=0.3, isolate=False)
    _bench_figures(rep)


def _bench_figures(rep: DesignReport) -> None:
    """Latency and throughput bars of ``rep.bench`` (measured here, or a design's bench.json)."""
    from archlab.report.svg import bar_svg

    res = rep.bench
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
                bar_svg(labels, [r.p50_ms for r in ok], "p50 latency (ms)", fmt=fmt_float),
            )
        )
        rep.add_figure(
            Figure(
                "bench_throughput",
                "Throughput (samples/s)",
                "image/svg+xml",
                bar_svg(labels, [r.samples_per_s or 0 for r in ok], "samples / s", fmt=fmt_float),
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


def _step(rep: DesignReport, section: str, fn, *args: Any) -> None:
    """Run one section's gathering; a failure becomes the section's stated reason."""
    t0 = time.perf_counter()
    try:
        fn(*args)
    except Exception as exc:  # a report states what it could not measure
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        log.warning("report: %s skipped: %s", section, reason)
        rep.skipped[section] = reason
    rep.timings_s[section] = round(time.perf_counter() - t0, 3)


# ------------------------------------------------------------------------------------ runs
def _png(path: Path, fig_id: str, title: str) -> Figure:
    return Figure(fig_id, title, "image/png", base64.b64encode(path.read_bytes()).decode(), path.name)


def _run_files(rep: DesignReport, run_dir: Path, run_cfg: dict[str, Any]) -> None:

    records = RunDir(run_dir).read_metrics()
    run: dict[str, Any] = {
        "path": str(run_dir),
        "data_config": run_cfg.get("data"),
        "task_config": run_cfg.get("task"),
        "train_config": run_cfg.get("train"),
        "data_info": read_json(run_dir / RunDir.DATA_INFO) if (run_dir / RunDir.DATA_INFO).is_file() else None,
        "final_metrics": read_json(run_dir / RunDir.FINAL_METRICS)
        if (run_dir / RunDir.FINAL_METRICS).is_file()
        else None,
        "n_records": len(records),
        "pictures": [],
        "texts": {},
    }
    if (run_dir / RunDir.CURVES).is_file():
        rep.add_figure(_png(run_dir / RunDir.CURVES, "curves", "Training curves"))
    for i, png in enumerate(sorted(p for p in run_dir.glob("*.png") if p.name != RunDir.CURVES)):
        fig_id = f"picture_{i}"
        rep.add_figure(_png(png, fig_id, png.stem.replace("_", " ")))
        run["pictures"].append(fig_id)
    for txt in sorted(run_dir.glob("*.txt")):
        text = txt.read_text(encoding="utf-8", errors="replace")
        run["texts"][txt.name] = text[:_TEXT_LIMIT] + ("\n..." if len(text) > _TEXT_LIMIT else "")
    from archlab.report.spread import group_spread  # mean ± std over the run's CV / seed group

    spread = group_spread(run_dir)
    run["spread"] = spread.to_dict() if spread is not None else None
    rep.run = run


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
        subject: a registry name, an ``nn.Module``, a saved-model directory, a run directory or a
            design directory (``archlab design``: the winner's run plus "Why this model").
        bench: measure latency and throughput (eager and onnxruntime, batch 1 and 8; ~5-20 s).
        deploy: measure the deployment requirements (export, int8, RAM, batch sweep; ~1 min).
        compare: other subjects shown beside this one (the comparison figure).
        latency_ms, memory_mb, size_mb: deployment budgets checked in section 6.
        advisor: for a run, ask the advisor where it ranks the run's model for the run's data.
        isolate: measure deployment in fresh processes (clean RAM figures; ~1 min instead of ~10 s).
        depth: deepest module level of the layer table.

    Returns:
        A :class:`DesignReport`; sections that could not be measured say why in ``skipped``.
    """
    t_start = time.perf_counter()
    opened = _open(subject)
    rep = _new_report(opened)
    _describe(rep, opened, depth, advisor)
    _measure(
        rep, opened, bench, deploy, {"latency_ms": latency_ms, "memory_mb": memory_mb, "size_mb": size_mb}, isolate
    )
    if opened.kind == "run":
        _step(rep, "run", _run_files, rep, opened.subject.path, opened.run_cfg or {})
    if compare:
        from archlab.report.compare_subjects import comparison

        _step(rep, "comparison", comparison, rep, [opened.given, *compare], bench)
        if rep.comparison is None:
            rep.comparison = []
    rep.timings_s["total"] = round(time.perf_counter() - t_start, 3)
    return rep


def _new_report(opened: _Opened) -> DesignReport:
    """The report's header: title, subject, kind, model name, and the note on its weights."""
    name = _model_name(opened)
    return DesignReport(
        title=f"Design report: {name}",
        subject=opened.subject.given,
        kind=opened.kind,
        model=name,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        notes=[opened.why] if opened.why else [],
    )


def _describe(rep: DesignReport, opened: _Opened, depth: int, advisor: bool) -> None:
    """Sections 1-3: architecture (and a design's choice), the layer table, the data flow."""
    from archlab.analysis import summary

    design_dir = opened.subject.design
    _step(
        rep, "architecture", _architecture, rep, opened.module, opened.run_cfg if advisor and not design_dir else None
    )
    if design_dir is not None:  # the winner's run, plus why it was chosen (report/choice.py)
        from archlab.report.choice import design_choice, saved_bench

        rep.subject, rep.kind = str(design_dir), "design"
        rep.title = f"{rep.title} (chosen by archlab design)"
        _step(rep, "choice", design_choice, rep, design_dir)
        rep.bench = saved_bench(design_dir)

    def _summary() -> None:
        rep.summary = summary(opened.target, depth=depth)
        _parameters(rep)

    _step(rep, "layers", _summary)
    if rep.summary is None:
        rep.skipped["parameters"] = rep.skipped["layers"]
    _step(rep, "dataflow", _dataflow, rep, opened.target)


def _measure(
    rep: DesignReport, opened: _Opened, bench: bool, deploy: bool, budgets: dict[str, float | None], isolate: bool
) -> None:
    """Sections 4-5: benchmarks (a design's own, or measured here) and deployment requirements."""
    if rep.bench is not None:
        rep.notes.append("benchmarks: as measured by the design's benchmark step (bench.json)")
        _bench_figures(rep)
    elif bench:
        _step(rep, "benchmarks", _benchmarks, rep, opened.bench_target)
    else:
        rep.skipped["benchmarks"] = "not measured: the report was built with bench=False (--no-bench)"
    if deploy:
        _step(rep, "deployment", _deployment, rep, opened.bench_target, budgets, isolate)
    else:
        rep.skipped["deployment"] = "not measured: the report was built with deploy=False (--no-bench / --no-deploy)"
