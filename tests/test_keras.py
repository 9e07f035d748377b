"""Keras 3 models (torch backend) through archlab: parameter count, summary, diagram, forward,
weights round trip and a short fit, on seed 004's Keras CNN from examples/keras_cnn.py."""

from __future__ import annotations

import importlib.util
import logging
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


# -- training: BatchNorm momentum, seeding, resume ------------------------------------------------


def small_keras_cnn(noise: bool = False):
    """Conv-BN-pool, conv-BN, global average, dense: Keras's default BatchNorm momentum (0.99)."""
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            *([layers.GaussianNoise(0.1, name="noise")] if noise else []),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.BatchNormalization(name="bn2"),
            layers.GlobalAveragePooling2D(name="gap"),
            *([layers.Dropout(0.3, name="dropout")] if noise else []),
            layers.Dense(10, name="fc"),
        ],
        name="small_cnn",
    )


class TorchSmallCNN(torch.nn.Module):
    """The same network written with torch layers (PyTorch's BatchNorm momentum 0.1, Keras's eps 1e-3)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(16, eps=1e-3),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(32, eps=1e-3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.net(x)

    def load_keras(self, module: KerasModule) -> None:
        """The Keras network's initial weights: kernels (H, W, in, out) -> (out, in, H, W), dense (in, out) -> (out, in)."""
        conv1, bn1, conv2, bn2, fc = (m for m in self.net if len(m.state_dict()))
        k = {layer.name: layer for layer in module.keras_model.layers}
        with torch.no_grad():
            for conv, name in ((conv1, "conv1"), (conv2, "conv2")):
                conv.weight.copy_(k[name].kernel.value.permute(3, 2, 0, 1))
                conv.bias.copy_(k[name].bias.value)
            for bn, name in ((bn1, "bn1"), (bn2, "bn2")):
                bn.weight.copy_(k[name].gamma.value)
                bn.bias.copy_(k[name].beta.value)
            fc.weight.copy_(k["fc"].kernel.value.T)
            fc.bias.copy_(k["fc"].bias.value)


FIT = dict(task="classification", max_steps=100, batch_size=64, lr=3e-3, precision="fp32", seed=0)


def test_batchnorm_advice_names_a_momentum_for_the_run_and_the_steps_needed():
    from archlab.models.keras_adapter import batchnorm_advice

    bn = keras.layers.BatchNormalization(name="bn1")  # momentum 0.99
    line = batchnorm_advice([bn], 100)
    assert "bn1: momentum 0.99" in line and "after 100 steps" in line and "0.37" in line
    assert "momentum <= 0.97" in line and ">= 299 steps" in line and 'batchnorm_momentum="torch"' in line
    assert 0.97**100 <= 0.05 < 0.98**100 and 0.99**299 <= 0.05 < 0.99**298  # the figures it names converge
    assert batchnorm_advice([bn], 299) is None
    assert batchnorm_advice([keras.layers.BatchNormalization(momentum=0.9)], 100) is None
    with pytest.raises(ConfigError, match=r"batchnorm_momentum must be 'torch' or a number in \(0, 1\); got 1.5"):
        from_keras(small_keras_cnn(), batchnorm_momentum=1.5)


def test_short_batchnorm_run_warns_and_the_option_trains_like_torch(tmp_path, caplog):
    import yaml

    keras.utils.set_random_seed(0)
    plain = from_keras(small_keras_cnn(), channels_first=True)
    with caplog.at_level(logging.WARNING, logger="archlab.models"):
        warned = archlab.fit(plain, "digits", out_dir=tmp_path, run_name="plain", **FIT)
    lines = [r.getMessage() for r in caplog.records if "BatchNormalization" in r.getMessage()]
    assert len(lines) == 1 and "bn1, bn2: momentum 0.99" in lines[0] and "after 100 steps" in lines[0]
    saved = yaml.safe_load((warned.run_dir / "config.yaml").read_text())["model"]["adapter"]
    assert saved["batchnorm_warning"] == lines[0] and saved["keras_seed"] == 0

    caplog.clear()
    keras.utils.set_random_seed(0)
    fixed = from_keras(small_keras_cnn(), channels_first=True, batchnorm_momentum="torch")
    assert [bn.momentum for bn in fixed.batchnorms()] == [0.9, 0.9]
    with caplog.at_level(logging.INFO, logger="archlab.models"):
        keras_run = archlab.fit(fixed, "digits", out_dir=tmp_path, run_name="fixed", **FIT)
    assert not any("unconverged" in r.getMessage() for r in caplog.records)
    assert any("momentum set to 0.9" in r.getMessage() for r in caplog.records)  # said, not silent
    saved = yaml.safe_load((keras_run.run_dir / "config.yaml").read_text())["model"]["adapter"]
    assert saved["batchnorm_momentum"] == {"set": 0.9, "was": {"bn1": 0.99, "bn2": 0.99}}

    keras.utils.set_random_seed(0)
    same = TorchSmallCNN()
    same.load_keras(from_keras(small_keras_cnn(), channels_first=True))  # the same initial network
    torch_run = archlab.fit(same, "digits", out_dir=tmp_path, run_name="torch", **FIT)
    acc_keras, acc_torch = keras_run.metrics["test_accuracy"], torch_run.metrics["test_accuracy"]
    assert abs(acc_keras - acc_torch) <= 0.02, (acc_keras, acc_torch)
    assert acc_keras > warned.metrics["test_accuracy"]  # the unconverged statistics cost accuracy


def _noisy_module(keras_seed: int, weights: dict[str, torch.Tensor] | None = None) -> KerasModule:
    """A Keras CNN with GaussianNoise and Dropout (unseeded), built under ``keras_seed``; with the
    float tensors (not the generator states) of ``weights`` when given."""
    keras.utils.set_random_seed(keras_seed)
    module = from_keras(small_keras_cnn(noise=True), channels_first=True)
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if weights is not None and v.is_floating_point():
                v.copy_(weights[k])
    return module


RUN = dict(task="classification", max_steps=20, batch_size=64, lr=3e-3, precision="fp32", checkpoint_every=5)


def test_keras_run_is_reproducible_from_its_seed_and_resumes_exactly(tmp_path):
    from archlab.runs import resume

    first = _noisy_module(0)
    init = {k: v.clone() for k, v in first.state_dict().items()}
    a = archlab.fit(first, "digits", out_dir=tmp_path, run_name="a", seed=3, **RUN)
    # The same weights, generators drawn under another Keras seed: the run's seed decides the noise.
    second = _noisy_module(1, init)
    assert any(not torch.equal(v, init[k]) for k, v in second.state_dict().items() if not v.is_floating_point())
    b = archlab.fit(second, "digits", out_dir=tmp_path, run_name="b", seed=3, **RUN)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    c = archlab.fit(_noisy_module(0, init), "digits", out_dir=tmp_path, run_name="c", seed=4, **RUN)
    assert any(not torch.equal(v, a.model.state_dict()[k]) for k, v in c.model.state_dict().items())  # another seed

    # Interrupted after its step-10 checkpoint, then resumed: the same weights, bitwise.
    broken = _noisy_module(2, init)
    calls = {"n": 0}

    def fail_on_step_13(module, args):
        calls["n"] += module.training
        if calls["n"] == 13:
            raise RuntimeError("interrupted")

    hook = broken.register_forward_pre_hook(fail_on_step_13)
    with pytest.raises(RuntimeError, match="interrupted"):
        archlab.fit(broken, "digits", out_dir=tmp_path, run_name="d", seed=3, **RUN)
    hook.remove()
    resumed = resume(tmp_path / "d", model=_noisy_module(5))
    assert resumed.steps == 20
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
