"""SSM family: S4D convolution = recurrence, causality of every mixer and model, init, errors."""

from __future__ import annotations

import math

import pytest
import torch

import archlab
from archlab.errors import ConfigError, ShapeError
from archlab.models.ssm_layers import LongConv, S4DLayer, SelectiveSSM

MIXERS = {
    "s4d": lambda: S4DLayer(8, d_state=16),
    "mamba": lambda: SelectiveSSM(8, d_state=4, expand=2, d_conv=4),
    "longconv": lambda: LongConv(8, kernel_size=7),
}


def _run_steps(layer, u):
    state, ys = None, []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1)


@pytest.mark.parametrize("kind", sorted(MIXERS))
def test_convolution_mode_equals_recurrent_step_mode(kind):
    torch.manual_seed(0)
    layer = MIXERS[kind]()
    u = torch.randn(3, 50, 8)
    with torch.no_grad():
        assert torch.allclose(layer(u), _run_steps(layer, u), atol=1e-4)


def test_s4d_kernel_matches_explicit_recurrence():
    torch.manual_seed(0)
    layer = S4DLayer(4, d_state=8)
    L = 30
    k = layer.kernel(L)
    # impulse response of s_t = A~ s_{t-1} + u_t, y_t = 2 Re(sum C B~ s_t)
    _, dA, CB = layer._discrete()
    s = torch.ones_like(dA)
    expected = []
    for _ in range(L):
        expected.append(2 * (CB * s).sum(-1).real)
        s = dA * s
    assert torch.allclose(k, torch.stack(expected, dim=1), atol=1e-5)


def test_s4d_lin_initialisation():
    layer = S4DLayer(3, d_state=8, dt_min=1e-3, dt_max=1e-1)
    A_real = -torch.exp(layer.log_A_real)
    assert torch.allclose(A_real, torch.full((3, 4), -0.5))
    assert torch.allclose(layer.A_imag, math.pi * torch.arange(4.0).repeat(3, 1))
    dt = torch.exp(layer.log_dt)
    assert ((dt >= 1e-3) & (dt <= 1e-1)).all()
    # ZOH keeps the discrete system stable: |A~| = exp(dt Re A) < 1
    _, dA, _ = layer._discrete()
    assert (dA.abs() < 1).all()


@pytest.mark.parametrize("kind", sorted(MIXERS))
def test_every_mixer_is_causal(kind):
    torch.manual_seed(0)
    layer = MIXERS[kind]()
    u = torch.randn(2, 40, 8)
    v = u.clone()
    v[:, 25:] += torch.randn(2, 15, 8)
    with torch.no_grad():
        a, b = layer(u), layer(v)
    assert torch.allclose(a[:, :25], b[:, :25], atol=1e-5)
    assert not torch.allclose(a[:, 25], b[:, 25], atol=1e-4)


@pytest.mark.parametrize("name", ["ssm_s4d_classifier", "longconv_classifier", "mamba_classifier"])
def test_classifier_pool_last_is_causal_and_any_length(name):
    model = archlab.create(name, pool="last").eval()
    x = torch.randn(2, 30, 1)
    with torch.no_grad():
        full = model(x)
        assert model(torch.randn(2, 7, 1)).shape == (2, 10)
        assert model(torch.randn(2, 100, 1)).shape == (2, 10)
        # appending future steps changes the last-step logits, but earlier prefixes are unaffected
        y = torch.cat([x, torch.randn(2, 5, 1)], dim=1)
        h_x = model.backbone(model.encoder(x))
        h_y = model.backbone(model.encoder(y))
    assert full.shape == (2, 10)
    assert torch.allclose(h_x, h_y[:, :30], atol=1e-5)


@pytest.mark.parametrize("name", ["mamba_lm", "s4d_lm"])
def test_language_model_causal_and_streaming_step_matches_forward(name):
    model = archlab.create(name).eval()
    tokens = torch.randint(0, 65, (2, 20))
    other = tokens.clone()
    other[:, 12:] = torch.randint(0, 65, (2, 8))
    with torch.no_grad():
        logits = model(tokens)
        assert torch.allclose(logits[:, :12], model(other)[:, :12], atol=1e-5)
        states, stepped = None, []
        for t in range(20):
            out, states = model.step(tokens[:, t], states)
            stepped.append(out)
    assert logits.shape == (2, 20, 65)
    assert torch.allclose(torch.stack(stepped, dim=1), logits, atol=1e-4)


def test_forecaster_output_shape():
    model = archlab.create("ssm_forecaster").eval()
    x = torch.randn(4, 48, 1)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 12, 1) and torch.isfinite(out).all()


def test_forecaster_learns_a_sine_wave():
    torch.manual_seed(0)
    model = archlab.create("ssm_forecaster", horizon=4, d_model=32, seq_len=32)
    t = torch.arange(0, 2000, dtype=torch.float32)
    series = torch.sin(2 * math.pi * t / 16)
    idx = torch.arange(0, 1900, 19)
    xs = torch.stack([series[i : i + 32] for i in idx])[:, :, None]
    ys = torch.stack([series[i + 32 : i + 36] for i in idx])[:, :, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05  # predicting zero scores 0.5 (variance of a sine)


def test_config_errors_name_field_and_value():
    with pytest.raises(ConfigError, match="d_state=7"):
        archlab.create("ssm_s4d_classifier", d_state=7)
    with pytest.raises(ConfigError, match="dt_min=0.5"):
        archlab.create("ssm_s4d_classifier", dt_min=0.5, dt_max=0.1)
    archlab.create("mamba_classifier", d_state=7)  # odd is fine for the real-valued Mamba state


def test_input_errors():
    lm = archlab.create("mamba_lm")
    with pytest.raises(ShapeError, match=r"mamba_lm expects tokens ids in \[0, 65\)"):
        lm(torch.tensor([[1, 65]]))
    with pytest.raises(ShapeError, match="long"):
        lm(torch.randn(2, 5))
    clf = archlab.create("ssm_s4d_classifier")
    with pytest.raises(ShapeError, match="ssm_s4d_classifier"):
        clf(torch.randn(2, 40, 3))
