"""The design report: six deliverables about one model, gathered into one document.

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
import logging
import os
import time
from collections.abc import Sequence
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
    kind_of,
    read_json,
)

log = logging.getLogger(__name__)

#: text a task may leave in a run directory (generated samples) shown verbatim, at most this much
_TEXT_LIMIT = 4000


# ------------------------------------------------------------------------------------ subjects
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
        from archlab.rundir import final_weights

        weights = final_weights(Path(subject), run_cfg or {})
        if weights is not None:  # a fallback (older weights than the run's result) is a note, with why
            return checkpoint.load(weights.path), weights.describe() if weights.is_fallback else None
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
    from archlab.rundir import RunDir

    records = RunDir(run_dir).read_metrics()
    run: dict[str, Any] = {
        "path": str(run_dir),
        "data_config": run_cfg.get("data"),
        "task_config": run_cfg.get("task"),
        "train_config": run_cfg.get("train"),
        "data_info": read_json(run_dir / "data_info.json") if (run_dir / "data_info.json").is_file() else None,
        "final_metrics": read_json(run_dir / "final_metrics.json")
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
    from archlab.analysis import summary

    t_start = time.perf_counter()
    from archlab.report.spread import member_subject  # a CV / seed group -> its first member

    subject = member_subject(subject)
    kind = kind_of(subject)
    design_dir = None
    if kind == "design":  # the winner's run, plus why it was chosen (report/choice.py)
        design_dir, subject, kind = Path(subject), Path(subject) / "winner", "run"
        if not (subject / "config.yaml").is_file():
            raise ConfigError(
                f"design {design_dir} has no trained winner yet; finish it: archlab design --resume {design_dir}"
            )
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
    _step(rep, "architecture", _architecture, rep, module, run_cfg if advisor and design_dir is None else None)
    if design_dir is not None:
        from archlab.report.choice import design_choice, saved_bench

        rep.subject, rep.kind = str(design_dir), "design"
        rep.title = f"Design report: {name} (chosen by archlab design)"
        _step(rep, "choice", design_choice, rep, design_dir)
        rep.bench = saved_bench(design_dir)

    def _summary() -> None:
        rep.summary = summary(target, depth=depth)
        _parameters(rep)

    _step(rep, "layers", _summary)
    if rep.summary is None:
        rep.skipped["parameters"] = rep.skipped["layers"]
    _step(rep, "dataflow", _dataflow, rep, target)
    bench_target = module if kind == "saved" else subject
    if rep.bench is not None:
        rep.notes.append("benchmarks: as measured by the design's benchmark step (bench.json)")
        _bench_figures(rep)
    elif bench:
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
        from archlab.report.compare_subjects import comparison

        _step(rep, "comparison", comparison, rep, [subject, *compare], bench)
        if rep.comparison is None:
            rep.comparison = []
    rep.timings_s["total"] = round(time.perf_counter() - t_start, 3)
    return rep
