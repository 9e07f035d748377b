"""The CLI is thin: these check it parses, calls the library and reports errors clearly."""

from __future__ import annotations

from archlab.cli.main import main


def test_models_lists_and_filters(capsys):
    assert main(["models", "--family", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "mlp_tabular" in out and "mlp_bn_dropout" in out


def test_show_prints_config_and_tree(capsys):
    assert main(["show", "mlp_tabular", "--set", "hidden_sizes=[7]"]) == 0
    out = capsys.readouterr().out
    assert "hidden_sizes" in out and "out_features=7" in out


def test_bad_name_exits_2_with_hint(capsys):
    assert main(["show", "mlp_tabluar"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" in err and "mlp_tabular" in err


def test_bad_override_exits_2(capsys):
    assert main(["show", "mlp_tabular", "--set", "dropout=abc"]) == 2
    assert "dropout='abc'" in capsys.readouterr().err
