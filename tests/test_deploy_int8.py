"""int8 recipes: each tried recipe is measured, the kept one is the fastest within the metric
tolerance, the transformer fusion fires on an attention graph, and the candidates are cleaned up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_choose_int8_keeps_the_fastest_recipe_within_tolerance(tmp_path):
    from archlab.bench.backends import ort_session
    from archlab.bench.graph_export import onnx_export
    from archlab.deploy.int8 import RECIPES, choose_int8
    from archlab.registry import create

    torch.manual_seed(0)
    model = create(
        "transformer_encoder_256", vocab_size=20, num_classes=3, d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0
    ).eval()
    x = torch.randint(0, 20, (64, 16))
    onnx_export(model, (x[:2],), path=tmp_path / "fp32.onnx")
    name = ort_session(str(tmp_path / "fp32.onnx"), 1).get_inputs()[0].name
    with torch.no_grad():
        want = model(x).argmax(-1).numpy()

    def agreement(path):  # the fp32 file scores 1.0 by construction
        return float((ort_session(str(path), 1).run(None, {name: x.numpy()})[0].argmax(-1) == want).mean())

    choice = choose_int8(
        tmp_path / "fp32.onnx",
        tmp_path / "model.int8.onnx",
        feed={name: x[:1].numpy()},
        metric=agreement,
        metric_name="test_agreement",
        calibration=[{name: x[i : i + 1].numpy()} for i in range(8)],
        num_heads=4,
        hidden_size=32,
        tolerance=0.05,
        min_time_s=0.06,
    )
    assert choice.fp32_metric == 1.0
    assert [c.recipe for c in choice.candidates] == list(RECIPES)
    ok = [c for c in choice.candidates if c.error is None]
    assert ok and all(c.p50_ms > 0 and c.size_bytes > 0 for c in ok)
    fused = next(c for c in choice.candidates if c.recipe == "fused+dynamic")
    assert fused.error is None and sum(fused.fused.values()) > 0  # LayerNorm / attention fusion fired
    kept = [c for c in ok if c.metric >= 1.0 - 0.05]
    if kept:
        assert choice.chosen == min(kept, key=lambda c: c.p50_ms).recipe
    assert (tmp_path / "model.int8.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx", "model.int8.onnx"]
    assert choice.to_dict()["schema_version"] == 1


def test_choose_int8_skips_fusion_without_attention_and_static_without_samples(tmp_path):
    from archlab.bench.graph_export import onnx_export
    from archlab.deploy.int8 import choose_int8
    from archlab.registry import create

    model = create("mlp_784_128_10").eval()
    onnx_export(model, (torch.randn(2, 784),), path=tmp_path / "fp32.onnx")
    choice = choose_int8(
        tmp_path / "fp32.onnx", tmp_path / "q.onnx", feed={"x": np.zeros((1, 784), np.float32)}, min_time_s=0.03
    )
    assert [c.recipe for c in choice.candidates] == ["dynamic"]
    assert choice.chosen == "dynamic" and choice.metric_delta() is None
