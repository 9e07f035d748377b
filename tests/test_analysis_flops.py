"""FLOP counts against analytic formulas, and the same count on CPU and on meta."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archlab.analysis import summary


def _fc_total(model, *args):
    with FlopCounterMode(display=False) as fc:
        model(*args)
    return fc.get_total_flops()


def test_linear_matches_formula_and_macs_are_half():
    s = summary(nn.Linear(64, 32), input_shape=(8, 64))
    assert s.flops == 2 * 8 * 64 * 32
    assert s.macs == 8 * 64 * 32
    assert s.backward_flops == 2 * s.flops


def test_conv2d_matches_formula():
    s = summary(nn.Conv2d(3, 16, kernel_size=3, padding=1), input_shape=(2, 3, 20, 20))
    assert s.flops == 2 * 2 * 16 * 20 * 20 * 3 * 3 * 3


def test_transposed_conv_counted():
    # Transposed conv: each input position scatters a k*k*c_out kernel.
    s = summary(nn.ConvTranspose2d(4, 8, 3, stride=2), input_shape=(2, 4, 8, 8))
    assert s.flops == 2 * 2 * 8 * 8 * 4 * 8 * 3 * 3


class _Attn(nn.Module):
    def __init__(self, masked: bool):
        super().__init__()
        self.masked = masked

    def forward(self, q, k, v):
        if self.masked:
            mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return F.scaled_dot_product_attention(q, k, v, is_causal=False)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_sdpa_matches_formula_on_cpu_and_meta(masked, device):
    b, h, lq, lk, d = 2, 4, 16, 12, 8
    q, k, v = torch.randn(b, h, lq, d), torch.randn(b, h, lk, d), torch.randn(b, h, lk, d)
    s = summary(_Attn(masked), (q, k, v), device=device)
    assert s.flops == 2 * b * h * lq * lk * d * 2  # QK^T and AV
    assert not s.uncounted


@pytest.mark.parametrize("cls,gates", [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)])
def test_recurrent_matches_formula_and_cpu_equals_meta(cls, gates):
    b, t, i, h = 3, 7, 5, 6
    model = cls(i, h, num_layers=2, batch_first=True, bidirectional=True)
    x = torch.randn(b, t, i)
    per = lambda inp: 2 * b * t * (inp * gates * h + h * gates * h) * 2  # noqa: E731 (2 directions)
    expected = per(i) + per(2 * h)
    cpu = summary(model, x, device="cpu")
    meta = summary(model, x, device="meta")
    assert cpu.flops == expected == meta.flops
    # and FlopCounterMode agrees on meta, where it sees the decomposed cell
    assert _fc_total(model.to("meta"), x.to("meta")) == expected


def test_lstm_projection_counted():
    model = nn.LSTM(4, 8, proj_size=3)
    s = summary(model, torch.randn(5, 2, 4), device="cpu")
    assert s.flops == 2 * 10 * (4 * 32 + 3 * 32 + 8 * 3)


def test_embedding_bag_counted_not_zero():
    s = summary(nn.EmbeddingBag(100, 16, mode="sum"), torch.randint(0, 100, (4, 5)))
    assert s.flops == 4 * 5 * 16


class _Custom(nn.Module):
    def forward(self, x):
        return torch.linalg.inv(x) @ x


def test_unknown_costly_op_is_listed_not_silently_zero():
    s = summary(_Custom(), input_shape=(3, 4, 4), device="cpu")
    assert any("inv" in op or "linalg" in op for op in s.uncounted), s.uncounted
    assert any("no FLOP formula" in n for n in s.notes)


def test_totals_equal_flopcountermode_on_meta_for_transformer():
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
    x = torch.randn(2, 10, 32)
    s = summary(layer, x)
    assert s.flops == _fc_total(layer.to("meta"), x.to("meta"))
    assert s.flops > 0


def test_per_module_attribution_sums_to_total():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    s = summary(model, input_shape=(2, 8), depth=1)
    children = [r for r in s.rows if r.depth == 1]
    assert sum(r.flops for r in children) == s.flops == 2 * 2 * (8 * 16 + 16 * 4)
    assert sum(t.flops for t in s.by_type.values()) == s.flops
