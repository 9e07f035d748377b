"""report/plots.py: curves, bar charts and every task picture, in one style, written atomically."""

from __future__ import annotations

import sys

import pytest
import torch

from archlab.errors import ConfigError, MissingExtraError
from archlab.report import plots
from archlab.tasks.pictures import ForecastPlot, ImageGrid, PointsPlot

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"
RECORDS = [
    {"kind": "train", "step": 1, "loss": 2.0},
    {"kind": "train", "step": 2, "loss": 1.5},
    {"kind": "eval", "step": 2, "val_loss": 1.6, "val_accuracy": 0.4, "val_f1": 0.3, "val_note": "text"},
    {"kind": "train", "step": 3, "loss": 1.2},
    {"kind": "eval", "step": 4, "val_loss": 1.3, "val_accuracy": 0.6, "val_f1": 0.5},
    {"kind": "final", "step": 4, "test_loss": 1.4},
]


def _pictures():
    g = torch.Generator().manual_seed(0)
    return [
        ImageGrid(torch.rand(6, 1, 8, 8, generator=g), titles=[str(i) for i in range(6)], title="grey"),
        ImageGrid(torch.rand(4, 3, 8, 8, generator=g), cols=2),
        PointsPlot(torch.randn(200, 2, generator=g), real=torch.randn(300, 2, generator=g), title="points"),
        PointsPlot(
            torch.randn(200, 2, generator=g),
            log_prob=lambda x: torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1),
        ),
        ForecastPlot(torch.arange(30.0), torch.arange(30.0) + 0.5, torch.arange(30.0) - 1.0, title="sunspots"),
    ]


def test_plot_curves_writes_a_png(tmp_path):
    path = plots.plot_curves(RECORDS, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000


def test_plot_curves_without_train_or_eval_records_draws_nothing(tmp_path):
    assert plots.plot_curves([{"kind": "final", "step": 1}], tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("i", range(5), ids=["grey-grid", "rgb-grid", "points", "density", "forecast"])
def test_draw_every_picture_type(tmp_path, i):
    picture = _pictures()[i]
    out = plots.draw(picture, tmp_path / "sub" / "p.png")
    assert out.read_bytes()[:8] == PNG
    svg = plots.draw(picture, tmp_path / "p.svg").read_text()
    assert "<svg" in svg


def test_draw_refuses_unknown_formats_and_types(tmp_path):
    with pytest.raises(ConfigError, match=".jpg"):
        plots.draw(_pictures()[0], tmp_path / "p.jpg")
    with pytest.raises(ConfigError, match="ImageGrid"):
        plots.draw(torch.rand(3), tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


def test_compare_chart_bytes_and_file(tmp_path):
    rows = [
        {"model": "a", "params": 1_000, "flops": 5e6, "training_peak_bytes": 2**20},
        {"model": "b", "params": 250_000, "flops": 0, "training_peak_bytes": 2**30},
    ]
    metrics = [("Parameters", "params"), ("Forward FLOPs", "flops"), ("Training peak (bytes)", "training_peak_bytes")]
    assert plots.compare_chart(rows, metrics)[:8] == PNG
    assert b"<svg" in plots.compare_chart(rows, metrics, fmt="svg")
    out = plots.compare_chart(rows, metrics, tmp_path / "cmp.png")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(ConfigError):
        plots.compare_chart([], metrics)


def test_bar_chart(tmp_path):
    assert plots.bar_chart(["x", "y"], [3, 300], title="latency")[:8] == PNG
    assert plots.bar_chart(["x"], [1.0], tmp_path / "b.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ConfigError, match="one value per label"):
        plots.bar_chart(["x", "y"], [1.0])


def test_drawing_leaves_the_callers_matplotlib_settings_alone(tmp_path):
    import matplotlib

    before = dict(matplotlib.rcParams)
    plots.draw(_pictures()[4], tmp_path / "f.png")
    plots.plot_curves(RECORDS, tmp_path / "c.png")
    assert dict(matplotlib.rcParams) == before


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingExtraError, match=r"archlab\[train\]"):
        plots.draw(_pictures()[0], tmp_path / "p.png")
