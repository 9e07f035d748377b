"""Summary rows, memory figures, renders, receptive field, meta copies and bad inputs."""

import json
import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn

import archlab
from archlab.analysis import summary
from archlab.analysis.memory import GB
from archlab.errors import ConfigError, ShapeError


def _mlp():
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))


def test_rows_have_shapes_params_and_depth_limit():
    s = summary(_mlp(), input_shape=(4, 10), depth=1)
    assert [r.name for r in s.rows] == ["Sequential", "0", "1", "2"]
    first = s.rows[1]
    assert first.input_shapes == [[4, 10]] and first.output_shapes == [[4, 20]]
    assert first.params == 10 * 20 + 20 and first.trainable_params == first.params
    assert s.total_params == 10 * 20 + 20 + 20 * 3 + 3
    assert summary(_mlp(), input_shape=(4, 10), depth=0).rows[0].depth == 0
    assert len(summary(_mlp(), input_shape=(4, 10), depth=0).rows) == 1


def test_frozen_params_not_trainable_and_no_gradient_memory():
    m = _mlp()
    for p in m[0].parameters():
        p.requires_grad_(False)
    s = summary(m, input_shape=(4, 10))
    assert s.trainable_params == 20 * 3 + 3
    assert s.memory.gradient_bytes("fp32") == 4 * (20 * 3 + 3)


def test_memory_per_dtype_and_optimizers():
    s = summary(_mlp(), input_shape=(4, 10))
    n = s.total_params
    assert s.memory.param_bytes("fp32") == 4 * n
    assert s.memory.param_bytes("bf16") == 2 * n
    assert s.memory.param_bytes("int8") == n
    assert s.memory.optimizer_bytes("sgd") == 0
    assert s.memory.optimizer_bytes("sgd_momentum") == 4 * n
    assert s.memory.optimizer_bytes("adam") == 8 * n
    with pytest.raises(ConfigError, match="dtype"):
        s.memory.param_bytes("fp8")


def test_saved_activations_measured():
    # Linear saves its input; ReLU saves its output; the second Linear saves its input (= ReLU's out,
    # the same tensor, counted once). Weights are not activations.
    s = summary(_mlp(), input_shape=(4, 10))
    assert s.memory.activation_bytes == 4 * (4 * 10 + 4 * 20)
    assert s.memory.activations_at(8) == 2 * s.memory.activation_bytes


def test_fits_and_max_batch_size_are_consistent():
    s = summary(_mlp(), input_shape=(4, 10))
    per_sample = s.memory.activations_at(1)
    fixed = s.memory.training_peak(0)
    budget_gb = (fixed + 100 * per_sample + per_sample // 2) / GB
    assert s.max_batch_size(budget_gb) == 100
    assert s.fits(budget_gb, batch_size=100) and not s.fits(budget_gb, batch_size=101)
    assert s.max_batch_size(fixed / GB / 2) == 0


def test_meta_copy_leaves_the_user_model_alone():
    m = _mlp()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    s = summary(m, input_shape=(4, 10))
    assert s.device == "meta"
    assert all(p.device.type == "cpu" for p in m.parameters())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_cpu_run_restores_batchnorm_stats():
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    before = m[1].running_mean.clone()
    summary(m, torch.randn(8, 4) + 5, device="cpu")
    assert torch.equal(m[1].running_mean, before)


def test_compiled_module_is_unwrapped():
    m = _mlp()
    compiled = torch.compile(m)
    s = summary(compiled, input_shape=(2, 10))
    assert s.model == "Sequential" and s.total_params == sum(p.numel() for p in m.parameters())


def test_registry_model_uses_example_input_and_batch_size():
    s = summary("mlp_784_128_10", batch_size=5)
    assert s.input_shapes == [[5, 784]] and s.output_shapes == [[5, 10]]
    assert s.flops == 2 * 5 * (784 * 128 + 128 * 10)


def test_bad_input_raises_the_models_shape_error():
    with pytest.raises(ShapeError, match="mlp_784_128_10"):
        summary("mlp_784_128_10", input_shape=(2, 3, 784))


def test_missing_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="input_shape"):
        summary(_mlp())


def test_receptive_field_of_conv_stack_and_branches():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, dilation=2))
    rf = summary(net, input_shape=(1, 1, 32, 32)).receptive_field
    assert rf.size == (3 + 1 + 2 * 2 * 2,) * 2  # 3 -> 4 (pool, jump 2) -> 4 + (3-1)*2*2
    assert rf.jump == (2.0, 2.0)

    class TCN(nn.Module):  # causal dilated 1-D convs: RF = 1 + sum (k-1) d
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv1d(2, 2, 3, dilation=d) for d in (1, 2, 4))

        def forward(self, x):
            for c in self.convs:
                x = c(nn.functional.pad(x, (2 * c.dilation[0], 0)))
            return x

    assert summary(TCN(), input_shape=(1, 2, 64)).receptive_field.size == (1 + 2 * (1 + 2 + 4),)


def test_receptive_field_attribute_takes_precedence():
    class WithRF(nn.Conv1d):
        receptive_field = 99

    rf = summary(WithRF(1, 1, 3), input_shape=(1, 1, 10)).receptive_field
    assert rf.size == (99,) and rf.source == "model attribute"


def test_renders_json_markdown_html_rich():
    s = summary(_mlp(), input_shape=(4, 10), depth=1)
    d = json.loads(archlab.render(s, "json"))
    assert d["schema_version"] == 1
    assert d["totals"]["flops"] == s.flops and len(d["rows"]) == len(s.rows)
    assert {"name", "type", "flops", "macs", "backward_flops", "saved_bytes"} <= set(d["rows"][0])
    md = archlab.render(s, "md")
    assert md.count("\n| ") >= len(s.rows) and "MACs" in md
    ET.fromstring(archlab.render(s, "html"))  # well-formed fragment
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(archlab.render(s, "rich"))
    assert "Linear" in console.export_text()
    assert "Linear" in archlab.render(s, "text")
    assert "Linear" not in repr(s) and "params=" in repr(s)  # a short repr, not a table


def test_huge_config_on_meta_allocates_nothing():
    with torch.device("meta"):  # 0.5 B parameters, never allocated
        layers = nn.Sequential(*[nn.Linear(8192, 8192) for _ in range(8)])
    s = summary(layers, input_shape=(1, 8192))
    assert s.total_params == 8 * (8192 * 8192 + 8192)
    assert s.memory.param_bytes("fp32") > 2 * GB - 1


def test_top_level_exports():
    assert archlab.summary("mlp_tabular").total_params > 0
    assert callable(archlab.diagram) and callable(archlab.compare)


def _empirical_rf(model, x):
    """Span of input positions that reach the centre output, from the gradient (positive weights
    and inputs, so no contribution cancels)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() + 0.01)
    x = x.abs().add(0.1).requires_grad_(True)
    y = model(x)
    centre = tuple(s // 2 for s in y.shape[2:])
    y[(0, 0, *centre)].backward()
    nz = x.grad[0, 0].nonzero()
    return tuple(int(nz[:, d].max() - nz[:, d].min() + 1) for d in range(nz.shape[1]))


@pytest.mark.parametrize(
    "model,x",
    [
        (nn.Sequential(nn.Conv1d(1, 2, 5), nn.AvgPool1d(2), nn.Conv1d(2, 2, 5)), torch.randn(1, 1, 64)),
        (
            nn.Sequential(
                nn.Conv1d(1, 2, 3, dilation=2),
                nn.AvgPool1d(3, stride=2),
                nn.Conv1d(2, 2, 3, stride=2),
                nn.Conv1d(2, 2, 3),
            ),
            torch.randn(1, 1, 128),
        ),
        (nn.Sequential(nn.Conv2d(1, 2, 5), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, dilation=2)), torch.randn(1, 1, 48, 48)),
    ],
)
def test_receptive_field_matches_gradient_tracing(model, x):
    """1-D and 2-D stacks with pooling, stride and dilation (issue 15: 1-D pooling was lost)."""
    traced = summary(model, x, device="cpu").receptive_field.size
    assert traced == _empirical_rf(model, x)


def test_receptive_field_through_1d_max_pooling():
    m = nn.Sequential(nn.Conv1d(1, 4, 5), nn.MaxPool1d(2), nn.Conv1d(4, 4, 5))
    assert summary(m, torch.randn(1, 1, 64), device="cpu").receptive_field.size == (14,)
