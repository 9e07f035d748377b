"""Generative adversarial networks: a generator G(z) and a discriminator D(x) in one module.

When to use (image synthesis, data generation; diffusion models beat GANs on fidelity and
stability, Dhariwal & Nichol 2021): fast one-pass sampling of sharp images when you can
afford some training instability. Papers: Goodfellow et al., "Generative Adversarial Nets",
NeurIPS 2014; Radford et al., "Unsupervised Representation Learning with Deep Convolutional
GANs" (DCGAN), ICLR 2016; Miyato et al., "Spectral Normalization for GANs", ICLR 2018.

A GAN model holds two submodules, ``generator`` and ``discriminator``. The adversarial
training (alternating D and G steps, non-saturating or hinge losses) lives in
:mod:`archlab.tasks.gan` (``gan_step``, ``d_loss``, ``g_loss``).

- ``generate(z)``: (B, latent_dim) -> fake samples.
- ``discriminate(x)``: samples -> (B,) real-vs-fake **logits** (no Sigmoid: the textbook
  ``Sigmoid`` + ``BCELoss`` is the same loss as logits + ``BCEWithLogits``, minus its overflow).
- ``forward(z)`` returns ``(fake, D(fake))`` so that one forward/backward reaches every parameter
  of both networks (the registry's contract test relies on it); training uses ``gan_step``.
- ``sample(n, generator=None, y=None)``: decode ``n`` draws z ~ N(0, I) (no gradients). Call
  ``eval()`` first for a DCGAN so BatchNorm uses its running statistics.
- Conditional DCGAN (``num_classes=K``; Mirza & Osindero, "Conditional GANs", 2014): G gets a
  learned label embedding concatenated to z; D is a projection discriminator (Miyato & Koyama,
  "cGANs with Projection Discriminator", ICLR 2018): ``logit = head(h) + <embed(y), sum_hw h>``
  with h D's last feature map. ``generate(z, y)``, ``discriminate(x, y)``, ``forward(z, y)`` and
  ``sample(n, y=...)`` then take class ids y (B,) in [0, K).

Presets:
- ``gan_mlp`` - a minimal MLP GAN: G = 100 -> 128 -> ReLU -> 784 -> Tanh; D = 784 -> 128 -> LeakyReLU(0.2)
  -> 1. Samples are flattened 28x28 images in [-1, 1] (``.view(-1, 1, 28, 28)`` to display).
- ``gan_linear`` - a one-layer generator, Linear(100, 784) -> Tanh, with ``gan_mlp``'s discriminator.
- ``gan_mlp_mnist`` - a deeper MLP GAN for MNIST: G = 100 -> 128 -> 256 -> 512 -> 784 (ReLU, Tanh);
  D = 784 -> 512 -> 256 -> 1 (LeakyReLU(0.2)).
- ``dcgan`` - DCGAN for 1x32x32 images in [-1, 1] (pad 28x28 MNIST by 2 on each side):
  transposed convs 4x4 with BatchNorm + ReLU, Tanh output; strided 4x4 conv discriminator with
  LeakyReLU(0.2), BatchNorm on all but the first layer; N(0, 0.02) init as in the paper.
  ``image_size`` may be any power of two >= 8 (8, 16, 32, 64, ...).
- ``dcgan_sn`` - the same with spectral normalisation on every discriminator conv (and no
  BatchNorm in D, as in SN-GAN); pair it with ``kind="hinge"`` losses.
- ``cdcgan_digits`` - conditional ``dcgan_sn`` for 1x8x8 digits: 10 classes, latent 64,
  g_channels 128, d_channels 64, projection discriminator.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from archlab.config import (
    Activation,
    ArchConfig,
    Extent,
    InitScheme,
    Size,
    Width,
    Widths,
)
from archlab.layers.checks import check_tensor
from archlab.layers.init import init_weights
from archlab.layers.mlp import activation, dense_stack
from archlab.layers.params import ParamCount
from archlab.layers.registry import act_layer
from archlab.models.autoencoder import OutputActivation
from archlab.models.vae import check_labels, prior_noise
from archlab.registry import register

# -- configs ------------------------------------------------------------------------------------


class GANConfig(ArchConfig):
    """Config of an MLP GAN on flat vectors (e.g. flattened 28x28 images in [-1, 1])."""

    latent_dim: Width = Field(100, ge=1, description="Size of the noise vector z.")
    out_features: Size = Field(784, ge=1, description="Size of each generated (and real) sample.")
    g_hidden: Widths = Field(default_factory=lambda: [128], description="Generator hidden widths.")
    d_hidden: Widths = Field(default_factory=lambda: [128], description="Discriminator hidden widths.")
    g_activation: Activation = Field("relu", description="Generator hidden activation.")
    d_activation: Activation = Field(
        "leaky_relu", description="Discriminator hidden activation (leaky_relu is LeakyReLU(0.2))."
    )
    output_activation: OutputActivation = Field(
        "tanh", description="Generator output: tanh for data scaled to [-1, 1]."
    )
    init: InitScheme = Field("default", description="Weight init (default: PyTorch's own).")


class DCGANConfig(ArchConfig):
    """Config of a DCGAN on square (C, S, S) images with S a power of two >= 8."""

    latent_dim: Width = Field(100, ge=1, description="Size of the noise vector z.")
    image_channels: Width = Field(1, ge=1, description="Channels of generated images.")
    image_size: Extent = Field(32, ge=8, description="Height = width of images; a power of two >= 8.")
    g_channels: Width = Field(
        32, ge=1, description="Generator width at the last hidden stage (ngf); doubles per stage towards z."
    )
    d_channels: Width = Field(32, ge=1, description="Discriminator width at the first stage (ndf); doubles per stage.")
    spectral_norm: bool = Field(
        False, description="Spectral-normalise every discriminator conv (Miyato et al. 2018); D then has no BatchNorm."
    )
    num_classes: Optional[Size] = Field(
        None,
        ge=1,
        description="Classes to condition on: label embedding joined to z in G, projection discriminator (Miyato & Koyama 2018); None = unconditional.",
    )

    @model_validator(mode="after")
    def _power_of_two(self):
        s = self.image_size
        if s & (s - 1):
            raise ValueError(
                f"image_size={s} must be a power of two >= 8 (8, 16, 32, 64, ...); pad 28x28 images to 32x32"
            )
        return self

    @property
    def n_stages(self) -> int:
        """Doublings from the 4x4 base to image_size."""
        return (self.image_size // 4).bit_length() - 1


# -- blocks -------------------------------------------------------------------------------------


def dcgan_init(module: nn.Module) -> nn.Module:
    """Radford et al. 2016: conv weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def dcgan_generator(c: DCGANConfig, in_dim: int | None = None) -> nn.Sequential:
    """z (B, in_dim, 1, 1) -> 4x4 -> ... -> (B, C, S, S) in [-1, 1]; in_dim defaults to latent_dim."""
    k = c.n_stages
    width = c.g_channels * 2 ** (k - 1)
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(in_dim or c.latent_dim, width, 4, 1, 0, bias=False),  # (B, z, 1, 1) -> (B, w, 4, 4)
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    for _ in range(k - 1):
        layers += [
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),  # doubles H, W
            nn.BatchNorm2d(width // 2),
            nn.ReLU(),
        ]
        width //= 2
    layers += [nn.ConvTranspose2d(width, c.image_channels, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def dcgan_discriminator(c: DCGANConfig) -> nn.Sequential:
    """(B, C, S, S) -> (B, 1, 1, 1) logits; no norm on the first layer (Radford et al.)."""
    sn = _spectral_norm if c.spectral_norm else (lambda m: m)
    use_bn = not c.spectral_norm
    width = c.d_channels
    layers: list[nn.Module] = [nn.Conv2d(c.image_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]  # halves H, W
    for _ in range(c.n_stages - 1):
        layers += [
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=not use_bn),
            nn.BatchNorm2d(width * 2) if use_bn else nn.Identity(),
            nn.LeakyReLU(0.2),
        ]
        width *= 2
    layers.append(nn.Conv2d(width, 1, 4, 1, 0))  # (B, w, 4, 4) -> (B, 1, 1, 1)
    dcgan_init(nn.Sequential(*layers))  # init the raw weights before spectral_norm wraps them
    return nn.Sequential(*[sn(m) if isinstance(m, nn.Conv2d) else m for m in layers])


class ConditionalGenerator(nn.Module):
    """Label embedding (K, latent_dim) concatenated to z, then a DCGAN generator on (B, 2*latent, 1, 1)."""

    def __init__(self, c: DCGANConfig):
        super().__init__()
        self.embed = nn.Embedding(int(c.num_classes), c.latent_dim)
        self.net = dcgan_init(dcgan_generator(c, in_dim=2 * c.latent_dim))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(y)], dim=1)  # (B, z) + (B, z) -> (B, 2z)
        return self.net(h[:, :, None, None])


class ProjectionDiscriminator(nn.Module):
    """DCGAN discriminator with a class projection (Miyato & Koyama 2018):
    logit = head(h) + <embed(y), sum over H, W of h>, h = the last (B, w, 4, 4) feature map."""

    def __init__(self, c: DCGANConfig):
        super().__init__()
        net = dcgan_discriminator(c)
        self.body, self.head = net[:-1], net[-1]
        width = c.d_channels * 2 ** (c.n_stages - 1)
        embed = nn.Embedding(int(c.num_classes), width)
        nn.init.normal_(embed.weight, 0.0, 0.02)
        self.embed = _spectral_norm(embed) if c.spectral_norm else embed

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (B, w, 4, 4)
        proj = (self.embed(y) * h.sum(dim=(2, 3))).sum(dim=1)  # (B,)
        return self.head(h).reshape(-1) + proj


class _GAN(ParamCount, nn.Module):
    """Shared GAN interface; a subclass sets ``generator``, ``discriminator`` and the checks."""

    config: GANConfig | DCGANConfig

    def _check_z(self, z: torch.Tensor) -> torch.Tensor:
        return check_tensor(self, z, "B Z", name="z", Z=self.config.latent_dim)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        z = torch.randn(batch_size, self.config.latent_dim)
        k = getattr(self.config, "num_classes", None)
        return (z, torch.randint(0, k, (batch_size,))) if k else (z,)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate from noise and score the result.

        Args:
            z: (B, latent_dim) float noise, normally N(0, I).
            y: (B,) long class ids in [0, num_classes) - required for a conditional GAN,
                refused by an unconditional one.

        Returns:
            (fake, logits): fake samples, (B, out_features) for the MLP GAN or
            (B, C, S, S) for a DCGAN, in [-1, 1]; logits (B,) = D(fake), real-vs-fake.
        """
        fake = self.generate(z, y)
        return fake, self.discriminate(fake, y)

    def discriminator_logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            return self.discriminator(x, y)  # projection discriminator, (B,)
        return self.discriminator(x).reshape(-1)  # (B, 1[, 1, 1]) -> (B,)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` generated samples from z ~ N(0, I), without gradients; ``y`` (n,) class ids
        are required for a conditional GAN (sample i shows class y[i])."""
        z = prior_noise(self, n, self.config.latent_dim, generator)
        if isinstance(y, torch.Tensor):
            y = y.to(z.device)
        return self.generate(z, y)


# -- models -------------------------------------------------------------------------------------


class GAN(_GAN):
    """MLP generator and discriminator on flat vectors (minimal GANs, as in Goodfellow et al. 2014)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        c = config
        g_last = c.g_hidden[-1] if c.g_hidden else c.latent_dim
        d_last = c.d_hidden[-1] if c.d_hidden else c.out_features
        self.generator = nn.Sequential(
            dense_stack(c.latent_dim, c.g_hidden, act_layer=act_layer(c.g_activation)),
            nn.Linear(g_last, c.out_features),
            activation(c.output_activation),
        )
        self.discriminator = nn.Sequential(
            dense_stack(c.out_features, c.d_hidden, act_layer=act_layer(c.d_activation)),
            nn.Linear(d_last, 1),
        )
        init_weights(self.generator, c.init, nonlinearity=c.g_activation)
        init_weights(self.discriminator, c.init, nonlinearity=c.d_activation)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) -> fake (B, out_features); unconditional (y must be None)."""
        z = self._check_z(z)
        check_labels(self, y, z.shape[0])
        return self.generator(z)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Samples (B, out_features) -> logits (B,); unconditional (y must be None)."""
        check_tensor(self, x, "B F", F=self.config.out_features)
        check_labels(self, y, x.shape[0])
        return self.discriminator_logits(x)


class DCGAN(_GAN):
    """Deep convolutional GAN (Radford et al. 2016), optional spectral norm in D."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        if config.num_classes:
            self.generator = ConditionalGenerator(config)
            self.discriminator = ProjectionDiscriminator(config)
        else:
            self.generator = dcgan_init(dcgan_generator(config))
            self.discriminator = dcgan_discriminator(config)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) [+ class ids y (B,) when conditional] -> fake images (B, C, S, S) in [-1, 1]."""
        z = self._check_z(z)
        y = check_labels(self, y, z.shape[0])
        if y is not None:
            return self.generator(z, y)
        return self.generator(z[:, :, None, None])  # (B, z) -> (B, z, 1, 1)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, S, S) [+ class ids y (B,) when conditional] -> logits (B,)."""
        c = self.config
        check_tensor(self, x, "B C H W", C=c.image_channels, H=c.image_size, W=c.image_size)
        return self.discriminator_logits(x, check_labels(self, y, x.shape[0]))


# -- presets ------------------------------------------------------------------------------------

_WHEN = "Image synthesis / data generation with fast one-pass sampling"
_TASKS = ("gan",)
register(
    "gan_mlp",
    family="gan",
    model=GAN,
    config=GANConfig,
    defaults=dict(latent_dim=100, out_features=784, g_hidden=[128], d_hidden=[128]),
    modalities=("image",),
    tasks=_TASKS,
    description="Minimal MLP GAN: G 100-128-784 (ReLU, Tanh), D 784-128-1 (LeakyReLU 0.2)",
    when_to_use=_WHEN,
)
register(
    "gan_linear",
    family="gan",
    model=GAN,
    config=GANConfig,
    defaults=dict(latent_dim=100, out_features=784, g_hidden=[], d_hidden=[128]),
    modalities=("image",),
    tasks=_TASKS,
    description="One-layer generator Linear(100, 784) + Tanh with gan_mlp's discriminator",
    when_to_use=_WHEN,
)
register(
    "gan_mlp_mnist",
    family="gan",
    model=GAN,
    config=GANConfig,
    defaults=dict(latent_dim=100, out_features=784, g_hidden=[128, 256, 512], d_hidden=[512, 256]),
    modalities=("image",),
    tasks=_TASKS,
    description="MLP MNIST GAN: G 100-128-256-512-784, D 784-512-256-1",
    when_to_use=_WHEN,
)
register(
    "dcgan",
    family="gan",
    model=DCGAN,
    config=DCGANConfig,
    defaults=dict(latent_dim=100, image_channels=1, image_size=32, g_channels=32, d_channels=32),
    modalities=("image",),
    tasks=_TASKS,
    description="DCGAN (Radford et al. 2016) for 1x32x32 images: BN+ReLU transposed convs, LeakyReLU conv D",
    when_to_use="Image generation: the convolutional GAN baseline; sharper than MLP GANs",
)
register(
    "dcgan_sn",
    family="gan",
    model=DCGAN,
    config=DCGANConfig,
    defaults=dict(latent_dim=100, image_channels=1, image_size=32, g_channels=32, d_channels=32, spectral_norm=True),
    modalities=("image",),
    tasks=_TASKS,
    description="DCGAN with a spectrally normalised discriminator (Miyato et al. 2018)",
    when_to_use="Image generation when plain DCGAN training is unstable; use hinge losses",
)
register(
    "cdcgan_digits",
    family="gan",
    model=DCGAN,
    config=DCGANConfig,
    defaults=dict(
        latent_dim=64, image_channels=1, image_size=8, g_channels=128, d_channels=64, spectral_norm=True, num_classes=10
    ),
    modalities=("image",),
    tasks=_TASKS,
    description="Class-conditional SN-DCGAN for 1x8x8 digits: label embedding + z in G, projection D (Miyato & Koyama 2018)",
    when_to_use="Generate images of a chosen class (label-controlled generation); use hinge losses",
)
