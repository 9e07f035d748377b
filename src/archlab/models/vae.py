"""Variational autoencoders (Gaussian latent, Bernoulli / Gaussian decoder).

When to use: you want a smooth latent space you
can sample from and interpolate in, a likelihood bound to compare models, or anomaly scores with
a probabilistic reading. Samples are blurrier than a GAN's or a diffusion model's; training is
stable (one loss, no adversary). Paper: Kingma & Welling, "Auto-Encoding Variational Bayes",
ICLR 2014.

The network only encodes, reparameterises and decodes; the ELBO lives in
:mod:`archlab.tasks.vae` (``elbo_loss``, ``gaussian_kl``).

- ``encode(x) -> (mu, logvar)``: the approximate posterior q(z|x) = N(mu, diag(exp(logvar))).
- ``reparameterize(mu, logvar)``: z = mu + exp(logvar / 2) * eps, eps ~ N(0, I), so gradients
  flow through mu and logvar. In ``eval()`` mode ``forward`` uses z = mu (deterministic
  reconstructions, e.g. for anomaly scores); in ``train()`` mode it samples.
- ``decode(z) -> x_hat``: with ``output_activation="sigmoid"`` x_hat holds Bernoulli means, for
  ``elbo_loss(..., recon="bce")``.
- ``sample(n, generator=None, y=None)``: z ~ N(0, I) from the prior, decoded (no gradients).
- Conditional VAE (Sohn et al., "Learning Structured Output Representation using Deep
  Conditional Generative Models", NeurIPS 2015): a dense VAE built with ``num_classes=K``
  concatenates the one-hot label to the encoder input and to z before decoding, so
  ``encode(x, y)``, ``decode(z, y)``, ``forward(x, y)`` and ``sample(n, y=...)`` all take class
  ids y (B,) in [0, K); the prior stays N(0, I) and the label picks the class of a sample.

Presets:
- ``vae_mlp`` - the classic Kingma / PyTorch-examples VAE: 784 -> 400 -> ReLU -> (mu, logvar)
  of size 20; 20 -> 400 -> ReLU -> 784 -> Sigmoid. Inputs are flattened 28x28 images in [0, 1].
- ``vae_digits`` - scikit-learn 8x8 digits (64 values scaled to [0, 1]): 64 -> 128 -> latent 8.
- ``vae_conv`` - convolutional, 1x28x28 images in [0, 1]: stride-2 convs 32 -> 64 channels
  (28 -> 14 -> 7), latent 16, mirrored transposed convs.
- ``cvae_digits`` - conditional ``vae_digits`` (Sohn et al. 2015): 10 digit classes, one-hot
  label into encoder and decoder.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch import nn

from archlab.config import (
    Activation,
    ArchConfig,
    InitScheme,
    PositiveInts,
    Size,
    Width,
    Widths,
)
from archlab.errors import ConfigError
from archlab.layers.checks import check_index_range, check_tensor, model_name
from archlab.layers.init import init_weights
from archlab.layers.mlp import activation, dense_stack
from archlab.layers.params import ParamCount
from archlab.layers.registry import act_layer
from archlab.models.autoencoder import ConvAutoencoderConfig, ConvCodec, OutputActivation
from archlab.registry import register

# -- configs ------------------------------------------------------------------------------------


class VAEConfig(ArchConfig):
    """Config of a dense Gaussian VAE; the decoder mirrors the encoder."""

    in_features: Size = Field(784, ge=1, description="Size of each (flattened) input vector.")
    hidden_sizes: Widths = Field(
        default_factory=lambda: [400], description="Encoder hidden widths, in order; the decoder uses them reversed."
    )
    latent_dim: Width = Field(20, ge=1, description="Size of the latent z.")
    activation: Activation = Field("relu", description="Hidden-layer activation.")
    output_activation: OutputActivation = Field(
        "sigmoid", description="sigmoid: Bernoulli means for recon='bce'; identity: Gaussian means for recon='mse'."
    )
    init: InitScheme = Field("default", description="Weight init (the classic example keeps PyTorch's defaults).")
    num_classes: Optional[Size] = Field(
        None,
        ge=1,
        description="Classes to condition on (conditional VAE, Sohn et al. 2015): the one-hot label joins the encoder input and z; None = unconditional.",
    )


class ConvVAEConfig(ConvAutoencoderConfig):
    """Config of a convolutional Gaussian VAE for (C, S, S) images: the conv autoencoder's fields
    and checks, with the VAE's defaults."""

    channels: PositiveInts = Field(
        default_factory=lambda: [32, 64], description="Channels of each stride-2 conv stage (decoder mirrors them)."
    )
    latent_dim: Width = Field(16, ge=1, description="Size of the latent z.")
    output_activation: OutputActivation = Field("sigmoid", description="sigmoid for pixels in [0, 1] and recon='bce'.")


# -- shared pieces ------------------------------------------------------------------------------


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) (Kingma & Welling, sec. 2.4); same shape as mu."""
    eps = torch.randn(
        mu.shape, generator=generator, device=generator.device if generator else mu.device, dtype=mu.dtype
    ).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def prior_noise(model: nn.Module, n: int, latent_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, latent_dim) draws from N(0, I) on the model's device; ``n`` must be a positive int.

    Shared by every generative model's ``sample`` (VAE, GAN).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError(f"sample: n must be a positive int (number of samples); got n={n!r}")
    param = next(model.parameters())
    device = generator.device if generator is not None else param.device
    z = torch.randn(n, latent_dim, generator=generator, device=device, dtype=param.dtype)
    return z.to(param.device)


def check_labels(model: nn.Module, y: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """Class ids y (B,) for a class-conditional generative model, checked; None when unconditional.

    Shared by the conditional VAE and GAN. ``model.config.num_classes`` (None or 0 = unconditional)
    decides: a conditional model needs y (ConfigError naming y when missing), an unconditional one
    refuses it; y must be a (batch,) integer tensor with ids in [0, num_classes) (ShapeError).
    """
    k = int(getattr(model.config, "num_classes", None) or 0)
    if k == 0:
        if y is not None:
            raise ConfigError(
                f"{model_name(model)} is unconditional (num_classes=None); got class labels y - "
                "build it with num_classes=K to condition on classes"
            )
        return None
    if y is None:
        raise ConfigError(
            f"{model_name(model)} is class-conditional (num_classes={k}); pass class labels "
            f"y, a ({batch},) long tensor of ids in [0, {k}); got y=None"
        )
    y = check_tensor(model, y, "B", name="y", dtype="long", B=batch)
    check_index_range(model, y, k, name="y")
    return y


def one_hot_cat(h: torch.Tensor, y: torch.Tensor | None, num_classes: int | None) -> torch.Tensor:
    """(B, F) features with the one-hot label appended: (B, F + K); unchanged when y is None."""
    if y is None:
        return h
    return torch.cat([h, nn.functional.one_hot(y, int(num_classes)).to(h.dtype)], dim=1)


class _GaussianVAE(ParamCount, nn.Module):
    """Shared VAE logic; a subclass builds ``_features`` (x -> h), ``to_mu``, ``to_logvar``, ``_decode``."""

    config: VAEConfig | ConvVAEConfig

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (and class ids y (B,) for a conditional VAE) -> (mu, logvar), each (B, latent_dim)."""
        x = self._check_input(x)
        h = self._features(x, check_labels(self, y, x.shape[0]))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) (and class ids y (B,) when conditional) -> x_hat with the input's shape."""
        check_tensor(self, z, "B Z", name="z", Z=self.config.latent_dim)
        return self._decode(z, check_labels(self, y, z.shape[0]))

    def reparameterize(
        self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps; see :func:`reparameterize`."""
        return reparameterize(mu, logvar, generator)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample z (train mode) or take z = mu (eval mode), decode.

        Args:
            x: (B, in_features) for the dense VAE, (B, C, S, S) for the conv VAE; float in [0, 1]
                for the sigmoid (Bernoulli) decoder.
            y: (B,) long class ids in [0, num_classes) - required for a conditional VAE
                (``num_classes`` set), refused otherwise.

        Returns:
            (x_hat, mu, logvar): x_hat has x's shape; mu and logvar are (B, latent_dim).
        """
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self._decode(z, y), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode ``n`` draws z ~ N(0, I) from the prior: (n, *input shape), no gradients.

        ``y``: (n,) class ids, required for a conditional VAE (sample i shows class y[i]).
        """
        z = prior_noise(self, n, self.config.latent_dim, generator)
        if y is not None and isinstance(y, torch.Tensor):
            y = y.to(z.device)
        return self._decode(z, check_labels(self, y, n))


# -- models -------------------------------------------------------------------------------------


class VAE(_GaussianVAE):
    """Dense Gaussian VAE: MLP encoder -> (mu, logvar) heads; MLP decoder; conditional
    (one-hot label into encoder and decoder) when ``num_classes`` is set."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c = config
        k = c.num_classes or 0
        last = c.hidden_sizes[-1] if c.hidden_sizes else c.in_features + k
        self.encoder = dense_stack(c.in_features + k, c.hidden_sizes, act_layer=act_layer(c.activation))
        self.to_mu = nn.Linear(last, c.latent_dim)
        self.to_logvar = nn.Linear(last, c.latent_dim)
        dec_hidden = list(reversed(c.hidden_sizes))
        dec_last = dec_hidden[-1] if dec_hidden else c.latent_dim + k
        self.decoder = nn.Sequential(
            dense_stack(c.latent_dim + k, dec_hidden, act_layer=act_layer(c.activation)),
            nn.Linear(dec_last, c.in_features),
            activation(c.output_activation),
        )
        init_weights(self, c.init, nonlinearity=c.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        x = torch.rand(batch_size, self.config.in_features)
        if self.config.num_classes:
            return x, torch.randint(0, self.config.num_classes, (batch_size,))
        return (x,)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return check_tensor(self, x, "B F", F=self.config.in_features)

    def _features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(one_hot_cat(x, y, self.config.num_classes))

    def _decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(one_hot_cat(z, y, self.config.num_classes))


class ConvVAE(_GaussianVAE):
    """Convolutional Gaussian VAE: stride-2 convs -> (mu, logvar) heads; transposed convs back."""

    def __init__(self, config: ConvVAEConfig):
        super().__init__()
        self.config = config
        self.codec = ConvCodec(config)
        self.to_mu = nn.Linear(self.codec.flat, config.latent_dim)
        self.to_logvar = nn.Linear(self.codec.flat, config.latent_dim)
        init_weights(self, config.init, nonlinearity=config.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        c = self.config
        return (torch.rand(batch_size, c.in_channels, c.image_size, c.image_size),)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return check_tensor(self, x, "B C H W", C=c.in_channels, H=c.image_size, W=c.image_size)

    def _features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.codec.features(x)  # unconditional: check_labels refused any y

    def _decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.codec.reconstruct(z)


# -- presets ------------------------------------------------------------------------------------

_WHEN = "Generative modelling with a smooth, sampleable latent space; stable training (Kingma & Welling 2014)"
_TASKS = ("vae",)
register(
    "vae_mlp",
    family="vae",
    model=VAE,
    config=VAEConfig,
    defaults=dict(in_features=784, hidden_sizes=[400], latent_dim=20),
    modalities=("image",),
    tasks=_TASKS,
    description="Kingma & Welling VAE as in the PyTorch example: 784-400-(20, 20), Bernoulli decoder",
    when_to_use=_WHEN,
)
register(
    "vae_digits",
    family="vae",
    model=VAE,
    config=VAEConfig,
    defaults=dict(in_features=64, hidden_sizes=[128], latent_dim=8),
    modalities=("image", "tabular"),
    tasks=_TASKS,
    description="Small dense VAE for 8x8 digits (64 values in [0, 1]): 64-128-(8, 8)",
    when_to_use=_WHEN,
)
register(
    "vae_conv",
    family="vae",
    model=ConvVAE,
    config=ConvVAEConfig,
    defaults=dict(in_channels=1, image_size=28, channels=[32, 64], latent_dim=16),
    modalities=("image",),
    tasks=_TASKS,
    description="Convolutional VAE for 1x28x28 images: convs 32-64 (stride 2), latent 16",
    when_to_use=_WHEN,
)

register(
    "cvae_digits",
    family="vae",
    model=VAE,
    config=VAEConfig,
    defaults=dict(in_features=64, hidden_sizes=[128], latent_dim=8, num_classes=10),
    modalities=("image", "tabular"),
    tasks=("vae",),
    description="Conditional VAE (Sohn et al. 2015) for 8x8 digits: one-hot label into encoder and decoder, 64-128-(8, 8)",
    when_to_use="Generate samples of a chosen class (label-controlled generation) with stable VAE training",
)
