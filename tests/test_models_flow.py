"""Flow family: invertibility, log-determinants against autograd Jacobians, ActNorm, likelihood."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

import archlab
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.flow import bits_per_dim, dequantize, nll_loss


def _ready(name: str, **overrides) -> torch.nn.Module:
    """A flow with ActNorm initialised on a batch and every weight perturbed off the identity.

    The couplings' last layers start at zero (each coupling is the identity), which would make
    the invertibility and Jacobian checks trivial; the perturbation makes them real.
    """
    torch.manual_seed(0)
    model = archlab.create(name, **overrides).train()
    model(torch.randn(64, *model.data_shape) if name != "realnvp_image" else torch.rand(64, *model.data_shape))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("realnvp_2d", {}),
        ("realnvp_tabular", {}),
        ("realnvp_2d", {"dim": 5}),
        ("realnvp_image", {}),
        ("realnvp_image", {"image_size": 8, "n_scales": 2}),
    ],
)
def test_inverse_of_forward_is_identity(name, overrides):
    model = _ready(name, **overrides)
    x = torch.randn(16, *model.data_shape) if name != "realnvp_image" else torch.rand(16, *model.data_shape)
    with torch.no_grad():
        z, log_det = model(x)
        assert z.shape == x.shape and log_det.shape == (16,)
        assert not torch.allclose(z, x, atol=1e-3)  # the flow really transforms
        assert torch.allclose(model.inverse(z), x, atol=1e-5)
        zz = torch.randn_like(x)
        assert torch.allclose(model(model.inverse(zz))[0], zz, atol=1e-4)


@pytest.mark.parametrize(
    "name,overrides,shape",
    [
        ("realnvp_2d", {}, (2,)),
        ("realnvp_2d", {"dim": 5, "n_couplings": 3}, (5,)),
        ("realnvp_image", {"image_size": 4}, (1, 4, 4)),
        ("realnvp_image", {"in_channels": 2, "image_size": 4, "n_scales": 2, "n_couplings": 2}, (2, 4, 4)),
    ],
)
def test_log_det_equals_autograd_jacobian(name, overrides, shape):
    model = _ready(name, **overrides).double()
    d = math.prod(shape)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand((1, *shape), generator=g, dtype=torch.float64)
        J = jacobian(lambda v: model(v)[0], x).reshape(d, d)
        sign, logabs = torch.linalg.slogdet(J)
        assert sign != 0
        assert float(model(x)[1].detach()) == pytest.approx(float(logabs), abs=1e-6)


def test_log_prob_integrates_to_one_in_2d():
    model = _ready("realnvp_2d")
    grid = torch.linspace(-8, 8, 321)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    with torch.no_grad():
        mass = model.log_prob(pts).exp().sum() * (grid[1] - grid[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.02)


def test_log_prob_is_prior_plus_log_det():
    model = _ready("realnvp_tabular")
    x = torch.randn(4, 8)
    with torch.no_grad():
        z, log_det = model(x)
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
        assert torch.allclose(model.log_prob(x), prior + log_det, atol=1e-5)


def test_actnorm_data_dependent_init_and_buffer_round_trip(tmp_path):
    torch.manual_seed(0)
    model = archlab.create("realnvp_tabular").train()
    first = model.flow.layers[0]
    assert int(first.initialized) == 0
    x = 3.0 + 2.0 * torch.randn(256, 8)
    out, _ = first(x)
    assert int(first.initialized) == 1
    assert torch.allclose(out.mean(0), torch.zeros(8), atol=1e-4)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(8), atol=1e-3)
    model(x)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(256, 8))  # a second batch must not re-initialise
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in snapshot.items())

    archlab.save(model, tmp_path / "flow")
    loaded = archlab.load(tmp_path / "flow").train()
    assert all(int(m.initialized) == 1 for m in loaded.modules() if hasattr(m, "initialized"))
    loaded(torch.randn(32, 8) * 10)  # training-mode forward on a loaded model keeps the weights
    for k, v in snapshot.items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_sample_shapes_and_generator():
    for name in ("realnvp_2d", "realnvp_image"):
        model = _ready(name)
        a = model.sample(5, generator=torch.Generator().manual_seed(1))
        b = model.sample(5, generator=torch.Generator().manual_seed(1))
        assert a.shape == (5, *model.data_shape) and torch.isfinite(a).all()
        assert torch.equal(a, b)


def test_training_lowers_nll_on_a_correlated_gaussian():
    torch.manual_seed(0)
    model = archlab.create("realnvp_2d", n_couplings=4, hidden=32).train()
    cov = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    dist = torch.distributions.MultivariateNormal(torch.tensor([1.0, -2.0]), cov)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = nll_loss(model, dist.sample((256,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = dist.sample((2000,))
    with torch.no_grad():
        nll = float(nll_loss(model, test))
    # the true entropy is the best achievable NLL; a diagonal Gaussian fit would reach 2.84 + 0.83
    assert nll < float(dist.entropy()) + 0.3


def test_bits_per_dim_formula():
    # uniform density on [0, 1)^D (log p = 0) carries log2(n_bins) bits per dimension
    assert float(bits_per_dim(torch.tensor(0.0), 64, 256)) == pytest.approx(8.0)
    lp = torch.tensor([-100.0, 20.0])
    expected = (-lp / 64 + math.log(17)) / math.log(2)
    assert torch.allclose(bits_per_dim(lp, 64, n_bins=17), expected)
    with pytest.raises(ConfigError, match="num_dims=0"):
        bits_per_dim(lp, 0)


def test_dequantize_stays_in_its_bin():
    x = torch.randint(0, 17, (100, 1, 8, 8))
    u = dequantize(x, 17, generator=torch.Generator().manual_seed(0))
    assert ((u >= 0) & (u < 1)).all()
    assert torch.equal((u * 17).floor().long(), x)
    with pytest.raises(ShapeError, match="n_bins=17"):
        dequantize(torch.tensor([17]), 17)


def test_image_flow_bits_per_dim_on_dequantized_digits_is_finite():
    model = _ready("realnvp_image")
    u = dequantize(torch.randint(0, 17, (8, 1, 8, 8)), 17)
    bpd = bits_per_dim(model.log_prob(u), 64, n_bins=17)
    assert bpd.shape == (8,) and torch.isfinite(bpd).all()


def test_config_errors_name_parameter_and_value():
    with pytest.raises(ConfigError, match="dim=1"):
        archlab.create("realnvp_2d", dim=1)
    with pytest.raises(ConfigError, match="image_size=6"):
        archlab.create("realnvp_image", image_size=6, n_scales=2)
    with pytest.raises(ConfigError, match="image_size=12"):
        archlab.create("realnvp_image", image_size=12, n_scales=3)


def test_wrong_input_shape_is_shape_error():
    model = archlab.create("realnvp_image")
    with pytest.raises(ShapeError, match="realnvp_image"):
        model(torch.rand(2, 1, 16, 16))
    with pytest.raises(ShapeError, match="z"):
        archlab.create("realnvp_2d").inverse(torch.randn(2, 3))
