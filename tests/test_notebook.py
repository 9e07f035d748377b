"""docs/notebooks/quickstart.ipynb executed top to bottom in a real Jupyter kernel (nbclient +
ipykernel), and what it shows checked: every result renders as HTML (the diagram as SVG)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "quickstart.ipynb"
SRC = Path(__file__).resolve().parents[1] / "src"


def _outputs(cell) -> dict:
    """The cell's displayed result, by MIME type."""
    shown = [o for o in cell.outputs if o.output_type in ("execute_result", "display_data")]
    assert shown, f"cell shows nothing: {cell.source[:60]!r}"
    return shown[-1]["data"]


def test_quickstart_runs_and_shows_every_result(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the kernel imports this checkout's archlab, and runs with its working directory in tmp_path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute()
    cells = {c.source.splitlines()[0]: c for c in nb.cells if c.cell_type == "code"}
    errors = [o for c in cells.values() for o in c.outputs if o.output_type == "error"]
    assert not errors, errors

    rec = _outputs(cells['rec = archlab.recommend("digits", top=3)'])
    name = ast.literal_eval(_outputs(cells[next(k for k in cells if k.startswith("# the smallest"))])["text/plain"])[0]
    assert "<table" in rec["text/html"] or "<pre" in rec["text/html"]
    assert name in rec["text/html"]
    summary = _outputs(cells["archlab.summary(model)"])["text/html"]
    assert "<table" in summary and name in summary
    assert _outputs(cells["archlab.diagram(model)"])["image/svg+xml"].lstrip().startswith("<svg")
    metrics = ast.literal_eval(
        _outputs(cells[next(k for k in cells if k.startswith("result = archlab.fit"))])["text/plain"]
    )
    assert metrics["test_accuracy"] > 0.3  # 60 steps on digits: well above chance (0.1)
    bench = _outputs(cells[next(k for k in cells if k.startswith("bench = "))])["text/html"]
    assert "eager" in bench
    report = tmp_path / "runs" / "quickstart" / "report.html"
    assert report.is_file() and "<html" in report.read_text(encoding="utf-8")[:200].lower()
