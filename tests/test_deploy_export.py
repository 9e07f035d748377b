"""Every model family the issue names exports to ONNX and to .pt2, verified against eager at
two batch sizes (and a shorter sequence for token models). Small configs keep this quick."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from archlab.deploy import export
from archlab.errors import ExportError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# preset -> overrides that keep the export quick (same architecture, fewer / narrower layers)
MUST_EXPORT = {
    "mlp_784_128_10": {},
    "cnn_lenet_cifar": {},
    "tiny_resnet": {},
    "unet_small": {},
    "lstm_classifier": {},
    "tcn_tiny": {},
    "transformer_encoder_256": {"n_layers": 1},
    "gpt_nano": {"n_layers": 1, "d_model": 64, "n_heads": 2},
    "vit_tiny": {"n_layers": 1, "d_model": 48, "d_ff": 96},
    "siamese_mlp_digits": {},
    "autoencoder_784_128": {},
}


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("name", list(MUST_EXPORT))
def test_preset_exports_and_matches_eager(name, fmt, tmp_path):
    r = export(name, fmt, tmp_path / "out", overrides=MUST_EXPORT[name] or None)
    assert r.ok and [v.batch_size for v in r.verification] == [1, 3]
    assert all(v.max_abs_diff < 1e-3 for v in r.verification)
    assert {"preprocessing.json", "signature.json", "README.md", r.model_file} <= set(r.files)
    assert r.inputs[0]["shape"][0] == "batch"
    if fmt == "onnx":
        model = onnx.load(str(tmp_path / "out" / "model.onnx"))
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["model"] == name and json.loads(meta["config"]) and json.loads(meta["inputs"])
        assert "serve.py" in r.files
        batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param and not batch_dim.dim_value  # a dynamic batch axis
    if name == "gpt_nano":  # token models: a dynamic sequence axis, verified at a second length
        assert r.inputs[0]["shape"] == ["batch", "sequence"]
        assert [v.seq_len for v in r.verification] == [16, 12]


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        if x.mean() > 0:
            return self.fc(x)
        return self.fc(-x)


def test_export_failure_names_module_op_and_reason(tmp_path):
    with pytest.raises(ExportError) as info:
        export(Branchy(), "onnx", tmp_path, input=torch.randn(2, 3))
    msg = str(info.value)
    assert "Branchy" in msg and "test_deploy_export.py" in msg and "failed" in msg


def test_int8_needs_onnx(tmp_path):
    from archlab.errors import ConfigError

    with pytest.raises(ConfigError, match="int8"):
        export("mlp_784_128_10", "pt2", tmp_path, int8=True)
