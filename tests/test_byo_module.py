"""Any ``nn.Module`` trains, saves as safetensors and reloads (issue 15)."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import uuid

import pytest
import torch
import yaml

import archlab
from archlab.checkpoint import rebuild_module
from archlab.cli.main import main
from archlab.errors import CheckpointError, ConfigError
from archlab.runs import evaluate, load_run, predict, resume

NETS = textwrap.dedent(
    """
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, hidden=8, classes=3):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, classes))

        def forward(self, x):  # (B, 4) -> (B, classes)
            return self.net(x)
    """
)
TRAIN = {"max_steps": 3, "precision": "fp32"}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """A user's module of networks, written to disk and imported (as a script or notebook would)."""
    root = tmp_path_factory.mktemp("nets")
    name = f"byo_nets_{uuid.uuid4().hex[:8]}"
    (root / f"{name}.py").write_text(NETS)
    sys.path.insert(0, str(root))
    module = __import__(name)
    yield module
    sys.path.remove(str(root))
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def run_with_args(nets, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return archlab.fit(nets.TinyNet(hidden=6), "iris", out_dir=out, run_name="a", model_args={"hidden": 6}, **TRAIN)


def _x():
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(0))


def test_plain_module_trains_and_records_its_import_path(run_with_args, nets):
    saved = yaml.safe_load((run_with_args.run_dir / "config.yaml").read_text())
    source = saved["model"]["source"]
    assert (source["module"], source["qualname"], source["args"]) == (nets.__name__, "TinyNet", {"hidden": 6})
    meta = json.loads((run_with_args.run_dir / "last" / "config.json").read_text())
    assert meta["kind"] == "module" and (run_with_args.run_dir / "last" / "model.safetensors").is_file()


def test_run_with_args_reloads_from_the_import_path(run_with_args):
    _, model, _, _ = load_run(run_with_args.run_dir)
    assert type(model) is type(run_with_args.model)
    with torch.no_grad():
        assert torch.equal(model.eval()(_x()), run_with_args.model.eval()(_x()))


def test_evaluate_and_predict_work_on_a_plain_module_run(run_with_args):
    metrics = evaluate(run_with_args.run_dir)
    assert metrics["test_accuracy"] == pytest.approx(run_with_args.metrics["test_accuracy"])
    assert predict(run_with_args.run_dir, "test").shape[0] == 30  # iris: 150 samples, a 20% test split


def test_resume_rebuilds_a_plain_module(run_with_args):
    result = resume(run_with_args.run_dir)  # already finished: rebuilt, restored, nothing to do
    assert result.steps == TRAIN["max_steps"] and type(result.model).__name__ == "TinyNet"


def test_cli_evaluates_a_plain_module_run_with_plugin(run_with_args, nets, capsys):
    assert main(["--plugin", nets.__name__, "evaluate", str(run_with_args.run_dir)]) == 0
    assert "test_accuracy" in capsys.readouterr().out


def test_without_args_the_run_says_reloading_needs_the_class(nets, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="archlab.runs"):
        result = archlab.fit(nets.TinyNet(), "iris", out_dir=tmp_path, run_name="b", **TRAIN)
    assert "reloading needs your class" in caplog.text
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["model"]["source"]["args"] is None
    assert "reloading needs your class" in saved["model"]["source"]["reload"]
    with pytest.raises(CheckpointError, match=r"model=TinyNet\(\.\.\.\)"):
        load_run(result.run_dir)
    _, model, _, _ = load_run(result.run_dir, model=nets.TinyNet())
    with torch.no_grad():
        assert torch.equal(model.eval()(_x()), result.model.eval()(_x()))
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_run(result.run_dir, model=nets.TinyNet(hidden=9))
    assert "test_accuracy" in archlab.evaluate(result.run_dir, model=nets.TinyNet())
    assert archlab.predict(result.run_dir, "test", model=nets.TinyNet()).shape[0] == 30


def test_model_args_that_build_another_network_are_refused_before_the_run(nets, tmp_path):
    with pytest.raises(ConfigError, match="builds other tensors"):
        archlab.fit(nets.TinyNet(hidden=6), "iris", out_dir=tmp_path, run_name="c", model_args={"hidden": 7}, **TRAIN)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        archlab.fit(nets.TinyNet(), "iris", out_dir=tmp_path, run_name="c", model_args={"widht": 7}, **TRAIN)
    assert not (tmp_path / "c").exists()


def test_save_and_load_a_plain_module(nets, tmp_path):
    net = nets.TinyNet(hidden=5)
    net.archlab_init_args = {"hidden": 5}
    archlab.save(net, tmp_path / "m")
    for loaded in (archlab.load(tmp_path / "m"), archlab.load(tmp_path / "m", model=nets.TinyNet(hidden=5))):
        with torch.no_grad():
            assert torch.equal(loaded(_x()), net(_x()))


def test_a_module_defined_in_a_function_needs_its_class(tmp_path):
    class Local(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

    net = Local()
    net.archlab_init_args = {}
    archlab.save(net, tmp_path / "m")
    with pytest.raises(CheckpointError, match="inside a function"):
        archlab.load(tmp_path / "m")
    assert torch.equal(archlab.load(tmp_path / "m", model=Local()).lin.weight, net.lin.weight)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"module": "os", "qualname": "system", "args": {"command": "true"}}, "to be an nn.Module class"),
        ({"module": "not_imported_xyz", "qualname": "Net", "args": {}}, "--plugin not_imported_xyz"),
        ({"module": "torch.nn", "qualname": "Linear", "args": None}, "pass model="),
    ],
)
def test_a_run_file_never_makes_archlab_run_code(source, expected):
    """Rebuilding only calls nn.Module classes of modules already imported, never anything else."""
    with pytest.raises(CheckpointError, match=expected):
        rebuild_module(source, "config.json")
    assert "not_imported_xyz" not in sys.modules


def test_registry_only_readers_name_what_a_plain_save_needs(nets, tmp_path, capsys):
    net = nets.TinyNet()
    archlab.save(net, tmp_path / "m")
    assert main(["summary", str(tmp_path / "m")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "plain nn.Module" in err
