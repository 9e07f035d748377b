"""The one subject resolver: each kind it tells apart, what each builds, and each error."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest
import torch
from torch import nn

import archlab
from archlab.analysis._prepare import resolve_model
from archlab.bench.source import resolve
from archlab.checkpoint import save
from archlab.errors import CheckpointError, ConfigError
from archlab.subject import resolve_run, resolve_subject


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = archlab.fit("mlp_tabular", "iris", out_dir=out, run_name="r", max_steps=3, precision="fp32")
    return result.run_dir


@pytest.fixture(scope="module")
def nets_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("code") / "nets.py"
    path.write_text(
        textwrap.dedent(
            """
            from torch import nn

            class Net(nn.Module):
                def __init__(self, width=5):
                    super().__init__()
                    self.fc = nn.Linear(4, width)

                def forward(self, x):
                    return self.fc(x)

            net = Net(7)

            def build():
                return Net(3)

            not_a_module = 3

            def builds_text():
                return "text"
            """
        )
    )
    return path


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- each kind
def test_module_is_used_as_given():
    net = nn.Linear(3, 2)
    s = resolve_subject(net)
    assert (s.kind, s.given) == ("module", "<Linear module>")
    assert s.build() is net and s.load() is net
    with pytest.raises(ConfigError, match="apply to registry names and run directories, not modules"):
        s.build(overrides={"width": 3})


def test_registry_name_builds_with_overrides():
    s = resolve_subject("mlp_tabular")
    assert (s.kind, s.name, s.path) == ("registry", "mlp_tabular", None)
    built = s.build("meta", {"hidden_sizes": [8]})
    assert built.registry_name == "mlp_tabular" and list(built.config.hidden_sizes) == [8]
    assert next(built.parameters()).device.type == "meta"


def test_python_file_attributes(nets_file):
    instance = resolve_subject(f"{nets_file}:net")
    assert (instance.kind, instance.path) == ("python", nets_file)
    assert instance.build().fc.out_features == 7  # the instance in the file
    assert resolve_subject(f"{nets_file}:Net").build().fc.out_features == 5  # the class, called
    assert resolve_subject(f"{nets_file}:build").build().fc.out_features == 3  # a builder, called


def test_python_module_attribute():
    s = resolve_subject("torch.nn:Identity")
    assert s.kind == "python" and s.path is None and isinstance(s.module, nn.Identity)


def test_saved_model_loads_its_weights(tmp_path):
    model = archlab.create("mlp_tabular")
    save(model, tmp_path / "saved")
    s = resolve_subject(tmp_path / "saved")
    assert (s.kind, s.path) == ("saved", tmp_path / "saved")
    assert _same_weights(s.load(), model)
    rebuilt = s.build("meta", {"dropout": 0.25})  # the saved config, an override on top
    assert rebuilt.config.dropout == 0.25
    assert list(rebuilt.config.hidden_sizes) == list(model.config.hidden_sizes)


def test_run_directory_loads_its_final_weights(run_dir):
    s = resolve_subject(run_dir)
    assert s.kind == "run" and s.run_config()["model"]["name"] == "mlp_tabular"
    weights = s.final_weights()
    assert weights.path.parent == run_dir and not weights.is_fallback
    assert _same_weights(s.load(), archlab.load(weights.path))
    assert s.data_info()  # iris's facts: classes, normalisation
    assert s.checkpoint_dir() == weights.path


def test_run_without_checkpoint(run_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    s = resolve_subject(bare)
    assert s.kind == "run" and s.final_weights_or_none() is None
    with pytest.raises(CheckpointError, match="has no complete checkpoint"):
        s.load()


def test_design_directory_stands_for_its_winner(run_dir, tmp_path):
    design = tmp_path / "design"
    design.mkdir()
    (design / "design.json").write_text("{}")
    s = resolve_subject(design)
    assert s.kind == "design"
    with pytest.raises(ConfigError, match="no trained winner yet"):
        s.winner()
    with pytest.raises(ConfigError, match="is a design directory"):
        s.load()
    shutil.copytree(run_dir, design / "winner")
    won = resolve_subject(design, follow_design=True)
    assert (won.kind, won.path, won.design) == ("run", design / "winner", design)
    assert won.final_weights().path.parent == design / "winner"


def test_export_folder_is_identified_not_loaded(tmp_path):
    (tmp_path / "signature.json").write_text(json.dumps({"model": "mlp_tabular"}))
    (tmp_path / "model.onnx").write_bytes(b"")
    s = resolve_subject(tmp_path)
    assert s.kind == "export"
    with pytest.raises(ConfigError, match="export folder"):
        s.build()


def test_resolve_run_takes_a_path_at_its_word(tmp_path):
    s = resolve_run(tmp_path)
    assert (s.kind, s.path) == ("run", tmp_path)
    with pytest.raises(CheckpointError, match="no config.yaml"):
        s.run_config()


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("given", "match"),
    [
        (3, "expected an nn.Module, a registry name.*got int"),
        ("mlp_tabluar", "did you mean 'mlp_tabular'"),
        ("./no/such/run", r"no/such/run: no such file or directory \(expected a registry name"),
        ("no_such_package_xyz:Net", "importing no_such_package_xyz failed"),
        ("torch.nn:NoSuchLayer", "has no attribute 'NoSuchLayer'"),
    ],
)
def test_bad_subject_is_one_line(given, match):
    with pytest.raises(ConfigError, match=match) as info:
        resolve_subject(given)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("attr", "match"),
    [
        ("missing", "has no attribute 'missing'"),
        ("not_a_module", "expected an nn.Module, a class or a builder; got int"),
        ("builds_text", r"expected builds_text\(\) to return an nn.Module; got str"),
    ],
)
def test_bad_python_attribute(nets_file, attr, match):
    with pytest.raises(ConfigError, match=match):
        resolve_subject(f"{nets_file}:{attr}")


def test_missing_python_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        resolve_subject(f"{tmp_path / 'absent.py'}:Net")


def test_unknown_directory(tmp_path):
    with pytest.raises(ConfigError, match="neither a run directory .* nor an export folder"):
        resolve_subject(tmp_path)


# ----------------------------------------------------------------------------- the callers
def test_analysis_and_bench_resolve_every_kind(run_dir, nets_file, tmp_path):
    module, name, private = resolve_model(f"{nets_file}:Net", "cpu")
    assert (name, private, module.fc.out_features) == ("Net", False, 5)
    module, name, private = resolve_model(run_dir, "meta")
    assert name == f"mlp_tabular ({run_dir.name})" and private
    source = resolve(run_dir)
    assert source.run_dir == run_dir and source.info and source.spec == {"kind": "path", "path": str(run_dir.resolve())}
    assert _same_weights(source.module, resolve_subject(run_dir).load())
    assert resolve(f"{nets_file}:build").module.fc.out_features == 3
