"""Keras 3 models (torch backend) through archlab: parameter count, summary, diagram, forward,
weights round trip and a short fit, on seed 004's Keras CNN from examples/keras_cnn.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import archlab  # noqa: E402
from archlab.errors import ConfigError, MissingExtraError, ShapeError  # noqa: E402
from archlab.models.keras_adapter import KerasModule, from_keras, keras_module  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "keras_cnn.py"
# Keras's own variables.__array__ predates numpy 2's copy keyword (raised inside keras on save).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _example():
    spec = importlib.util.spec_from_file_location("keras_cnn_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


keras_cnn = _example().keras_cnn


@pytest.fixture(scope="module")
def seed_model():
    return keras_cnn()  # seed 004's (32, 32, 3) CNN


def test_parameter_count_equals_keras_count_params(seed_model):
    module = from_keras(seed_model)
    s = archlab.summary(module)
    assert s.total_params == seed_model.count_params() == sum(p.numel() for p in module.parameters())
    trainable = sum(int(torch.tensor(w.shape).prod()) for w in seed_model.trainable_weights)
    assert s.trainable_params == trainable < s.total_params  # BatchNorm's moving statistics are not trained
    rows = {r.name.rsplit(".", 1)[-1]: r for r in s.rows}
    for layer in seed_model.layers:  # every layer's weights once, in its own row
        assert rows[layer.name].params == layer.count_params(), layer.name


def test_summary_handles_channels_last(seed_model):
    s = archlab.summary(from_keras(seed_model, channels_first=True), device="cpu")
    assert s.input_shapes == [[2, 3, 32, 32]]
    conv1 = next(r for r in s.rows if r.name.endswith("conv1"))
    assert conv1.input_shapes == [[2, 32, 32, 3]] and conv1.output_shapes == [[2, 30, 30, 32]]
    assert s.output_shapes == [[2, 10]] and s.flops > 0
    raw = archlab.summary(from_keras(seed_model))
    assert raw.input_shapes == [[2, 32, 32, 3]] and raw.total_params == s.total_params


def test_diagram_has_a_node_per_layer(seed_model):
    graph = archlab.diagram(from_keras(seed_model, channels_first=True))
    names = [n.name.rsplit(".", 1)[-1] for n in graph.nodes if n.kind == "module"]
    assert names == [layer.name for layer in seed_model.layers]


def test_forward_is_the_keras_model_on_permuted_input(seed_model):
    module = from_keras(seed_model, channels_first=True).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(module(x), seed_model(x.permute(0, 2, 3, 1), training=False))
    with pytest.raises(ShapeError, match=r"expects input \('B', 3, 32, 32\); got \(3, 32, 32, 3\)"):
        module(x.permute(0, 2, 3, 1))


def test_weights_round_trip_through_safetensors(tmp_path):
    a, b = (
        from_keras(keras_cnn(input_shape=(8, 8, 1), padding="same")),
        from_keras(keras_cnn((8, 8, 1), padding="same")),
    )
    save_file(a.state_dict(), tmp_path / "w.safetensors")
    b.load_state_dict(load_file(tmp_path / "w.safetensors"))
    x = torch.randn(2, 8, 8, 1)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_meta_analysis_copy_leaves_the_users_model_alone(seed_model):
    module = from_keras(seed_model)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    archlab.summary(module.train())  # a training-mode pass on the copy would move BN statistics
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_short_fit_on_digits(tmp_path):
    torch.manual_seed(0)
    module = from_keras(keras_cnn(input_shape=(8, 8, 1), padding="same"), channels_first=True)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = archlab.fit(
        module, "digits", task="classification", out_dir=tmp_path, max_steps=20, batch_size=64, lr=3e-3, seed=0
    )
    assert result.metrics["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    changed = [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]
    assert any("moving_mean" in k for k in changed) and any("kernel" in k for k in changed)


def test_refusals(monkeypatch):
    with pytest.raises(ConfigError, match="expects a Keras model; got Linear"):
        KerasModule(torch.nn.Linear(2, 2))
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ConfigError, match="not built with a known input shape"):
        from_keras(unbuilt)
    monkeypatch.setitem(sys.modules, "keras", None)  # as if keras were not installed
    with pytest.raises(MissingExtraError, match=r"archlab\[keras\]"):
        keras_module()


def test_a_bare_keras_model_works_where_a_module_does(tmp_path):
    model = keras_cnn(input_shape=(8, 8, 1), padding="same")
    assert archlab.summary(model).total_params == model.count_params()
    assert len([n for n in archlab.diagram(model).nodes if n.kind == "module"]) == len(model.layers)
    table = archlab.compare([model, "cnn_digits"])
    assert [s.total_params for s in table.summaries][0] == model.count_params()
    bench = archlab.benchmark(model, batch_sizes=[2], min_time_s=0.01, min_calls=2, mfu=False)
    assert [r.status for r in bench.rows] == ["ok"] and bench.rows[0].p50_ms > 0
    exported = archlab.export(model, "pt2", tmp_path / "export")
    assert exported.verification and all(v.ok for v in exported.verification)
    assert exported.inputs[0]["shape"][1:] == [8, 8, 1]  # Keras's own channels-last layout


def test_a_saved_keras_file_loads_on_the_torch_backend(tmp_path):
    model = keras_cnn(input_shape=(8, 8, 1), padding="same")
    model.save(tmp_path / "cnn.keras")  # Keras 3's backend-independent format
    loaded = from_keras(keras.saving.load_model(tmp_path / "cnn.keras"), channels_first=True).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), from_keras(model, channels_first=True).eval()(x))
