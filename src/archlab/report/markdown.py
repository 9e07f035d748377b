"""The design report as Markdown, its figures written beside it in ``<name>_files/``.

The same sections and figures as the HTML (:mod:`archlab.report.html`), in GitHub-flavoured
Markdown: tables, fenced code, ``<details>`` for the module tree, relative image links.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archlab.io import atomic_write_bytes, atomic_write_text
from archlab.report.format import fmt_bytes, fmt_count, fmt_shapes

if TYPE_CHECKING:  # pragma: no cover
    from archlab.report.document import DesignReport


def _cell(v: object) -> str:
    return str(v).replace("|", "/").replace("\n", " ")


def _table(head: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out + [""]


def write_markdown(rep: DesignReport, out: str | Path) -> Path:
    """Write ``rep`` to ``out`` (.md) and its figures to ``<stem>_files/``; returns ``out``."""
    out = Path(out)
    files = out.parent / f"{out.stem}_files"
    links: dict[str, str] = {}
    for fid, fig in rep.figures.items():
        name = f"{fid}.{fig.ext}"
        atomic_write_bytes(files / name, fig.to_bytes())
        links[fid] = f"{files.name}/{name}"
    atomic_write_text(out, report_markdown(rep, links))
    return out


def report_markdown(rep: DesignReport, links: dict[str, str]) -> str:
    """The Markdown text; ``links`` maps figure ids to the relative paths they were written to."""
    page = _Page(rep, links)
    md = [
        f"# {rep.title}",
        "",
        f"Subject: `{rep.subject}` ({rep.kind}) · {rep.created} · archlab {rep.archlab_version}",
        "",
    ]
    md += [f"> {n}\n" for n in rep.notes]
    for section in (
        _choice,
        _comparison,
        _architecture,
        _parameters,
        _layers,
        _dataflow,
        _benchmarks,
        _deployment,
        _run,
    ):
        md += section(page)
    return "\n".join(md).rstrip() + "\n"


@dataclass
class _Page:
    """The report being written and where its figures went: what every section reads."""

    rep: DesignReport
    links: dict[str, str]

    def fig(self, fid: str) -> list[str]:
        """The figure's image link (nothing when the report has no such figure)."""
        f = self.rep.figures.get(fid)
        return [f"![{f.title}]({self.links[fid]})", ""] if f is not None and fid in self.links else []

    def title(self, sid: str) -> list[str]:
        return [f"## {self.rep.heading(sid)}", ""]

    def skipped(self, sid: str) -> list[str]:
        """Why (part of) a section is not shown, when it is not."""
        return [f"> Not shown: {self.rep.skipped[sid]}", ""] if sid in self.rep.skipped else []

    def heading(self, sid: str) -> list[str]:
        return self.title(sid) + self.skipped(sid)


def _choice(page: _Page) -> list[str]:
    """Why this model: a design directory's choice (:mod:`archlab.report.choice`)."""
    ch = page.rep.choice
    if ch is None:
        return []
    from archlab.report.choice import CHOICE_COLUMNS, choice_rows

    md = page.heading("choice")
    if ch.get("verdict"):
        md += [f"**{ch['verdict']}.**", ""]
    md += [f"**{ch['winner']}**: {ch['why']}. Compared on {ch['compared_on']}.", ""]
    if ch.get("winner_metrics"):
        then = ", ".join(f"{k} {v:.4g}" for k, v in ch["winner_metrics"].items())
        md += [f"Then trained for {ch['winner_steps']} steps: {then}.", ""]
    md += _table(CHOICE_COLUMNS, choice_rows(page.rep)) + [""] + page.fig("choice_pareto") + page.fig("choice_history")
    if ch.get("importances"):
        md += ["What mattered: " + ", ".join(f"{k} {v:.2f}" for k, v in ch["importances"].items()), ""]
    return md


def _comparison(page: _Page) -> list[str]:
    """The subjects side by side, and their bar charts."""
    if page.rep.comparison is None:
        return []
    md = page.heading("comparison")
    md += _table(
        ["Model", "Architecture", "Parameters", "FLOPs", "Training peak", "Latency p50 b=1 (ms)", "Test metric"],
        [
            [
                r["model"],
                r["architecture"],
                f"{r['params']:,}",
                fmt_count(r["flops"]),
                fmt_bytes(r["training_peak_bytes"]),
                f"{r['latency_ms']:.3g}" if r["latency_ms"] is not None else (r["latency_note"] or "n/a"),
                f"{r['test_metric_name']} {r['test_metric']:.4g}" if r["test_metric"] is not None else "",
            ]
            for r in page.rep.comparison
        ],
    )
    for fid in page.rep.figures:
        if fid.startswith("cmp_"):
            md += page.fig(fid)
    return md


def _architecture(page: _Page) -> list[str]:
    """The rationale (the advisor's ranking when there is one), the config and the module tree."""
    from archlab.report.html import _short

    rep = page.rep
    md = page.heading("architecture")
    rat = rep.rationale or {}
    for k in ("family", "description", "when_to_use", "modalities", "tasks", "rules_fired", "advisor_skipped"):
        if rat.get(k):
            md.append(f"- **{k.replace('_', ' ')}**: {_short(rat[k], 600)}")
    adv = rat.get("advisor")
    if adv:
        rank = f"#{adv['this_model_rank']}" if adv["this_model_rank"] else f"outside the top {len(adv['candidates'])}"
        md += ["", f"The advisor, asked about `{adv['data']}`, ranks this model {rank}:", ""]
        md += _table(
            ["Rank", "Model", "Score", "Why"],
            [[c["rank"], c["name"], c["score"], "; ".join(c["reasons"])[:300]] for c in adv["candidates"]],
        )
    md += ["", "```yaml", (rep.config_yaml or "# no typed config").rstrip(), "```", ""]
    md += ["<details><summary>Module tree</summary>", "", "```", rep.module_tree, "```", "", "</details>", ""]
    return md


def _parameters(page: _Page) -> list[str]:
    """Parameter totals, by top-level layer and by layer type."""
    md = page.heading("parameters")
    p = page.rep.params
    if not p:
        return md
    md += _table(
        ["", "Parameters"],
        [
            ["Total", f"{p['total']:,}"],
            ["Trainable", f"{p['trainable']:,}"],
            ["Frozen", f"{p['frozen']:,}"],
            ["Weights (fp32)", fmt_bytes(p["param_bytes"])],
        ],
    )
    md += _table(
        ["Layer", "Type", "Parameters", "Trainable", "Frozen", "Share"],
        [
            [d["name"], d["type"], f"{d['params']:,}", f"{d['trainable']:,}", f"{d['frozen']:,}", f"{d['share']:.1%}"]
            for d in p["by_layer"]
        ],
    )
    md += _table(["Type", "Modules", "Parameters"], [[d["type"], d["count"], f"{d['params']:,}"] for d in p["by_type"]])
    return md + page.fig("params_by_layer") + page.fig("params_by_type")


def _layers(page: _Page) -> list[str]:
    """The layer-by-layer table of the model summary."""
    from archlab.report.html import LAYER_COLUMNS, _cells

    md = page.heading("layers")
    s = page.rep.summary
    if s is None:
        return md
    md += [
        f"Input {fmt_shapes(s.input_shapes, 4)} -> output {fmt_shapes(s.output_shapes, 4)} at batch {s.batch_size}.",
        "",
    ]
    return md + _table(list(LAYER_COLUMNS), [["  " * r.depth + r.name, *_cells(r)] for r in s.rows])


def _dataflow(page: _Page) -> list[str]:
    return page.heading("dataflow") + page.fig("dataflow")


def _benchmarks(page: _Page) -> list[str]:
    md = page.heading("benchmarks")
    if page.rep.bench is None:
        return md
    from archlab.report.bench import bench_markdown

    return md + [bench_markdown(page.rep.bench)] + page.fig("bench_latency") + page.fig("bench_throughput")


def _deployment(page: _Page) -> list[str]:
    md = page.heading("deployment")
    if page.rep.deploy is None:
        return md
    from archlab.report.deploy import deploy_markdown

    # the deployment report's own headings sit under this section's
    return md + [deploy_markdown(page.rep.deploy).replace("\n# ", "\n### ").replace("\n## ", "\n### ")]


def _run(page: _Page) -> list[str]:
    """A training run's data, curves, final metrics (with the group's spread) and pictures."""
    run = page.rep.run
    if run is None:
        return []
    md = page.title("data") + page.skipped("run")
    md += [
        "```json",
        json.dumps({"data": run.get("data_config"), **(run.get("data_info") or {})}, indent=2, default=str)[:8000],
        "```",
        "",
    ]
    md += page.title("training") + (page.fig("curves") or ["No curves.png in the run directory.", ""])
    md += page.title("metrics")
    fm = run.get("final_metrics") or {}
    if fm:
        rows = [
            [k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in fm.items() if not isinstance(v, (dict, list))
        ]
        md += _table(["Metric", "Value"], rows)
    else:
        md += ["No final_metrics.json.", ""]
    if run.get("spread"):
        from archlab.report.spread import spread_markdown  # the CV / seed group's spread

        md += [spread_markdown(run["spread"])]
    md += page.title("pictures")
    for fid in run.get("pictures", []):
        md += page.fig(fid)
    for name, text in (run.get("texts") or {}).items():
        md += [f"### {name}", "", "```", text, "```", ""]
    if not run.get("pictures") and not run.get("texts"):
        md += ["The task drew no pictures for this run.", ""]
    return md
