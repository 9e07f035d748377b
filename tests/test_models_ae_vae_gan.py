"""Autoencoder, VAE and GAN families and their tasks (reconstruction, ELBO, adversarial step)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import ConfigError, ShapeError
from archlab.models.autoencoder import AutoencoderConfig, ConvAutoencoderConfig
from archlab.models.gan import DCGANConfig, GANConfig
from archlab.models.vae import ConvVAEConfig, VAEConfig
from archlab.tasks.gan import d_loss, g_loss, gan_step
from archlab.tasks.reconstruction import (
    anomaly_scores,
    choose_threshold,
    reconstruction_loss,
)
from archlab.tasks.vae import elbo_loss, gaussian_kl

AE_NAMES = ["autoencoder_784_128_64", "autoencoder_784_128", "autoencoder_digits", "conv_autoencoder"]
VAE_NAMES = ["vae_mlp", "vae_digits", "vae_conv"]
GAN_NAMES = ["gan_mlp", "gan_linear", "gan_mlp_mnist", "dcgan", "dcgan_sn"]


def test_presets_registered_with_families():
    assert set(AE_NAMES) <= set(archlab.list_models(family="autoencoder"))
    assert set(VAE_NAMES) <= set(archlab.list_models(family="vae"))
    assert set(GAN_NAMES) <= set(archlab.list_models(family="gan"))


# -- autoencoders --------------------------------------------------------------------------------


def test_seed_autoencoder_layers():
    m = archlab.create("autoencoder_784_128_64")
    enc = [layer for layer in m.encoder.modules() if isinstance(layer, torch.nn.Linear)]
    dec = [layer for layer in m.decoder.modules() if isinstance(layer, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in enc] == [(784, 128), (128, 64)]
    assert [(layer.in_features, layer.out_features) for layer in dec] == [(64, 128), (128, 784)]
    m2 = archlab.create("autoencoder_784_128")
    z = m2.encode(torch.randn(5, 784))
    assert z.shape == (5, 128) and (z >= 0).all()  # seed 002: the code is a ReLU output


@pytest.mark.parametrize("name", AE_NAMES)
def test_autoencoder_encode_decode_shapes(name):
    m = archlab.create(name).eval()
    (x,) = m.example_input(batch_size=4)
    z = m.encode(x)
    assert z.shape == (4, m.config.latent_dim)
    x_hat = m.decode(z)
    assert x_hat.shape == x.shape
    assert torch.equal(m(x), x_hat)
    assert ((x_hat >= 0) & (x_hat <= 1)).all()  # sigmoid output
    with pytest.raises(ShapeError, match=name):
        m.decode(torch.randn(4, m.config.latent_dim + 1))
    with pytest.raises(ShapeError, match="got"):
        m.encode(x[..., :-1])


def test_conv_autoencoder_sizes_and_validation():
    m = archlab.create("conv_autoencoder", image_size=8, channels=[8, 16, 16], latent_dim=4)
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="image_size=28"):
        archlab.create("conv_autoencoder", channels=[8, 16, 32])  # 28 not divisible by 8


def test_reconstruction_loss_kinds_and_errors():
    x = torch.rand(3, 5)
    x_hat = torch.rand(3, 5)
    assert torch.allclose(reconstruction_loss(x_hat, x, "mse"), ((x_hat - x) ** 2).mean())
    assert torch.allclose(reconstruction_loss(x_hat, x, "bce"), F.binary_cross_entropy(x_hat, x))
    with pytest.raises(ShapeError, match=r"\(3, 4\)"):
        reconstruction_loss(x_hat[:, :4], x)
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        reconstruction_loss(x_hat * 3, x, "bce")
    with pytest.raises(ConfigError, match="kind='l1'"):
        reconstruction_loss(x_hat, x, "l1")


def test_choose_threshold():
    scores = torch.arange(101, dtype=torch.float32)  # 0..100
    assert choose_threshold(scores, 0.99) == pytest.approx(99.0)
    assert choose_threshold(scores, 0.5) == pytest.approx(50.0)
    with pytest.raises(ConfigError, match="quantile=1.5"):
        choose_threshold(scores, 1.5)
    with pytest.raises(ShapeError):
        choose_threshold(torch.zeros(0))


def _digits():
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0  # (1797, 64) in [0, 1]
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:1200]], x[perm[1200:1500]], x[perm[1500:]]


def test_anomaly_scores_rank_corrupted_digits_above_clean():
    """Train the digits autoencoder briefly on clean digits; digits with 30% of pixels replaced by
    noise must score above clean held-out digits and above a threshold set on clean data."""
    train, val, test = _digits()
    g = torch.Generator().manual_seed(0)
    model = archlab.create("autoencoder_digits")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        idx = torch.randint(0, len(train), (128,), generator=g)
        loss = reconstruction_loss(model(train[idx]), train[idx], kind="bce")
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.train()
    clean = anomaly_scores(model, test)
    assert model.training  # mode restored
    assert clean.shape == (len(test),)
    corrupted = test[:20].clone()
    mask = torch.rand(corrupted.shape, generator=g) < 0.3
    corrupted[mask] = torch.rand(int(mask.sum()), generator=g)
    bad = anomaly_scores(model, corrupted)
    assert (bad > clean[:20]).all()  # each corrupted digit scores above its own clean version
    # pairwise ranking (an AUROC): corrupted above clean in nearly every pair
    auroc = (bad[:, None] > clean[None, :]).float().mean()
    assert auroc > 0.95
    threshold = choose_threshold(anomaly_scores(model, val), quantile=0.99)
    assert (bad > threshold).float().mean() >= 0.9
    assert (clean > threshold).float().mean() <= 0.05


def test_anomaly_scores_accept_vae_tuple_output():
    m = archlab.create("vae_digits")
    x = torch.rand(6, 64)
    s = anomaly_scores(m, x)
    assert s.shape == (6,)
    assert torch.equal(s, anomaly_scores(m, x))  # eval mode: z = mu, deterministic


# -- VAE -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VAE_NAMES)
def test_vae_shapes_and_sample(name):
    m = archlab.create(name).eval()
    (x,) = m.example_input(batch_size=3)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (3, m.config.latent_dim)
    x_hat, mu2, logvar2 = m(x)
    assert x_hat.shape == x.shape and torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    assert torch.equal(x_hat, m.decode(mu))  # eval: z = mu
    s = m.sample(5, generator=torch.Generator().manual_seed(1))
    assert s.shape == (5, *x.shape[1:]) and torch.isfinite(s).all()
    assert not s.requires_grad
    assert torch.equal(s, m.sample(5, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ConfigError, match="n=0"):
        m.sample(0)
    with pytest.raises(ConfigError, match="n=-2"):
        m.sample(-2)
    with pytest.raises(ShapeError, match=name):
        m.decode(torch.randn(2, m.config.latent_dim, 1))


def test_vae_train_mode_samples_z_and_gradients_flow():
    m = archlab.create("vae_digits").train()
    x = torch.rand(4, 64)
    a, _, _ = m(x)
    b, mu, logvar = m(x)
    assert not torch.equal(a, b)  # a fresh eps per forward
    elbo_loss(b, x, mu, logvar)["total"].backward()
    assert m.to_logvar.weight.grad is not None and m.to_logvar.weight.grad.abs().sum() > 0


def test_reparameterize_matches_moments():
    m = archlab.create("vae_digits")
    mu = torch.tensor([[1.0, -2.0]]).expand(200_000, 2)
    logvar = torch.tensor([[0.0, math.log(0.25)]]).expand(200_000, 2)
    z = m.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    # standard error of the mean is sigma / sqrt(N) <= 1/447; 0.01 is > 4 of them
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.01)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01)


def test_gaussian_kl_matches_monte_carlo():
    """KL(q || p) = E_q[log q(z) - log p(z)], estimated with 200k draws per sample.

    Tolerance: 5 Monte-Carlo standard errors, estimated from the same draws (so it scales with the
    variance of the log-ratio); the analytic value must also be well resolved (SE < 2% of KL).
    """
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g)
    logvar = torch.randn(4, 3, generator=g) * 0.5
    analytic = gaussian_kl(mu, logvar)
    assert analytic.shape == (4,)
    n = 200_000
    std = torch.exp(0.5 * logvar)
    q = torch.distributions.Normal(mu, std)
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = mu + std * torch.randn(n, 4, 3, generator=g)  # (N, B, D)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (N, B)
    mc = log_ratio.mean(0)
    se = log_ratio.std(0) / math.sqrt(n)
    assert (se < 0.02 * analytic).all()
    assert ((analytic - mc).abs() < 5 * se).all(), (analytic, mc, se)
    # and the closed form agrees with torch.distributions' own KL
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(analytic, ref, atol=1e-5)


def test_gaussian_kl_zero_at_prior_and_shape_errors():
    assert torch.equal(gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2))
    with pytest.raises(ShapeError, match=r"\(2, 4\)"):
        gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 4))


@pytest.mark.parametrize("recon", ["bce", "mse"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_elbo_parts_sum_with_beta(recon, beta):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 1, 4, 4, generator=g)
    x_hat = torch.rand(5, 1, 4, 4, generator=g).clamp(0.01, 0.99)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    parts = elbo_loss(x_hat, x, mu, logvar, beta=beta, recon=recon)
    if recon == "bce":
        rec = -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum(dim=(1, 2, 3)).mean()
    else:
        rec = ((x_hat - x) ** 2).sum(dim=(1, 2, 3)).mean()
    assert torch.allclose(parts["reconstruction"], rec, atol=1e-5)
    assert torch.allclose(parts["kl"], gaussian_kl(mu, logvar).mean())
    assert torch.allclose(parts["total"], parts["reconstruction"] + beta * parts["kl"])


def test_elbo_rejects_bad_inputs():
    x = torch.rand(2, 4)
    with pytest.raises(ConfigError, match="beta=-1"):
        elbo_loss(x, x, torch.zeros(2, 3), torch.zeros(2, 3), beta=-1)
    with pytest.raises(ShapeError, match="batch 2"):
        elbo_loss(x, x, torch.zeros(3, 3), torch.zeros(3, 3))


def test_vae_training_lowers_elbo():
    train, _, _ = _digits()
    m = archlab.create("vae_digits")
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    m.eval()
    with torch.no_grad():
        x_hat, mu, logvar = m(train)
        before = elbo_loss(x_hat, train, mu, logvar)["total"].item()
    m.train()
    for _ in range(150):
        idx = torch.randint(0, len(train), (128,), generator=g)
        x_hat, mu, logvar = m(train[idx])
        loss = elbo_loss(x_hat, train[idx], mu, logvar)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        x_hat, mu, logvar = m(train)
        after = elbo_loss(x_hat, train, mu, logvar)["total"].item()
    assert after < 0.8 * before


# -- GAN -----------------------------------------------------------------------------------------


def test_seed_gan_layers():
    m = archlab.create("gan_mlp")

    def lin(mod):
        return [
            (layer.in_features, layer.out_features) for layer in mod.modules() if isinstance(layer, torch.nn.Linear)
        ]

    assert lin(m.generator) == [(100, 128), (128, 784)]
    assert lin(m.discriminator) == [(784, 128), (128, 1)]
    assert isinstance(m.generator[-1], torch.nn.Tanh)
    assert any(
        isinstance(layer, torch.nn.LeakyReLU) and layer.negative_slope == 0.2 for layer in m.discriminator.modules()
    )
    assert lin(archlab.create("gan_linear").generator) == [(100, 784)]
    big = archlab.create("gan_mlp_mnist")
    assert lin(big.generator) == [(100, 128), (128, 256), (256, 512), (512, 784)]
    assert lin(big.discriminator) == [(784, 512), (512, 256), (256, 1)]


@pytest.mark.parametrize("name", GAN_NAMES)
def test_gan_sample_and_forward_shapes(name):
    m = archlab.create(name).eval()
    c = m.config
    shape = (c.out_features,) if isinstance(c, GANConfig) else (c.image_channels, c.image_size, c.image_size)
    s = m.sample(6, generator=torch.Generator().manual_seed(0))
    assert s.shape == (6, *shape) and torch.isfinite(s).all()
    assert s.abs().max() <= 1.0  # tanh
    assert torch.equal(s, m.sample(6, generator=torch.Generator().manual_seed(0)))
    fake, logits = m(torch.randn(3, c.latent_dim))
    assert fake.shape == (3, *shape) and logits.shape == (3,)
    assert m.discriminate(fake).shape == (3,)
    with pytest.raises(ConfigError, match="n=0"):
        m.sample(0)
    with pytest.raises(ShapeError, match=name):
        m.discriminate(torch.randn(3, *shape[:-1], shape[-1] + 1))
    with pytest.raises(ShapeError, match=name):
        m.generate(torch.randn(3, c.latent_dim + 1))


def test_dcgan_sizes_init_and_validation():
    m = archlab.create("dcgan", image_size=64, image_channels=3, g_channels=8, d_channels=8)
    assert m.sample(2).shape == (2, 3, 64, 64)
    convs = [layer.weight for layer in m.modules() if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    w = torch.cat([c.flatten() for c in convs])
    assert abs(w.mean().item()) < 0.002 and abs(w.std().item() - 0.02) < 0.001
    bn = torch.cat([layer.weight.flatten() for layer in m.modules() if isinstance(layer, torch.nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.01 and 0.01 < bn.std().item() < 0.03
    with pytest.raises(ConfigError, match="image_size=28"):
        archlab.create("dcgan", image_size=28)
    for cfg in (GANConfig, DCGANConfig, VAEConfig, ConvVAEConfig, AutoencoderConfig, ConvAutoencoderConfig):
        with pytest.raises(ConfigError, match="latent_dim"):
            cfg.build(latent_dim=0)


def test_dcgan_spectral_norm_bounds_discriminator():
    m = archlab.create("dcgan_sn", image_size=16)
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in m.discriminator.modules())
    convs = [layer for layer in m.discriminator.modules() if isinstance(layer, torch.nn.Conv2d)]
    assert convs and all(hasattr(layer, "parametrizations") for layer in convs)
    m.train()
    for _ in range(20):  # power iterations run on each training forward
        m.discriminate(torch.randn(2, 1, 16, 16))
    m.eval()
    for layer in convs:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 0.05
    plain = archlab.create("dcgan", image_size=16)
    sig = [
        torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2).item()
        for layer in plain.discriminator.modules()
        if isinstance(layer, torch.nn.Conv2d)
    ]
    assert max(sig) < 0.9  # without SN the N(0, 0.02) weights are not normalised to 1


def test_hinge_and_nonsaturating_losses_on_hand_made_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # hinge: mean(relu(1 - real)) = (0 + 0.5 + 2) / 3; mean(relu(1 + fake)) = (0 + 1 + 2) / 3
    assert d_loss(real, fake, "hinge").item() == pytest.approx(2.5 / 3 + 1.0)
    assert g_loss(fake, "hinge").item() == pytest.approx(1.0 / 3)  # -mean(fake) = -(-1/3)
    assert d_loss(real[:, None], fake[:, None], "hinge").item() == pytest.approx(2.5 / 3 + 1.0)
    # non-saturating = BCE with real labels 1 / fake labels 0 (seed 003's BCELoss), on logits
    bce = F.binary_cross_entropy_with_logits
    assert torch.allclose(d_loss(real, fake), bce(real, torch.ones(3)) + bce(fake, torch.zeros(3)))
    assert torch.allclose(g_loss(fake), bce(fake, torch.ones(3)))
    with pytest.raises(ConfigError, match="kind='wasserstein'"):
        g_loss(fake, "wasserstein")
    with pytest.raises(ShapeError, match=r"\(3, 2\)"):
        d_loss(torch.zeros(3, 2), fake)


@pytest.mark.parametrize("kind", ["nonsaturating", "hinge"])
def test_gan_step_lowers_d_then_g_loss(kind):
    """First-order check with small-lr SGD: D's step lowers D's loss on the very (real, fake) batch
    it saw; G's step lowers G's loss on the same z through the updated D."""
    m = archlab.create("gan_mlp")
    g = torch.Generator().manual_seed(0)
    real = torch.rand(32, 784, generator=g) * 2 - 1
    z = torch.randn(32, 100, generator=g)
    opt_d = torch.optim.SGD(m.discriminator.parameters(), lr=1e-2)
    opt_g = torch.optim.SGD(m.generator.parameters(), lr=1e-2)
    with torch.no_grad():
        fake = m.generate(z)
        d_before = d_loss(m.discriminate(real), m.discriminate(fake), kind).item()
    g_params_before = [p.detach().clone() for p in m.generator.parameters()]
    out = gan_step(m, real, opt_d, opt_g, kind=kind, z=z)
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert out["d_loss"] == pytest.approx(d_before, rel=1e-5)
    with torch.no_grad():
        d_after = d_loss(m.discriminate(real), m.discriminate(fake), kind).item()
        g_after = g_loss(m.discriminate(m.generate(z)), kind).item()
    assert d_after < d_before
    assert g_after < out["g_loss"]
    assert any(not torch.equal(a, b) for a, b in zip(g_params_before, m.generator.parameters()))
    assert all(p.requires_grad for p in m.parameters())  # D unfrozen again


def test_gan_step_dcgan_sn_hinge_updates_both_networks():
    m = archlab.create("dcgan_sn", image_size=8, g_channels=8, d_channels=8, latent_dim=16).train()
    opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(m.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(4, 1, 8, 8) * 2 - 1
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    out = gan_step(m, real, opt_d, opt_g, kind="hinge", generator=torch.Generator().manual_seed(0))
    assert all(math.isfinite(v) for v in out.values())
    changed = {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"generator", "discriminator"}
    with pytest.raises(ShapeError, match="dcgan_sn"):
        gan_step(m, torch.rand(4, 1, 16, 16), opt_d, opt_g, kind="hinge")


# -- class-conditional VAE and GAN -----------------------------------------------------------------

COND = [("cvae_digits", {}), ("cdcgan_digits", {"g_channels": 8, "d_channels": 8, "latent_dim": 16})]


@pytest.mark.parametrize("name,opts", COND, ids=[c[0] for c in COND])
def test_conditional_sample_shapes_label_effect_and_errors(name, opts):
    m = archlab.create(name, **opts).eval()
    assert m.config.num_classes == 10
    y = torch.arange(6) % 10
    s = m.sample(6, generator=torch.Generator().manual_seed(0), y=y)
    assert s.shape[0] == 6 and torch.isfinite(s).all()
    # same z, different labels -> different samples; same z and labels -> the same samples
    s_same = m.sample(6, generator=torch.Generator().manual_seed(0), y=y)
    s_other = m.sample(6, generator=torch.Generator().manual_seed(0), y=(y + 1) % 10)
    assert torch.equal(s, s_same)
    assert all(not torch.allclose(a, b) for a, b in zip(s, s_other))
    with pytest.raises(ConfigError, match="y"):
        m.sample(6)
    with pytest.raises(ShapeError, match="y"):
        m.sample(6, y=torch.arange(5))  # wrong length
    with pytest.raises(ShapeError, match=r"\[0, 10\)"):
        m.sample(2, y=torch.tensor([0, 10]))  # out of range
    with pytest.raises(ShapeError, match="y"):
        m.sample(2, y=torch.zeros(2, 1, dtype=torch.long))  # wrong rank


def test_unconditional_models_refuse_labels_and_keep_their_layout():
    vae = archlab.create("vae_digits")
    assert vae.config.num_classes is None and len(vae.example_input()) == 1
    assert vae.encoder[0].in_features == 64  # no label columns
    with pytest.raises(ConfigError, match="unconditional"):
        vae.sample(2, y=torch.tensor([0, 1]))
    gan = archlab.create("dcgan_sn", image_size=8, g_channels=8, d_channels=8, latent_dim=16)
    assert isinstance(gan.generator, torch.nn.Sequential) and len(gan.example_input()) == 1
    with pytest.raises(ConfigError, match="unconditional"):
        gan.generate(torch.randn(2, 16), torch.tensor([0, 1]))


def test_cvae_one_hot_enters_encoder_and_decoder():
    m = archlab.create("cvae_digits", hidden_sizes=[32], latent_dim=4).eval()
    assert m.encoder[0].in_features == 64 + 10
    assert m.decoder[0][0].in_features == 4 + 10
    x = torch.rand(3, 64)
    mu0, _ = m.encode(x, torch.tensor([0, 0, 0]))
    mu1, _ = m.encode(x, torch.tensor([1, 1, 1]))
    assert not torch.allclose(mu0, mu1)  # the encoder sees the label
    x_hat, mu, logvar = m(x, torch.tensor([2, 3, 4]))
    assert x_hat.shape == (3, 64) and mu.shape == logvar.shape == (3, 4)


def test_projection_discriminator_depends_on_label():
    m = archlab.create("cdcgan_digits", g_channels=8, d_channels=8, latent_dim=16).eval()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    a = m.discriminate(x, torch.zeros(4, dtype=torch.long))
    b = m.discriminate(x, torch.full((4,), 7))
    assert a.shape == (4,) and not torch.allclose(a, b)
    with pytest.raises(ConfigError, match="y"):
        m.discriminate(x)


def test_gan_step_conditional_updates_both_networks_with_labels():
    torch.manual_seed(0)
    m = archlab.create("cdcgan_digits", g_channels=8, d_channels=8, latent_dim=16).train()
    opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(m.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(4, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 1, 2, 3])
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    out = gan_step(m, real, opt_d, opt_g, kind="hinge", generator=torch.Generator().manual_seed(0), y=y)
    assert all(math.isfinite(v) for v in out.values())
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("generator.embed") for k in changed)
    assert any(k.startswith("discriminator.embed") for k in changed)
    with pytest.raises(ConfigError, match="y"):
        gan_step(m, real, opt_d, opt_g, kind="hinge")
