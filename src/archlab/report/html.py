"""The design report as one self-contained HTML file (its bar charts are :mod:`archlab.report.svg`).

Everything is inline: CSS, SVG figures, PNGs as ``data:`` URIs; nothing is fetched, no
JavaScript is needed to read it (collapsing is ``<details>``). Wide tables and the diagram sit in
``.scroll`` boxes so the page never scrolls sideways; ``@media print`` opens every ``<details>``
block's content, drops the navigation and avoids breaking figures across pages.

The one ``<script>`` (in ``<head>``, so that it counts every later error) only measures, for
the browser test (``tests/test_report_browser.py``): on load it writes the page's scroll width,
the diagram's rendered width, the count of script errors and of sections with no rendered box
into ``<html data-measure="...">``, where ``chromium --dump-dom`` shows them. It leaves the
title alone: a reader's tab says what the report is about.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from archlab.errors import require
from archlab.report.format import fmt_bytes, fmt_count, fmt_shapes

if TYPE_CHECKING:  # pragma: no cover
    from archlab.report.document import DesignReport


# ------------------------------------------------------------------------------------ helpers
def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "n/a" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _short(v: Any, limit: int = 160) -> str:
    if isinstance(v, (list, tuple)):
        text = ", ".join(_short(x, 40) for x in v[:12]) + (f", ... ({len(v)} in all)" if len(v) > 12 else "")
        return "[" + text + "]"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_short(x, 60)}" for k, x in v.items())[:limit]
    text = _num(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _layer_blocks(rep: DesignReport) -> tuple[Any, list[dict[str, Any]]]:
    """The model's own row, and one block per top-level child with the rows beneath it."""
    rows = rep.summary.rows
    root = next((r for r in rows if r.depth == 0), None)
    blocks: list[dict[str, Any]] = []
    for r in rows:
        if r.depth == 1:
            blocks.append({"row": r, "children": []})
        elif r.depth > 1 and blocks:
            blocks[-1]["children"].append(r)
    return root, blocks


def _cells(r: Any) -> list[str]:
    return [
        r.type,
        fmt_shapes(r.input_shapes),
        fmt_shapes(r.output_shapes),
        fmt_count(r.params),
        fmt_count(r.trainable_params),
        fmt_count(r.flops) + (" +?" if r.uncounted else ""),
        fmt_count(r.macs),
        fmt_bytes(r.output_bytes),
        fmt_bytes(r.saved_bytes),
    ]


LAYER_COLUMNS = (
    "Layer",
    "Type",
    "Input",
    "Output",
    "Params",
    "Trainable",
    "FLOPs",
    "MACs",
    "Output mem",
    "Saved for bwd",
)


def _bench_table(rep: DesignReport) -> tuple[str, list[str], list[list[str]]]:
    from archlab.report.bench import _COLS, _caption, bench_cells

    res = rep.bench
    return _caption(res), list(_COLS), bench_cells(res)


def _deploy_tables(rep: DesignReport) -> list[tuple[str, list[tuple[str, str]]]]:
    from archlab.report.deploy import _sections

    return _sections(rep.deploy)


def _inline_svg(svg: str) -> str:
    """SVG markup fit to sit inside HTML: no XML declaration or DOCTYPE."""
    text = svg.strip()
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2 :].lstrip()
    if text.startswith("<!DOCTYPE"):
        text = text[text.index(">") + 1 :].lstrip()
    return text


def _figure(rep: DesignReport, fig_id: str) -> str:
    """One figure as HTML: SVG inline, PNG as a data URI; '' when the report has no such figure."""
    fig = rep.figures.get(fig_id)
    if fig is None:
        return ""
    body = _inline_svg(fig.data) if fig.ext == "svg" else f'<img src="{fig.data_uri()}" alt="{escape(fig.title)}">'
    cap = escape(fig.title + (f": {fig.caption}" if fig.caption else ""))
    return f'<figure id="fig-{escape(fig.id)}"><div class="scroll">{body}</div><figcaption>{cap}</figcaption></figure>'


_CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d232b;margin:0;background:#fafbfc}
main{max-width:1120px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:1.7em;margin:.2em 0}h2{font-size:1.3em;border-bottom:2px solid #e3e8ef;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.3em 0 .4em}
.meta{color:#5b6573;font-size:.9em}
nav ol{columns:2;padding-left:1.4em;margin:.6em 0}nav a{color:#1f5fa8;text-decoration:none}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.86em;margin:.4em 0 1em}
th,td{border:1px solid #dde3ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f4f8;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:600;background:#f7f9fb}
pre{background:#f5f7f9;border:1px solid #e3e8ef;padding:10px;font-size:.82em;white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%}
details{margin:.3em 0;border:1px solid #e3e8ef;border-radius:4px;padding:.2em .6em}
details>summary{cursor:pointer;font-weight:600;padding:.2em 0}
details .scroll table{margin-top:.3em}
svg,img{max-width:100%;height:auto}
figure{margin:.8em 0;break-inside:avoid}figcaption{color:#5b6573;font-size:.85em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:12px}
@media (max-width:700px){.grid{grid-template-columns:1fr}}
.skip{background:#fff7e6;border-left:4px solid #f0a020;padding:6px 10px;overflow-wrap:anywhere}
.pass{color:#17803d;font-weight:600}.fail{color:#b42318;font-weight:600}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:.4em 0}
dl.kv dt{font-weight:600;color:#3b4450}dl.kv dd{margin:0;overflow-wrap:anywhere}
footer{margin-top:3em;color:#5b6573;font-size:.8em}
@media print{
 body{background:#fff;font-size:11pt}main{max-width:none;padding:0}nav{display:none}
 details{border:none;padding:0}details>summary{list-style:none}
 .scroll{overflow:visible}section{break-before:auto}h2{break-after:avoid}
 table{font-size:8pt}pre{font-size:8pt}
}
"""

# Measures only; the report reads the same without it (see the module docstring).
_MEASURE_JS = """
(function(){var errors=0;
window.addEventListener('error',function(){errors++;},true);
var ce=console.error;console.error=function(){errors++;return ce.apply(console,arguments);};
window.addEventListener('load',function(){
 var d=document.querySelector('#dataflow svg');var w=d?Math.round(d.getBoundingClientRect().width):0;
 var secs=document.querySelectorAll('section'),hidden=0;
 for(var i=0;i<secs.length;i++){var r=secs[i].getBoundingClientRect();if(!(r.width>0&&r.height>0))hidden++;}
 document.documentElement.setAttribute('data-measure','report-ok sw='+document.documentElement.scrollWidth+
  ' dw='+w+' errors='+errors+' sections='+secs.length+' hidden='+hidden);});})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="archlab {{ rep.archlab_version }}">
<title>{{ rep.title }}</title>
<style>{{ css }}</style>
<script>{{ js }}</script>
</head>
<body>
<main>
<header>
<h1>{{ rep.title }}</h1>
<p class="meta">Subject: <code>{{ rep.subject }}</code> ({{ rep.kind }}) &middot; {{ rep.created }} &middot; archlab {{ rep.archlab_version }}</p>
<nav><ol>{% for sid in rep.section_ids %}<li><a href="#{{ sid }}">{{ rep.heading(sid) }}</a></li>{% endfor %}</ol></nav>
{% for n in rep.notes %}<p class="skip">{{ n }}</p>{% endfor %}
</header>

{% macro skipped(sid) %}{% if sid in rep.skipped %}<p class="skip">Not shown: {{ rep.skipped[sid] }}</p>{% endif %}{% endmacro %}
{% macro table(head, rows, numeric_from=99) %}<div class="scroll"><table><thead><tr>{% for h in head %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for r in rows %}<tr>{% for c in r %}<td{% if loop.index0 >= numeric_from %} class="n"{% endif %}>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>{% endmacro %}

{% if rep.choice is not none %}{% set ch = rep.choice %}
<section id="choice"><h2>{{ rep.heading('choice') }}</h2>
{{ skipped('choice') }}
{% if ch.verdict %}<p><strong>{{ ch.verdict }}.</strong></p>{% endif %}
<p><strong>{{ ch.winner }}</strong>: {{ ch.why }}. Compared on {{ ch.compared_on }}; budgets {{ short(ch.budgets) }}; training time {{ '%.0f'|format(ch.spent_s or 0) }} s of a {{ '%.0f'|format(ch.budget_s or 0) }} s budget.</p>
{% if ch.winner_metrics %}<p>Then trained for {{ ch.winner_steps }} steps: {% for k, v in ch.winner_metrics.items() %}{{ k }} {{ '%.4g'|format(v) }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}
{{ table(choice_cols, choice_rows, 2) }}
{{ figure('choice_pareto') }}
{{ figure('choice_history') }}
{% if ch.importances %}<p>What mattered (Optuna's parameter importances): {% for k, v in ch.importances.items() %}{{ k }} {{ '%.2f'|format(v) }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}
{% if ch.export %}<p>Export: <code>{{ ch.export.file }}</code>, {{ ch.export.size_bytes }} bytes, parity with eager {% if ch.export.parity_ok %}<span class="pass">passed</span>{% else %}<span class="fail">failed</span>{% endif %} (max abs diff {{ ch.export.max_abs_diff }}).</p>{% endif %}
<details><summary>Design steps</summary>{{ table(['Step', 'State', 'Seconds', 'Error'], choice_steps, 2) }}</details>
</section>
{% endif %}

{% if rep.comparison is not none %}
<section id="comparison"><h2>{{ rep.heading('comparison') }}</h2>
{{ skipped('comparison') }}
{{ table(['Model', 'Architecture', 'Kind', 'Parameters', 'FLOPs / forward', 'Parameter memory', 'Training peak', 'Latency p50 b=1 (ms)', 'Test metric'], cmp_rows, 3) }}
<div class="grid">{% for f in cmp_figs %}{{ figure(f) }}{% endfor %}</div>
</section>
{% endif %}

<section id="architecture"><h2>{{ rep.heading('architecture') }}</h2>
{{ skipped('architecture') }}
<h3>Rationale</h3>
{% if rep.rationale %}<dl class="kv">
{% for k in ['family', 'description', 'when_to_use', 'modalities', 'tasks', 'rules_fired', 'advisor_skipped'] %}{% if rep.rationale.get(k) %}<dt>{{ k.replace('_', ' ') }}</dt><dd>{{ short(rep.rationale[k], 600) }}</dd>{% endif %}{% endfor %}
</dl>
{% if rep.rationale.advisor %}{% set adv = rep.rationale.advisor %}
<p>The advisor, asked about <code>{{ adv.data }}</code>{% if adv.task %} ({{ adv.task }}){% endif %}, ranks this model
{% if adv.this_model_rank %}<strong>#{{ adv.this_model_rank }}</strong>{% else %}outside its top {{ adv.candidates|length }}{% endif %}:</p>
{{ table(['Rank', 'Model', 'Score', 'Why', 'Trade-offs'], adv_rows) }}
{% for w in adv.warnings %}<p class="skip">{{ w }}</p>{% endfor %}
{% endif %}
{% else %}<p>No rationale recorded: the model is not from the archlab registry.</p>{% endif %}
<h3>Configuration</h3>
{% if rep.config_yaml %}<pre>{{ rep.config_yaml }}</pre>{% else %}<p>The model has no typed config.</p>{% endif %}
<details><summary>Module tree</summary><pre>{{ rep.module_tree }}</pre></details>
</section>

<section id="parameters"><h2>{{ rep.heading('parameters') }}</h2>
{{ skipped('parameters') }}
{% if rep.params %}
{{ table(['', 'Parameters', 'Share'], param_totals, 1) }}
<div class="grid">{{ figure('params_by_layer') }}{{ figure('params_by_type') }}</div>
<h3>By top-level layer</h3>
{{ table(['Layer', 'Type', 'Parameters', 'Trainable', 'Frozen', 'Share'], layer_param_rows, 2) }}
<h3>By layer type (each module's own parameters)</h3>
{{ table(['Type', 'Modules', 'Parameters'], type_param_rows, 1) }}
{% endif %}
</section>

<section id="layers"><h2>{{ rep.heading('layers') }}</h2>
{{ skipped('layers') }}
{% if rep.summary %}
<p>Input {{ in_shapes }} &rarr; output {{ out_shapes }} at batch {{ rep.summary.batch_size }}. FLOPs count a multiply-add as 2; "+?" marks ops that were not counted.</p>
{% if root %}{{ table(cols, [[root.name] + cells(root)], 4) }}{% endif %}
{% for b in blocks %}
<details{% if blocks|length <= 4 %} open{% endif %}><summary>{{ b.row.name }} &middot; {{ b.row.type }} &middot; {{ count(b.row.params) }} params &middot; {{ count(b.row.flops) }} FLOPs</summary>
{{ table(cols, [[b.row.name] + cells(b.row)] + block_rows(b.children, b.row.name), 4) }}
</details>
{% endfor %}
<h3>Memory</h3>
{{ table(['', 'Value'], totals_rows, 1) }}
{% for n in rep.summary.notes %}<p class="skip">{{ n }}</p>{% endfor %}
{% endif %}
</section>

<section id="dataflow"><h2>{{ rep.heading('dataflow') }}</h2>
{{ skipped('dataflow') }}
{{ figure('dataflow') }}
</section>

<section id="benchmarks"><h2>{{ rep.heading('benchmarks') }}</h2>
{{ skipped('benchmarks') }}
{% if rep.bench %}
<p class="meta">{{ bench_caption }}</p>
{{ table(bench_cols, bench_rows, 2) }}
{% for r in rep.bench.rows if not r.ok %}<p class="skip">{{ r.backend }} at batch {{ r.batch_size }}: {{ r.status }} &mdash; {{ r.reason }}</p>{% endfor %}
<div class="grid">{{ figure('bench_latency') }}{{ figure('bench_throughput') }}</div>
{% endif %}
</section>

<section id="deployment"><h2>{{ rep.heading('deployment') }}</h2>
{{ skipped('deployment') }}
{% if rep.deploy %}
<p>Overall: {% if rep.deploy.passed %}<span class="pass">budgets met</span>{% else %}<span class="fail">a budget is not met</span>{% endif %}</p>
<div class="grid">{% for title, rows in deploy_tables %}<div><h3>{{ title }}</h3>
<div class="scroll"><table><tbody>{% for k, v in rows %}<tr><th>{{ k }}</th><td{% if v.startswith('PASS') %} class="pass"{% elif v.startswith('FAIL') %} class="fail"{% endif %}>{{ v }}</td></tr>{% endfor %}</tbody></table></div></div>{% endfor %}</div>
{% for n in rep.deploy.notes %}<p class="skip">{{ n }}</p>{% endfor %}
{% endif %}
</section>

{% if rep.run is not none %}{% set run = rep.run %}
<section id="data"><h2>{{ rep.heading('data') }}</h2>
{{ skipped('run') }}
<dl class="kv">
<dt>dataset</dt><dd>{{ short(run.data_config) }}</dd>
{% for k, v in data_rows %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}
</dl>
{% if run.data_info %}<details><summary>data_info.json</summary><pre>{{ data_info_json }}</pre></details>{% endif %}
</section>
<section id="training"><h2>{{ rep.heading('training') }}</h2>
<p>{{ run.n_records }} metric records in <code>metrics.jsonl</code>. Task: {{ short(run.task_config) }}.</p>
{{ figure('curves') or '<p class="skip">No curves.png in the run directory.</p>'|safe }}
<details><summary>Training configuration</summary><pre>{{ train_yaml }}</pre></details>
</section>
<section id="metrics"><h2>{{ rep.heading('metrics') }}</h2>
{% if metric_rows %}{{ table(['Metric', 'Value'], metric_rows, 1) }}{% else %}<p class="skip">No final_metrics.json: the run did not finish.</p>{% endif %}
{{ spread_html }}
</section>
<section id="pictures"><h2>{{ rep.heading('pictures') }}</h2>
{% if not run.pictures and not run.texts %}<p>The task drew no pictures for this run.</p>{% endif %}
<div class="grid">{% for f in run.pictures %}{{ figure(f) }}{% endfor %}</div>
{% for name, text in run.texts.items() %}<h3>{{ name }}</h3><pre>{{ text }}</pre>{% endfor %}
</section>
{% endif %}

<footer>Gathered in {{ '%.1f'|format(rep.timings_s.get('total', 0)) }} s ({{ timings }}). Self-contained: no network, no scripts needed to read it.</footer>
</main>
</body>
</html>
"""


def report_html(rep: DesignReport) -> str:
    """The report as one self-contained HTML page."""
    jinja2 = require("jinja2", "viz", "HTML reports")
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    from markupsafe import Markup as markup  # jinja2's own dependency

    tmpl = env.from_string(_TEMPLATE)
    ctx: dict[str, Any] = {
        "rep": rep,
        "css": markup(_CSS),
        "js": markup(_MEASURE_JS),
        "figure": lambda fid: markup(_figure(rep, fid)),
        "short": _short,
        "count": fmt_count,
        "cells": _cells,
        "cols": LAYER_COLUMNS,
        # rows under a block are named relative to it ("0.1" under "features"), indented by depth
        "block_rows": lambda rows, top: [
            ["\u2003" * (r.depth - 1) + r.name.removeprefix(top + ".")] + _cells(r) for r in rows
        ],
        "timings": ", ".join(f"{k} {v:.1f} s" for k, v in rep.timings_s.items() if k != "total"),
    }
    p = rep.params
    if p:
        total = p["total"] or 1
        ctx["param_totals"] = [
            ["Total", f"{p['total']:,}", "100%"],
            ["Trainable", f"{p['trainable']:,}", f"{p['trainable'] / total:.1%}"],
            ["Frozen", f"{p['frozen']:,}", f"{p['frozen'] / total:.1%}"],
            ["Weights (fp32)", fmt_bytes(p["param_bytes"]), ""],
        ]
        ctx["layer_param_rows"] = [
            [d["name"], d["type"], f"{d['params']:,}", f"{d['trainable']:,}", f"{d['frozen']:,}", f"{d['share']:.1%}"]
            for d in p["by_layer"]
        ]
        ctx["type_param_rows"] = [[d["type"], d["count"], f"{d['params']:,}"] for d in p["by_type"]]
    if rep.summary is not None:
        from archlab.report.summary import _totals

        s = rep.summary
        ctx["root"], ctx["blocks"] = _layer_blocks(rep)
        ctx["in_shapes"] = fmt_shapes(s.input_shapes, 4)
        ctx["out_shapes"] = fmt_shapes(s.output_shapes, 4)
        ctx["totals_rows"] = [list(t) for t in _totals(s)]
    adv = (rep.rationale or {}).get("advisor")
    if adv:
        ctx["adv_rows"] = [
            [c["rank"], c["name"], c["score"], "; ".join(c["reasons"])[:300], c["tradeoffs"]] for c in adv["candidates"]
        ]
    if rep.bench is not None:
        ctx["bench_caption"], ctx["bench_cols"], ctx["bench_rows"] = _bench_table(rep)
    if rep.deploy is not None:
        ctx["deploy_tables"] = _deploy_tables(rep)
    if rep.run is not None:
        _run_context(rep, ctx)
    if rep.choice is not None:  # a design directory (report/choice.py)
        from archlab.report.choice import CHOICE_COLUMNS, choice_rows

        ctx["choice_cols"], ctx["choice_rows"] = CHOICE_COLUMNS, choice_rows(rep)
        ctx["choice_steps"] = [
            [k, v["state"], v["elapsed_s"], v["error"] or ""] for k, v in rep.choice["steps"].items()
        ]
    if rep.comparison is not None:
        ctx["cmp_rows"] = [
            [
                r["model"],
                r["architecture"],
                r["kind"],
                f"{r['params']:,}",
                fmt_count(r["flops"]),
                fmt_bytes(r["param_bytes"]),
                fmt_bytes(r["training_peak_bytes"]),
                f"{r['latency_ms']:.3g}" if r["latency_ms"] is not None else (r["latency_note"] or "n/a"),
                f"{r['test_metric_name']} {r['test_metric']:.4g}" if r["test_metric"] is not None else "",
            ]
            for r in rep.comparison
        ]
        ctx["cmp_figs"] = [f for f in rep.figures if f.startswith("cmp_")]
    return tmpl.render(**ctx)


def _run_context(rep: DesignReport, ctx: dict[str, Any]) -> None:
    import json

    import yaml

    run = rep.run
    info = run.get("data_info") or {}
    keys = (
        "source",
        "split_sizes",
        "input_shape",
        "num_classes",
        "class_names",
        "normalization",
        "vocab_size",
        "seq_len",
        "feature_names",
    )
    ctx["data_rows"] = [(k.replace("_", " "), _short(info[k], 400)) for k in keys if k in info]
    ctx["data_info_json"] = json.dumps(info, indent=2, default=str)[:20000]
    ctx["train_yaml"] = yaml.safe_dump(run.get("train_config") or {}, sort_keys=False)
    fm = run.get("final_metrics") or {}
    ctx["metric_rows"] = [[k, _num(v)] for k, v in fm.items() if not isinstance(v, (dict, list))]
    from markupsafe import Markup

    from archlab.report.spread import spread_html  # the CV / seed group's spread (escaped there)

    ctx["spread_html"] = Markup(spread_html(run.get("spread")))
