"""``archlab recommend`` and ``archlab autosize`` through typer."""

from __future__ import annotations

import json

import typer
import yaml
from typer.testing import CliRunner

from archlab.cli.recommend import register
from archlab.report.design import recommendation_markdown, sized_markdown


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_recommend_json_and_md():
    runner = CliRunner()
    res = runner.invoke(_app(), ["recommend", "iris", "--format", "json", "--top", "2"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["schema_version"] == 1 and len(d["candidates"]) <= 2
    res = runner.invoke(_app(), ["recommend", "iris", "--params-max", "5000", "--format", "md"])
    assert res.exit_code == 0 and "| rank | model" in res.output
    res = runner.invoke(_app(), ["recommend", "iris"])
    assert res.exit_code == 0 and "mlp" in res.output


def test_autosize_writes_yaml(tmp_path):
    out = tmp_path / "model.yaml"
    res = CliRunner().invoke(
        _app(), ["autosize", "mlp_tabular", "--data", "iris", "--params-max", "20000", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(out.read_text())["model"]["name"] == "mlp_tabular"
    from archlab.runs.spec import RunSpec

    run = tmp_path / "run.yaml"
    run.write_text(out.read_text() + "data: {name: iris}\n")
    spec = RunSpec.from_file(run)  # what `archlab train run.yaml` reads
    assert spec.model.name == "mlp_tabular" and spec.model.options["in_features"] == 4


def test_bad_format_is_a_config_error():
    res = CliRunner().invoke(_app(), ["recommend", "iris", "--format", "xml"])
    assert res.exit_code != 0 and "format" in str(res.exception)


def test_renderers():
    from archlab.advise import autosize, recommend

    assert "Warnings" in recommendation_markdown(recommend("iris"))
    assert "Pareto" in sized_markdown(autosize("mlp_tabular", params_max=5000))
