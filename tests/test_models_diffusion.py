"""Diffusion family: schedules, q_sample, loss, DDPM / DDIM samplers, classifier-free guidance."""

from __future__ import annotations

import math

import pytest
import torch

import archlab
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.diffusion import (
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    diffusion_loss,
    make_schedule,
    q_sample,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- schedules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("T", [10, 20, 1000])
def test_alpha_bar_strictly_decreasing_in_unit_interval(kind, T):
    s = make_schedule(T, kind)
    ab = s.alpha_bar
    assert ab.shape == (T,)
    assert (ab > 0).all() and (ab < 1).all()
    assert (ab[1:] < ab[:-1]).all()
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.allclose(ab, torch.cumprod(s.alphas, 0))


def test_cosine_schedule_endpoints_and_clip():
    s = make_schedule(1000, "cosine")
    assert s.alpha_bar[0] > 0.9999
    assert s.alpha_bar[-1] < 1e-4
    assert float(s.betas.max()) <= 0.999 + 1e-12
    # interior values follow f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)
    f = lambda t: math.cos(((t / 1000 + 0.008) / 1.008) * math.pi / 2) ** 2  # noqa: E731
    assert float(s.alpha_bar[499]) == pytest.approx(f(500) / f(0), rel=1e-6)


def test_linear_schedule_matches_ho_at_1000_steps():
    s = make_schedule(1000, "linear")
    assert float(s.betas[0]) == pytest.approx(1e-4)
    assert float(s.betas[-1]) == pytest.approx(0.02)


def test_bad_schedule_kind_names_kind():
    with pytest.raises(ConfigError, match="kind='quadratic'"):
        make_schedule(10, "quadratic")


# -- forward process ----------------------------------------------------------------------------


def test_q_sample_matches_closed_form():
    s = make_schedule(50, "cosine")
    x0, noise = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0, 7, 25, 49])
    xt = q_sample(x0, t, noise, s)
    for i in range(4):
        ab = float(s.alpha_bar[int(t[i])])
        expected = math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i]
        assert torch.allclose(xt[i], expected, atol=1e-6)


@pytest.mark.parametrize("bad", [-1, 50])
def test_q_sample_timestep_out_of_range(bad):
    s = make_schedule(50)
    with pytest.raises(ShapeError) as info:
        q_sample(torch.randn(2, 2), torch.tensor([0, bad]), torch.randn(2, 2), s)
    msg = str(info.value)
    assert "t" in msg and str(bad) in msg and "[0, 50)" in msg


@pytest.mark.parametrize("name", ["ddpm_unet_digits", "ddpm_points"])
def test_model_timestep_out_of_range_names_t_value_range(name):
    model = archlab.create(name, num_timesteps=20)
    x, _ = model.example_input(2)
    with pytest.raises(ShapeError) as info:
        model(x, torch.tensor([3, 20]))
    msg = str(info.value)
    assert "timesteps t" in msg and "[0, 20)" in msg and "20]" in msg and name in msg


def test_wrong_image_size_raises_shape_error():
    model = archlab.create("ddpm_unet_digits")
    with pytest.raises(ShapeError, match="ddpm_unet_digits"):
        model(torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))


def test_unet_config_validation_names_field():
    with pytest.raises(ConfigError, match="image_size=10"):
        archlab.create("ddpm_unet_digits", image_size=10, channel_mults=[1, 2, 2])
    with pytest.raises(ConfigError, match="groups=7"):
        archlab.create("ddpm_unet_digits", groups=7)


def test_time_conditioning_changes_prediction():
    model = archlab.create("ddpm_unet_digits").eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        a, b = model(x, torch.tensor([1])), model(x, torch.tensor([900]))
    assert not torch.allclose(a, b)


def test_class_conditioning_and_null_class():
    model = archlab.create("ddpm_unet_cond").eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 5])
    with torch.no_grad():
        e3, e7 = model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([7, 7]))
        null = model(x, t, torch.tensor([10, 10]))
        default = model(x, t)
    assert not torch.allclose(e3, e7)
    assert torch.equal(null, default)  # y=None means the null class
    with pytest.raises(ShapeError, match="y in"):
        model(x, t, torch.tensor([11, 0]))


def test_unconditional_model_rejects_labels():
    model = archlab.create("ddpm_points")
    with pytest.raises(ConfigError, match="num_classes=0"):
        model(torch.randn(2, 2), torch.tensor([0, 1]), torch.tensor([0, 1]))


# -- loss ---------------------------------------------------------------------------------------


def test_loss_is_finite_and_trains_every_parameter():
    model = archlab.create("ddpm_unet_cond", num_timesteps=20)
    s = make_schedule(20, "cosine")
    loss = diffusion_loss(model, torch.randn(4, 1, 8, 8), s, y=torch.tensor([0, 1, 2, 3]), generator=_gen(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_p_uncond_one_replaces_every_label_with_null():
    model = archlab.create("ddpm_points", num_classes=3, num_timesteps=20)
    s = make_schedule(20)
    x0, y = torch.randn(8, 2), torch.randint(0, 3, (8,))
    dropped = diffusion_loss(model, x0, s, y=y, p_uncond=1.0, generator=_gen(1))
    # same draws of t and noise (the rand for dropping comes after them)
    null = diffusion_loss(model, x0, s, y=torch.full((8,), 3), p_uncond=0.0, generator=_gen(1))
    kept = diffusion_loss(model, x0, s, y=y, p_uncond=0.0, generator=_gen(1))
    assert torch.equal(dropped, null)
    assert not torch.equal(dropped, kept)


def test_points_ddpm_learns_a_shifted_gaussian():
    torch.manual_seed(0)
    model = archlab.create("ddpm_points", hidden=64, n_layers=2, num_timesteps=50)
    s = make_schedule(50, "cosine")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = _gen(0)
    target = torch.tensor([2.0, -1.0])
    for _ in range(400):
        x0 = target + 0.3 * torch.randn(128, 2, generator=g)
        loss = diffusion_loss(model, x0, s, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    samples = ddpm_sample(model, (512, 2), s, generator=_gen(3))
    assert torch.allclose(samples.mean(0), target, atol=0.3)
    assert float(samples.std(0).max()) < 0.6  # far tighter than the N(0, I) start


class _OracleEps(torch.nn.Module):
    """The exact eps-predictor for data N(mu, sigma^2 I): x_t ~ N(sqrt(ab) mu, (ab sigma^2 + 1 - ab) I),
    so E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab sigma^2 + 1 - ab)."""

    data_shape = (2,)

    def __init__(self, schedule, mu, sigma):
        super().__init__()
        self.schedule, self.mu, self.sigma = schedule, mu, sigma
        self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the samplers a device

    def forward(self, x, t, y=None):
        ab = self.schedule.alpha_bar[t].float()[:, None]
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.mu) / (ab * self.sigma**2 + 1 - ab)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_samplers_recover_the_data_distribution_with_exact_eps(kind):
    """Sampler maths checked independently of training: exact eps in, N(mu, sigma^2) out."""
    s = make_schedule(200, kind)
    mu, sigma = torch.tensor([2.0, -1.0]), 0.3
    oracle = _OracleEps(s, mu, sigma)
    for out in (
        ddpm_sample(oracle, (4000, 2), s, generator=_gen(0)),
        ddim_sample(oracle, (4000, 2), s, steps=200, generator=_gen(0)),
        ddim_sample(oracle, (4000, 2), s, steps=200, eta=1.0, generator=_gen(0)),
    ):
        assert torch.allclose(out.mean(0), mu, atol=0.03)
        assert torch.allclose(out.std(0), torch.full((2,), sigma), atol=0.03)


# -- samplers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape", [("ddpm_points", (5, 2)), ("ddpm_unet_digits", (2, 1, 8, 8))])
def test_samplers_shapes_and_finite(name, shape):
    model = archlab.create(name, num_timesteps=12).eval()
    s = make_schedule(12, "cosine")
    for out in (
        ddpm_sample(model, shape, s, generator=_gen(0)),
        ddpm_sample(model, shape, s, generator=_gen(0), variance="posterior", clip_x0=1.0),
        ddim_sample(model, shape, s, steps=4, generator=_gen(0)),
        ddim_sample(model, shape, s, steps=12, eta=1.0, generator=_gen(0), clip_x0=1.0),
    ):
        assert out.shape == shape and torch.isfinite(out).all()


def test_ddim_timesteps_cover_both_ends():
    assert ddim_timesteps(10, 4) == [9, 6, 3, 0]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ConfigError, match="steps=11"):
        ddim_timesteps(10, 11)


def test_ddim_eta0_deterministic_given_x_T():
    model = archlab.create("ddpm_points", num_timesteps=20).eval()
    s = make_schedule(20, "cosine")
    x_T = torch.randn(6, 2)
    a = ddim_sample(model, (6, 2), s, steps=5, eta=0.0, x_T=x_T, generator=_gen(1))
    b = ddim_sample(model, (6, 2), s, steps=5, eta=0.0, x_T=x_T, generator=_gen(2))
    assert torch.equal(a, b)
    # with eta > 0 the internal noise matters, so the check above is not vacuous
    c = ddim_sample(model, (6, 2), s, steps=5, eta=1.0, x_T=x_T, generator=_gen(1))
    d = ddim_sample(model, (6, 2), s, steps=5, eta=1.0, x_T=x_T, generator=_gen(2))
    assert not torch.allclose(c, d)


def test_ddpm_reproducible_with_generator():
    model = archlab.create("ddpm_points", num_timesteps=10).eval()
    s = make_schedule(10)
    a = ddpm_sample(model, (4, 2), s, generator=_gen(5))
    b = ddpm_sample(model, (4, 2), s, generator=_gen(5))
    c = ddpm_sample(model, (4, 2), s, generator=_gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_cfg_w0_equals_conditional_sampling(sampler):
    model = archlab.create("ddpm_unet_cond", num_timesteps=10).eval()
    s = make_schedule(10, "cosine")
    y = torch.tensor([1, 4])
    run = (
        (lambda **kw: ddpm_sample(model, (2, 1, 8, 8), s, y=y, generator=_gen(0), **kw))
        if sampler == "ddpm"
        else (lambda **kw: ddim_sample(model, (2, 1, 8, 8), s, steps=4, y=y, generator=_gen(0), **kw))
    )
    cond = run(guidance=None)
    assert torch.allclose(run(guidance=0.0), cond, atol=1e-6)
    assert not torch.allclose(run(guidance=3.0), cond, atol=1e-3)


def test_guidance_on_unconditional_model_is_config_error():
    model = archlab.create("ddpm_points", num_timesteps=10)
    s = make_schedule(10)
    with pytest.raises(ConfigError, match="guidance"):
        ddpm_sample(model, (2, 2), s, guidance=2.0)
    with pytest.raises(ConfigError, match="guidance"):
        ddim_sample(model, (2, 2), s, steps=3, y=torch.tensor([0, 1]), guidance=2.0)


def test_wrong_sample_shape_is_shape_error():
    model = archlab.create("ddpm_unet_digits", num_timesteps=10)
    s = make_schedule(10)
    with pytest.raises(ShapeError, match=r"ddpm_unet_digits samples shape \(B, 1, 8, 8\)"):
        ddpm_sample(model, (2, 1, 16, 16), s)
    with pytest.raises(ShapeError, match="shape"):
        ddim_sample(model, (2, 8, 8), s, steps=2)
    with pytest.raises(ShapeError, match="x_T"):
        ddim_sample(model, (2, 1, 8, 8), s, steps=2, x_T=torch.randn(3, 1, 8, 8))


def test_schedule_longer_than_model_timesteps_is_caught():
    model = archlab.create("ddpm_points", num_timesteps=10).eval()
    with pytest.raises(ShapeError, match=r"\[0, 10\)"):
        ddpm_sample(model, (2, 2), make_schedule(20))
