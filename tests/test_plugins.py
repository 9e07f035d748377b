"""Models of your own: ``@archlab.register``, ``archlab --plugin MODULE`` and the ``archlab.plugins``
entry-point group (issue 15)."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest

import archlab
from archlab import registry
from archlab.cli.main import main
from archlab.errors import ConfigError

PLUGIN = textwrap.dedent(
    """
    import torch
    from torch import nn

    import archlab
    from archlab.config import ArchConfig


    class PlugConfig(ArchConfig):
        in_features: int = 4
        num_classes: int = 3
        hidden: int = 8


    @archlab.register("{name}", family="plugtest", config=PlugConfig, modalities=("tabular",),
                      tasks=("classification",), description="a plugin's MLP")
    class PlugMLP(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(config.in_features, config.hidden), nn.ReLU(),
                                     nn.Linear(config.hidden, config.num_classes))

        def forward(self, x):  # (B, in_features) -> (B, num_classes)
            return self.net(x)

        def example_input(self, batch_size=2):
            return (torch.randn(batch_size, self.config.in_features),)
    """
)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """(module name, model name) of a plugin written to tmp_path and put on sys.path, not imported."""
    tag = uuid.uuid4().hex[:8]
    module, name = f"plug_{tag}", f"plug_mlp_{tag}"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module, name
    sys.modules.pop(module, None)
    registry._REGISTRY.pop(name, None)


def test_register_as_decorator_returns_the_class(plugin):
    module, name = plugin
    __import__(module)
    cls = sys.modules[module].PlugMLP
    assert registry.get_entry(name).model is cls  # the decorator registered the class and gave it back
    model = archlab.create(name, hidden=5)
    assert model(*model.example_input(3)).shape == (3, 3)


def test_register_docstring_has_an_example():
    assert "@archlab.register(" in archlab.register.__doc__ and "--plugin" in archlab.register.__doc__


def test_cli_sees_a_plugin_only_with_plugin_option(plugin, capsys):
    module, name = plugin
    assert main(["models", "plug_mlp_*"]) == 0
    assert name not in capsys.readouterr().out
    assert main(["--plugin", module, "models", "plug_mlp_*"]) == 0
    assert name in capsys.readouterr().out
    assert main(["--plugin", module, "summary", name]) == 0
    assert "Linear" in capsys.readouterr().out


def test_cli_trains_a_plugin_model(plugin, tmp_path, capsys):
    module, name = plugin
    args = ["--plugin", module, "train", "--model", name, "--data", "iris", "--quiet", "--out-dir", str(tmp_path)]
    assert main([*args, "--name", "p", "--set", "max_steps=2", "--set", "model.hidden=6"]) == 0, capsys.readouterr()
    model = archlab.load(tmp_path / "p" / "last")
    assert model.registry_name == name and model.config.hidden == 6


def test_unimportable_plugin_is_one_line(capsys):
    assert main(["--plugin", "no_such_module_xyz", "models"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_module_xyz" in err and "Traceback" not in err


def test_unknown_model_names_the_plugin_option():
    with pytest.raises(ConfigError, match="--plugin"):
        registry.get_entry("not_a_model_anywhere")


def test_entry_point_group_is_loaded(plugin, tmp_path, monkeypatch):
    """An installed package's ``archlab.plugins`` entry point is imported when the registry loads."""
    module, name = plugin
    dist = tmp_path / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[archlab.plugins]\nmine = {module}\n")
    assert name not in registry.list_models()
    monkeypatch.setattr(registry, "_loaded", False)
    assert name in registry.list_models(family="plugtest")


def test_broken_entry_point_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    dist = tmp_path / "broken_plug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken_plug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[archlab.plugins]\nbroken = broken_plug_missing_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level("WARNING", logger="archlab.registry"):
        assert registry.load_entry_point_plugins() == []
    assert "broken_plug_missing_module" in caplog.text
