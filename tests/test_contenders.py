"""The contender families: what each one's paper says it computes, checked on small inputs.

DLinear / NLinear (Zeng et al. 2023), N-BEATS (Oreshkin et al. 2020), InceptionTime (Ismail
Fawaz et al. 2020), MiniRocket (Dempster et al. 2021) with its data-fitting hook and ridge head,
FT-Transformer and the tabular ResNet (Gorishniy et al. 2021). The registry-wide contract
(forward, backward, bitwise save/load) is in test_contract.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import archlab
from archlab.data.base import DataBundle, Split
from archlab.errors import ShapeError
from archlab.models.rocket import NUM_KERNELS, dilation_plan, kernel_weights, ridge_cv
from archlab.runs.adapt import fit_to_data
from archlab.runs.use import load_run

# -- linear forecasters ------------------------------------------------------------------------


def test_nlinear_follows_a_level_shift():
    """NLinear subtracts the last value and adds it back: f(x + c) = f(x) + c."""
    torch.manual_seed(0)
    model = archlab.create("nlinear", seq_len=24, horizon=3).eval()
    x = torch.randn(4, 24, 1)
    with torch.no_grad():
        assert torch.allclose(model(x + 5.0), model(x) + 5.0, atol=1e-5)


def test_dlinear_trend_of_a_constant_is_the_constant_and_can_express_seasonal_naive():
    model = archlab.create("dlinear", seq_len=24, horizon=1, kernel_size=13).eval()
    flat = torch.full((2, 1, 24), 3.0)
    assert torch.allclose(model.decompose(flat), flat)  # the ends are repeated, not zero-padded
    # seasonal naive (lag 12) is one weight of 1 on both maps: the sum of trend and season is x
    with torch.no_grad():
        for m in (model.season.maps[0], model.trend.maps[0]):
            m.weight.zero_()
            m.bias.zero_()
            m.weight[0, 24 - 12] = 1.0
    x = torch.randn(5, 24, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), x[:, 24 - 12, :], atol=1e-5)


def test_linear_forecaster_mixes_channels_and_checks_the_window():
    model = archlab.create("dlinear", seq_len=16, horizon=4, in_features=3, out_features=2)
    assert model(torch.randn(2, 16, 3)).shape == (2, 4, 2)
    with pytest.raises(ShapeError, match="16"):
        model(torch.randn(2, 20, 3))


# -- N-BEATS -----------------------------------------------------------------------------------


def test_nbeats_shared_blocks_are_saved_once(tmp_path):
    shared = archlab.create("nbeats_interpretable", seq_len=24, horizon=6)
    separate = archlab.create("nbeats_interpretable", seq_len=24, horizon=6, share_weights=False)
    assert len(shared.blocks) == 2 and shared.repeats == (3, 3)
    assert 2 * separate.num_params() > 5 * shared.num_params()
    archlab.save(shared, tmp_path / "m")
    assert len(archlab.load(tmp_path / "m").state_dict()) == len(shared.state_dict())


def test_nbeats_trend_stack_forecasts_a_polynomial():
    """A trend-only N-BEATS forecasts in the span of t**0..t**degree: its 4th difference is 0."""
    model = archlab.create("nbeats_interpretable", seq_len=24, horizon=8, stack_types=["trend"], degree=2).eval()
    with torch.no_grad():
        y = model(torch.randn(3, 24, 1)).double()
    third = y.diff(n=3, dim=1)
    assert third.abs().max() < 1e-4 * (1 + y.abs().max())


def test_nbeats_seasonality_needs_two_steps():
    with pytest.raises(Exception, match="horizon >= 2"):
        archlab.create("nbeats_interpretable", horizon=1)


# -- InceptionTime ------------------------------------------------------------------------------


def test_inception_time_layout():
    model = archlab.create("inception_time", in_channels=3, num_classes=4, depth=6)
    assert len(model.shortcuts) == 2  # a residual every three modules
    assert model.modules_[0].out_channels == 4 * 32
    assert not isinstance(model.modules_[0].bottleneck, torch.nn.Identity)  # 3 channels: bottleneck
    one = archlab.create("inception_time", in_channels=1)
    assert isinstance(one.modules_[0].bottleneck, torch.nn.Identity)
    assert model(torch.randn(2, 3, 77)).shape == (2, 4)  # any length: "same" padding + pooling


# -- MiniRocket ---------------------------------------------------------------------------------


def test_minirocket_kernels_and_dilations_follow_the_paper():
    w = kernel_weights()
    assert w.shape == (84, 9) and torch.all(w.sum(dim=1) == 0)  # six -1 and three 2
    assert torch.all((w == 2).sum(dim=1) == 3)
    dilations, counts = dilation_plan(150, 10_000)
    assert dilations[0] == 1 and dilations[-1] <= (150 - 1) // 8
    assert sum(counts) == 10_000 // NUM_KERNELS
    model = archlab.create("minirocket", seq_len=150)
    assert model.num_features == 9996 and model.head.in_features == 9996


def _two_shapes(n: int, length: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a bump in the first half; class 1: a bump in the second (noise around both)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 * torch.randn(n, 1, length, generator=g)
    t = torch.arange(length, dtype=torch.float32)
    for i in range(n):
        centre = length * (0.25 if y[i] == 0 else 0.75)
        x[i, 0] += torch.exp(-((t - centre) ** 2) / 20)
    return x, y


def test_minirocket_fit_to_data_draws_biases_and_fits_a_ridge_head(tmp_path):
    x, y = _two_shapes(40)
    model = archlab.create("minirocket", seq_len=60, num_features=840)
    assert not bool(model.fitted) and torch.all(model.bias0 == 0)
    record = model.fit_to_data((x,), y)
    assert bool(model.fitted) and record["head"] == "ridge" and record["series"] == 40
    assert record["alpha"] in model.config.alphas
    assert not torch.all(model.bias0 == 0)
    xt, yt = _two_shapes(40, seed=1)
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean()
    assert acc >= 0.9
    # the fitted biases and head travel in the safetensors file: reload is bitwise
    archlab.save(model, tmp_path / "m")
    loaded = archlab.load(tmp_path / "m").eval()
    assert bool(loaded.fitted)
    with torch.no_grad():
        assert torch.equal(loaded(xt), model(xt))


def test_minirocket_ppv_is_a_proportion():
    x, y = _two_shapes(6)
    model = archlab.create("minirocket", seq_len=60, num_features=168)
    model.fit_to_data((x,), None)  # biases only: no target, head left to training
    feats = model.transform(x)
    assert feats.shape == (6, 168) and feats.min() >= 0 and feats.max() <= 1


def test_ridge_cv_matches_the_closed_form_and_leave_one_out():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(12, 5)))
    y = torch.tensor(rng.normal(size=(12, 2)))
    alphas = [0.1, 1.0, 10.0]
    weight, bias, alpha = ridge_cv(x, y, alphas)
    mean, scale = x.mean(0), x.std(0)
    z, yc = (x - mean) / scale, y - y.mean(0)

    def solve(zz, yy, a):
        return torch.linalg.solve(zz.T @ zz + a * torch.eye(5, dtype=zz.dtype), zz.T @ yy)

    coef = solve(z, yc, alpha)
    assert torch.allclose(weight, coef / scale[:, None], atol=1e-8)
    assert torch.allclose(x @ weight + bias, z @ coef + y.mean(0), atol=1e-8)

    def loo(a):  # brute force: refit without each sample (standardisation kept, intercept refitted)
        errs = []
        for i in range(12):
            keep = torch.arange(12) != i
            zi, yi = z[keep], y[keep]
            zm, ym = zi.mean(0), yi.mean(0)
            c = solve(zi - zm, yi - ym, a)
            errs.append(((z[i] - zm) @ c + ym - y[i]).pow(2).mean())
        return float(torch.stack(errs).mean())

    assert alpha == min(alphas, key=loo)


def test_runs_layer_calls_fit_to_data_and_records_it(tmp_path):
    x, y = _two_shapes(24)
    xv, yv = _two_shapes(8, seed=2)
    bundle = DataBundle(
        name="shapes",
        modality="time_series",
        task="classification",
        train=Split((x,), y),
        val=Split((xv,), yv),
        info={"in_channels": 1, "seq_len": 60, "num_classes": 2},
    )
    result = archlab.fit(
        "minirocket",
        bundle,
        model_overrides={"num_features": 168},
        out_dir=tmp_path,
        run_name="r",
        max_steps=2,
        batch_size=8,
        lr=1e-4,
    )
    info = json.loads((result.run_dir / "data_info.json").read_text())
    assert info["fit_to_data"]["head"] == "ridge" and info["fit_to_data"]["series"] == 24
    _, loaded, _, _ = load_run(result.run_dir)
    assert bool(loaded.fitted) and not torch.all(loaded.bias0 == 0)
    # a model without the method is left alone
    assert fit_to_data(archlab.create("mlp_tabular"), bundle) is None


# -- tables -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ft_transformer_small", "tabular_resnet"])
def test_tabular_models_take_categorical_columns(name):
    model = archlab.create(name, in_features=4, cat_cardinalities=[3, 5], out_features=2).eval()
    x, ids = model.example_input(batch_size=6)
    assert ids.dtype == torch.int64 and ids.shape == (6, 2)
    with torch.no_grad():
        out = model(x, ids)
        changed = model(x, (ids + 1) % torch.tensor([3, 5]))
    assert out.shape == (6, 2) and not torch.allclose(out, changed)  # the categories are read
    with pytest.raises(ShapeError, match="x_cat"):
        model(x)


def test_ft_transformer_tokens_and_cls():
    model = archlab.create("ft_transformer_small", in_features=7, out_features=3)
    assert model.config.d_token == 64 and model.tokenizer.weight.shape == (7, 64)
    tokens = model.tokenizer(torch.randn(2, 7), None)
    assert tokens.shape == (2, 7, 64)  # one token per feature; [CLS] is prepended in forward
    # the output reads the [CLS] position: permuting the feature columns' tokens alone does not
    # change it (no positions), so the model is a set function of (value, feature-embedding) pairs
    model.eval()
    x = torch.randn(3, 7)
    perm = torch.randperm(7)
    permuted = archlab.create("ft_transformer_small", in_features=7, out_features=3).eval()
    permuted.load_state_dict(model.state_dict())
    with torch.no_grad():
        permuted.tokenizer.weight.copy_(model.tokenizer.weight[perm])
        permuted.tokenizer.bias.copy_(model.tokenizer.bias[perm])
        assert torch.allclose(model(x), permuted(x[:, perm]), atol=1e-5)
