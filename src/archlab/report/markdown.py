"""The design report as Markdown, its figures written beside it in ``<name>_files/``.

The same sections and figures as the HTML (:mod:`archlab.report.html`), in GitHub-flavoured
Markdown: tables, fenced code, ``<details>`` for the module tree, relative image links.
"""

from __future__ import annotations

import json
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
    from archlab.report.html import LAYER_COLUMNS, _cells, _short

    def fig(fid: str) -> list[str]:
        f = rep.figures.get(fid)
        return [f"![{f.title}]({links[fid]})", ""] if f is not None and fid in links else []

    def skipped(sid: str) -> list[str]:
        return [f"> Not shown: {rep.skipped[sid]}", ""] if sid in rep.skipped else []

    md = [
        f"# {rep.title}",
        "",
        f"Subject: `{rep.subject}` ({rep.kind}) · {rep.created} · archlab {rep.archlab_version}",
        "",
    ]
    md += [f"> {n}\n" for n in rep.notes]
    if rep.choice is not None:  # a design directory (report/choice.py)
        from archlab.report.choice import CHOICE_COLUMNS, choice_rows

        ch = rep.choice
        md += [f"## {rep.heading('choice')}", ""] + skipped("choice")
        if ch.get("verdict"):
            md += [f"**{ch['verdict']}.**", ""]
        md += [f"**{ch['winner']}**: {ch['why']}. Compared on {ch['compared_on']}.", ""]
        if ch.get("winner_metrics"):
            then = ", ".join(f"{k} {v:.4g}" for k, v in ch["winner_metrics"].items())
            md += [f"Then trained for {ch['winner_steps']} steps: {then}.", ""]
        md += _table(CHOICE_COLUMNS, choice_rows(rep)) + [""] + fig("choice_pareto") + fig("choice_history")
        if ch.get("importances"):
            md += ["What mattered: " + ", ".join(f"{k} {v:.2f}" for k, v in ch["importances"].items()), ""]
    if rep.comparison is not None:
        md += [f"## {rep.heading('comparison')}", ""] + skipped("comparison")
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
                for r in rep.comparison
            ],
        )
        for fid in rep.figures:
            if fid.startswith("cmp_"):
                md += fig(fid)

    md += [f"## {rep.heading('architecture')}", ""] + skipped("architecture")
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

    md += [f"## {rep.heading('parameters')}", ""] + skipped("parameters")
    p = rep.params
    if p:
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
                [
                    d["name"],
                    d["type"],
                    f"{d['params']:,}",
                    f"{d['trainable']:,}",
                    f"{d['frozen']:,}",
                    f"{d['share']:.1%}",
                ]
                for d in p["by_layer"]
            ],
        )
        md += _table(
            ["Type", "Modules", "Parameters"], [[d["type"], d["count"], f"{d['params']:,}"] for d in p["by_type"]]
        )
        md += fig("params_by_layer") + fig("params_by_type")

    md += [f"## {rep.heading('layers')}", ""] + skipped("layers")
    if rep.summary is not None:
        s = rep.summary
        md += [
            f"Input {fmt_shapes(s.input_shapes, 4)} -> output {fmt_shapes(s.output_shapes, 4)} at batch {s.batch_size}.",
            "",
        ]
        md += _table(
            list(LAYER_COLUMNS), [["  " * r.depth + (r.name if r.depth else r.name), *_cells(r)] for r in s.rows]
        )

    md += [f"## {rep.heading('dataflow')}", ""] + skipped("dataflow") + fig("dataflow")

    md += [f"## {rep.heading('benchmarks')}", ""] + skipped("benchmarks")
    if rep.bench is not None:
        from archlab.report.bench import bench_markdown

        md += [bench_markdown(rep.bench)] + fig("bench_latency") + fig("bench_throughput")

    md += [f"## {rep.heading('deployment')}", ""] + skipped("deployment")
    if rep.deploy is not None:
        from archlab.report.deploy import deploy_markdown

        md += [deploy_markdown(rep.deploy).replace("\n# ", "\n### ").replace("\n## ", "\n### ")]

    if rep.run is not None:
        run = rep.run
        md += [f"## {rep.heading('data')}", ""] + skipped("run")
        md += [
            "```json",
            json.dumps({"data": run.get("data_config"), **(run.get("data_info") or {})}, indent=2, default=str)[:8000],
            "```",
            "",
        ]
        md += [f"## {rep.heading('training')}", ""] + (fig("curves") or ["No curves.png in the run directory.", ""])
        md += [f"## {rep.heading('metrics')}", ""]
        fm = run.get("final_metrics") or {}
        md += (
            _table(
                ["Metric", "Value"],
                [
                    [k, f"{v:.4g}" if isinstance(v, float) else v]
                    for k, v in fm.items()
                    if not isinstance(v, (dict, list))
                ],
            )
            if fm
            else ["No final_metrics.json.", ""]
        )
        from archlab.report.spread import spread_markdown  # the CV / seed group's spread

        md += [spread_markdown(run.get("spread"))] if run.get("spread") else []
        md += [f"## {rep.heading('pictures')}", ""]
        for fid in run.get("pictures", []):
            md += fig(fid)
        for name, text in (run.get("texts") or {}).items():
            md += [f"### {name}", "", "```", text, "```", ""]
        if not run.get("pictures") and not run.get("texts"):
            md += ["The task drew no pictures for this run.", ""]
    return "\n".join(md).rstrip() + "\n"
