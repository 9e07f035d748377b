"""report/document.py, html.py, markdown.py and cli/report.py: the design report (seed 004's six
deliverables) on a registry name, on a trained run, and several models side by side."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

import archlab
from archlab.errors import ConfigError
from archlab.report import document
from archlab.report.document import RUN_SECTIONS, SECTIONS, build_report
from archlab.report.output import make_report, write_report
from archlab.report.svg import bar_svg

SIX = list(SECTIONS)
# a src= / href= / url() that reaches the network (an SVG's xmlns is not a resource)
NETWORK_REF = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


def _section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([a-z_]+)"><h2>', html)


def _check_html(html: str, expected: list[str]) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert _section_ids(html) == expected
    assert not NETWORK_REF.search(html), NETWORK_REF.search(html)
    svgs = _svgs(html)
    assert svgs
    for svg in svgs:
        ET.fromstring(svg)  # every inline figure is well-formed XML
    assert "<details" in html  # module tree and layer blocks collapse without JS


@pytest.fixture(scope="module")
def registry_report(tmp_path_factory):
    rep = build_report("mlp_tabular", bench=False, deploy=False)
    out = tmp_path_factory.mktemp("reg")
    paths = {ext: write_report(rep, out / f"report.{ext}") for ext in ("html", "md", "json")}
    return rep, paths


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = archlab.fit("mlp_tabular", "iris", max_steps=20, precision="fp32", out_dir=str(out))
    return Path(result.run_dir)


def test_registry_report_has_six_sections_and_is_self_contained(registry_report):
    rep, paths = registry_report
    html = paths["html"].read_text()
    _check_html(html, SIX)
    assert not rep.skipped.keys() - {"benchmarks", "deployment"}, rep.skipped
    # architecture: YAML config, module tree, the registry's rationale
    assert "hidden_sizes:" in html and "Module tree" in html and "Linear(in_features=" in html
    assert rep.rationale["when_to_use"] and rep.rationale["when_to_use"][:30] in html
    # parameters: totals that add up, by layer and by type, a chart
    p = rep.params
    assert p["total"] == rep.summary.total_params > 0 and p["trainable"] + p["frozen"] == p["total"]
    assert sum(d["params"] for d in p["by_type"]) == p["total"]
    assert 'id="fig-params_by_type"' in html and f"{p['total']:,}" in html
    # layers collapsible by top-level block; the diagram inline
    assert html.count("<details") >= 2
    assert '<section id="dataflow">' in html and 'id="fig-dataflow"' in html
    # skipped measurements say why
    assert "bench=False" in html and "deploy=False" in html


def test_registry_report_json_and_markdown(registry_report):
    rep, paths = registry_report
    data = json.loads(paths["json"].read_text())
    assert data["schema_version"] == document.SCHEMA_VERSION
    assert data["section_ids"] == SIX
    assert set(SIX) <= set(data["sections"])
    assert data["sections"]["layers"]["totals"]["params"] == rep.summary.total_params
    assert data["sections"]["architecture"]["config_yaml"].startswith("in_features")
    # every figure the HTML shows is in the JSON
    html = paths["html"].read_text()
    shown = set(re.findall(r'id="fig-([a-z_0-9]+)"', html))
    assert shown and shown == set(data["figures"])
    for fig in data["figures"].values():
        if fig["mime"] == "image/svg+xml":
            ET.fromstring(fig["data"])
    md = paths["md"].read_text()
    for title in SECTIONS.values():
        assert f"## {title}" in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) == len(data["figures"])
    for rel in images:
        assert (paths["md"].parent / rel).is_file(), rel
        assert rel.startswith("report_files/")


def test_run_report_adds_data_curves_metrics_and_pictures(run_dir, tmp_path):
    out = make_report(run_dir, tmp_path / "run.html", bench=False, deploy=False)
    html = out.read_text()
    _check_html(html, SIX + list(RUN_SECTIONS))
    final = json.loads((run_dir / "final_metrics.json").read_text())
    assert f"{final['test_accuracy']:.4g}" in html
    assert "sepal length" in html and "sklearn.datasets.load_iris" in html  # data_info: source, features
    assert re.search(r'<section id="training">.*?<img src="data:image/png;base64,iVBORw0KGgo', html, re.S)
    # the trained weights were described, not a fresh model
    rep = build_report(run_dir, bench=False, deploy=False, advisor=False)
    assert rep.kind == "run" and rep.model == "mlp_tabular" and not rep.notes
    data = rep.to_dict()
    assert data["sections"]["metrics"]["test_accuracy"] == final["test_accuracy"]
    assert data["sections"]["data"]["data_info"]["split_sizes"] == {"train": 105, "val": 15, "test": 30}
    assert "curves" in data["figures"]
    md = write_report(rep, tmp_path / "run.md")
    assert (tmp_path / "run_files" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Final metrics" in md.read_text()


def test_run_report_states_the_advisor_rank(run_dir):
    rep = build_report(run_dir, bench=False, deploy=False)
    adv = rep.rationale.get("advisor")
    assert adv is not None, rep.rationale
    assert adv["data"] == "iris" and adv["candidates"]
    assert adv["this_model_rank"] is None or adv["this_model_rank"] >= 1


def test_benchmarks_and_deployment_measured(tmp_path):
    rep = build_report("mlp_tabular", bench=True, deploy=True, latency_ms=10_000.0, size_mb=0.001)
    assert "benchmarks" not in rep.skipped and "deployment" not in rep.skipped, rep.skipped
    assert {(r.backend, r.batch_size) for r in rep.bench.rows} == {
        (b, n) for b in ("eager", "onnxruntime") for n in (1, 8)
    }
    html = write_report(rep, tmp_path / "r.html").read_text()
    _check_html(html, SIX)
    assert 'id="fig-bench_latency"' in html and 'id="fig-bench_throughput"' in html
    # a generous latency budget passes, a 1 KB size budget cannot
    assert re.search(r'class="pass">PASS', html) and re.search(r'class="fail">FAIL', html)
    assert not rep.deploy.passed


def test_failed_backend_row_is_shown_with_its_reason(monkeypatch, tmp_path):
    from archlab import bench
    from archlab.bench.result import BenchResult, BenchRow

    def fake(model, **kw):
        res = BenchResult(model="mlp_tabular", threads=1, min_time_s=0.3, isolate=False, machine={"cpu": "test"})
        res.rows = [
            BenchRow(
                "eager", "infer", 1, "fp32", 1, p50_ms=0.5, p90_ms=0.6, p99_ms=0.7, samples_per_s=2000.0, calls=10
            ),
            BenchRow("onnxruntime", "infer", 1, "fp32", 1, status="failed", reason="op aten::weird is not exportable"),
        ]
        return res

    monkeypatch.setattr(bench, "benchmark", fake)
    rep = build_report("mlp_tabular", bench=True, deploy=False)
    html = write_report(rep, tmp_path / "r.html").read_text()
    assert "op aten::weird is not exportable" in html
    assert 'id="fig-bench_latency"' in html  # the rows that ran still get their chart

    def boom(model, **kw):
        raise RuntimeError("no backend today")

    monkeypatch.setattr(bench, "benchmark", boom)
    rep = build_report("mlp_tabular", bench=True, deploy=False)
    assert "no backend today" in rep.skipped["benchmarks"]
    html = write_report(rep, tmp_path / "r2.html").read_text()
    _check_html(html, SIX)
    assert "no backend today" in html


def test_compare_puts_models_side_by_side_on_a_log_scale(run_dir, tmp_path):
    rep = build_report("mlp_tabular", bench=False, deploy=False, compare=["cnn_digits", str(run_dir)])
    assert rep.section_ids[0] == "comparison"
    rows = {r["model"]: r for r in rep.comparison}
    assert set(rows) == {"mlp_tabular", "cnn_digits", run_dir.name}
    assert rows["cnn_digits"]["params"] == archlab.summary("cnn_digits", depth=0).total_params
    assert rows[run_dir.name]["test_metric_name"] == "test_accuracy"
    assert {"cmp_params", "cmp_flops", "cmp_memory", "cmp_metric"} <= set(rep.figures)
    assert "log scale" in rep.figures["cmp_params"].data
    assert rep.figures["cmp_metric"].data.count("<rect") == 1  # only the run has a test metric
    html = write_report(rep, tmp_path / "c.html").read_text()
    _check_html(html, ["comparison", *SIX])


def test_bar_svg_uses_a_log_axis_only_across_decades():
    wide = bar_svg(["a", "b"], [10, 2_000_000], "Parameters")
    narrow = bar_svg(["a", "b"], [3, 5], "Parameters")
    assert "log scale" in wide and "log scale" not in narrow
    for svg in (wide, narrow, bar_svg(["x"], [0], "zero", log=True)):
        ET.fromstring(svg)
    # bar lengths follow log10 on the log axis: 1e2 sits halfway between 1e1 and 1e3
    svg = bar_svg(["a", "b", "c"], [10, 100, 1000], "", log=True)
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    assert len(widths) == 3 and 0 < widths[0] < widths[1] < widths[2]
    assert widths[1] - widths[0] == pytest.approx(widths[2] - widths[1], rel=1e-3)


def test_bad_subjects_and_formats_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="mlp_tabular"):
        build_report("mlp_tabulr", bench=False, deploy=False)
    with pytest.raises(ConfigError, match=r"\.html, \.md or \.json"):
        make_report("mlp_tabular", tmp_path / "r.pdf", bench=False, deploy=False)
    with pytest.raises(ConfigError, match="neither a run directory"):
        build_report(tmp_path, bench=False, deploy=False)


def test_report_on_a_plain_module_without_registry(tmp_path):
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
            self.body[0].weight.requires_grad_(False)

        def forward(self, x):
            return self.body(x)

        def example_input(self, batch_size: int = 1):
            return torch.zeros(batch_size, 4)

    rep = build_report(Tiny(), bench=False, deploy=False)
    assert rep.kind == "module" and rep.params["frozen"] == 32
    html = write_report(rep, tmp_path / "m.html").read_text()
    _check_html(html, SIX)
    assert "not from the archlab registry" in html


def test_cli_report_writes_the_file_and_refuses_several_subjects_without_compare(tmp_path):
    import typer
    from typer.testing import CliRunner

    from archlab.cli.report import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # keeps `report` a subcommand
        pass

    register(app)
    runner = CliRunner()
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["report", "mlp_tabular", "-o", str(out), "--no-bench"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["section_ids"] == SIX
    res = runner.invoke(app, ["report", "mlp_tabular", "cnn_digits", "-o", str(out), "--no-bench"])
    assert isinstance(res.exception, ConfigError) and "--compare" in str(res.exception)
    out2 = tmp_path / "c.html"
    res = runner.invoke(app, ["report", "mlp_tabular", "--compare", "cnn_digits", "-o", str(out2), "--no-bench"])
    assert res.exit_code == 0, res.output
    assert _section_ids(out2.read_text())[0] == "comparison"
