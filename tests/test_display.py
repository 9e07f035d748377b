"""Results display themselves in notebooks: ``_repr_html_`` (and the graph's ``_repr_svg_``) come
from archlab.display and are drawn by the report layer's renderers once it is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import archlab
import archlab.report  # registers the renderers, as `import archlab` does under IPython
from archlab.runs.design import DesignResult

SRC = Path(__file__).resolve().parents[1] / "src"


def test_summary_and_graph_render_through_the_report_layer():
    s = archlab.summary("cnn_digits")
    html = s._repr_html_()
    assert html == archlab.render(s, "html")  # the report layer's own HTML renderer
    g = archlab.diagram("cnn_digits")
    assert g._repr_svg_() == archlab.render(g, "svg")


def test_a_result_with_only_a_terminal_table_shows_it_as_html():
    pytest.importorskip("sklearn")
    rec = archlab.recommend("iris", top=2)
    html = rec._repr_html_()
    assert html.startswith("<pre") and rec.candidates[0].name in html  # rich's table, exported


def test_design_result_shows_winner_metrics_and_report(tmp_path):
    from archlab.report.notebook import notebook_html

    res = DesignResult(
        dir=tmp_path,
        winner="cnn_digits",
        why="best val_accuracy <of 2>",
        run_dir=tmp_path / "winner",
        report=tmp_path / "report.html",
        manifest={"steps": {"winner": {"result": {"metrics": {"test_accuracy": 0.9889, "val_accuracy": 0.99}}}}},
    )
    html = notebook_html(res, {})
    assert "cnn_digits" in html and "0.9889" in html and "val_accuracy</th>" not in html
    assert "&lt;of 2&gt;" in html  # text is escaped
    assert f'href="{tmp_path / "report.html"}"' in html


def test_without_the_report_layer_a_result_falls_back_to_its_repr():
    code = "import archlab.analysis as a, sys; s = a.summary('mlp_tabular'); print(s._repr_html_(), 'archlab.report' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, timeout=300
    )
    assert out.stdout.split() == ["None", "False"], out.stderr[-2000:]
