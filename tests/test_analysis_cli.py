"""CLI: archlab summary / diagram / compare."""

import json

import archlab
from archlab.cli.main import main


def test_summary_json_and_md(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["summary", "mlp_784_128_10", "--format", "json", "-o", str(out), "--depth", "1"]) == 0
    d = json.loads(out.read_text())
    assert d["schema_version"] == 1 and d["totals"]["flops"] == 2 * 2 * (784 * 128 + 128 * 10)
    assert main(["summary", "mlp_784_128_10", "--set", "hidden_sizes=[64]", "--format", "md"]) == 0
    assert "50,890 (" in capsys.readouterr().out  # 784*64+64 + 64*10+10 params


def test_summary_of_run_directory_and_input_shape(tmp_path, capsys):
    archlab.save(archlab.create("mlp_tabular"), tmp_path / "run")
    assert main(["summary", str(tmp_path / "run"), "--input-shape", "7,30", "--format", "md"]) == 0
    assert "(7, 30)" in capsys.readouterr().out


def test_summary_of_training_run_uses_its_final_checkpoint(tmp_path, capsys):
    # A training run keeps config.yaml at its root and config.json inside best/ and last/.
    result = archlab.fit(
        "mlp_tabular", "breast_cancer", max_steps=3, out_dir=str(tmp_path), model_overrides={"hidden_sizes": [5]}
    )
    assert not (result.run_dir / "config.json").exists()
    assert main(["summary", str(result.run_dir), "--format", "md", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "MLP" in out and "(2, 5)" in out  # the run's own 5-wide hidden layer, not the preset's 256


def test_summary_bad_input_shape_is_shape_error(capsys):
    assert main(["summary", "mlp_tabular", "--input-shape", "7,31"]) == 2
    assert "ShapeError" in capsys.readouterr().err


def test_diagram_formats(tmp_path, capsys):
    for ext in ("svg", "mmd", "dot"):
        assert main(["diagram", "mlp_bn_dropout", "-o", str(tmp_path / f"d.{ext}"), "--depth", "1"]) == 0
        assert (tmp_path / f"d.{ext}").stat().st_size > 0
    assert main(["diagram", "mlp_bn_dropout", "-o", str(tmp_path / "d.pdf")]) == 2
    err = capsys.readouterr().err
    assert "ConfigError" in err and ".mmd" in err


def test_compare_with_chart(tmp_path):
    for ext in ("png", "svg"):
        path = tmp_path / f"c.{ext}"
        assert main(["compare", "mlp_784_128_10", "mlp_bn_dropout", "-o", str(path)]) == 0
        assert path.stat().st_size > 1000
    c = archlab.compare(["mlp_784_128_10", "mlp_bn_dropout"])
    rows = c.rows()
    assert rows[1]["params"] > rows[0]["params"] and "| mlp_bn_dropout |" in archlab.render(c, "md")
