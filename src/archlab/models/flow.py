"""Normalizing flows: RealNVP affine couplings with ActNorm, for exact likelihood and sampling.

When to use: you need an exact log-likelihood *and* one-pass sampling - density
estimation, anomaly scores, a learnt prior; diffusion gives better image samples, VAEs only a
bound. Common practice: stack many couplings with permutations, track log-det sums, initialise
carefully for stability (here: zero-initialised coupling outputs, so every layer starts as the
identity, plus data-dependent ActNorm).

Papers: Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP" (affine
coupling, checkerboard / channel masks, squeeze); Kingma & Dhariwal 2018, "Glow" (ActNorm with
data-dependent initialisation).

A flow maps data x to latent z = f(x) with z ~ N(0, I). Change of variables:
    log p(x) = log N(f(x); 0, I) + log |det df/dx|
Every layer returns its own log|det| so the stack's is the sum.

Methods of every flow here:
- ``forward(x) -> (z, log_det)``: data -> latent, log_det (B,) = log|det df/dx|.
- ``inverse(z) -> x``: latent -> data (exact).
- ``log_prob(x) -> (B,)``: log-density of x in nats.
- ``sample(n, generator=None)``: z ~ N(0, I) pushed through ``inverse``.

Presets:
- ``realnvp_2d`` - 2-D toy densities: 8 couplings, alternating masks.
- ``realnvp_tabular`` - 8-feature tabular density: 6 couplings, ActNorm.
- ``realnvp_image`` - 1x8x8 digit images: per scale 3 checkerboard couplings, squeeze, 3 channel
  couplings. Pixels must be dequantized first (see :func:`archlab.tasks.flow.dequantize`), or the
  density collapses onto the discrete values; the likelihood is then reported in bits/dim.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import (
    ArchConfig,
    Depth,
    Extent,
    Size,
    Width,
)
from archlab.layers.checks import check_tensor
from archlab.layers.params import ParamCount
from archlab.registry import register

_LOG_2PI = math.log(2 * math.pi)


# -- configs ------------------------------------------------------------------------------------


class RealNVPConfig(ArchConfig):
    """Config of a RealNVP flow on (B, D) vectors."""

    dim: Size = Field(2, ge=1, description="D: size of each data vector (>= 2: a coupling needs two parts).")
    n_couplings: Depth = Field(
        8, ge=1, description="Affine coupling layers; masks alternate between even and odd features."
    )
    hidden: Width = Field(64, ge=1, description="Width of each coupling's scale/translation MLP.")
    n_hidden_layers: Depth = Field(2, ge=1, description="Hidden layers of each coupling MLP.")
    actnorm: bool = Field(
        True, description="ActNorm (Glow) before each coupling, data-initialised on the first training batch."
    )

    @model_validator(mode="after")
    def _two_parts(self):
        if self.dim < 2:
            raise ValueError(
                f"dim={self.dim}: a coupling splits features into two non-empty parts, so dim must be >= 2"
            )
        return self


class RealNVPImageConfig(ArchConfig):
    """Config of a multi-scale RealNVP flow on (B, C, H, W) images."""

    in_channels: Width = Field(1, ge=1, description="Image channels.")
    image_size: Extent = Field(
        8, ge=2, description="Height = width; must divide by 2**n_scales (each scale squeezes by 2)."
    )
    n_scales: Depth = Field(
        1, ge=1, description="Scales; each is checkerboard couplings, a 2x2 squeeze, channel couplings."
    )
    n_couplings: Depth = Field(3, ge=1, description="Couplings of each mask type per scale (masks alternate).")
    hidden_channels: Width = Field(32, ge=1, description="Channels of each coupling's conv net.")
    actnorm: bool = Field(
        True, description="ActNorm (Glow) before each coupling, data-initialised on the first training batch."
    )

    @model_validator(mode="after")
    def _divides(self):
        factor = 2**self.n_scales
        if self.image_size % factor:
            raise ValueError(
                f"image_size={self.image_size} must divide by 2**n_scales={factor} (n_scales={self.n_scales}): "
                "each scale squeezes 2x2 pixels into channels"
            )
        return self


# -- layers -------------------------------------------------------------------------------------


class ActNorm(nn.Module):
    """Per-channel affine y = (x + bias) * exp(log_scale) (Kingma & Dhariwal 2018, "Glow").

    Data-dependent init: on the first forward in training mode, bias and log_scale are set so
    that batch's output has zero mean and unit variance per channel; the ``initialized`` buffer
    records it, so saved/loaded models do not re-initialise and the parameters are still used
    (and get gradients) in that same first call. log|det| = (positions per channel) * sum(log_scale).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def _view(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))  # (C,) -> (1, C, 1, ...) for (B, C, ...)

    @torch.no_grad()
    def _init(self, x: torch.Tensor) -> None:
        dims = [0] + list(range(2, x.dim()))  # all but the channel dim
        if x.device.type == "meta" or x.numel() // x.shape[1] < 2:
            return  # one value per channel: no variance to normalise by
        mean, std = x.mean(dim=dims), x.std(dim=dims, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self._init(x)
        y = (x + self._view(self.bias, x)) * torch.exp(self._view(self.log_scale, x))
        positions = x[0, 0].numel()
        return y, (positions * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self._view(self.log_scale, y)) - self._view(self.bias, y)


class AffineCoupling(nn.Module):
    """RealNVP affine coupling with a binary mask m (Dinh et al. 2017, eq. 9).

    y = m * x + (1 - m) * (x * exp(s(m*x)) + t(m*x)),  log|det| = sum((1 - m) * s)
    x = m * y + (1 - m) * (y - t(m*y)) * exp(-s(m*y))
    The parts kept by the mask condition the rest, so the Jacobian is triangular. The log-scale is
    bounded: s = scale * tanh(raw), so no single step can blow up exp(s).
    """

    def __init__(self, net: nn.Module, mask: torch.Tensor, channels: int):
        super().__init__()
        self.net = net  # (B, C, ...) -> (B, 2C, ...): raw log-scale and translation
        self.register_buffer("mask", mask, persistent=False)
        self.scale = nn.Parameter(torch.ones(channels))

    def _st(self, x_kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(x_kept).chunk(2, dim=1)
        scale = self.scale.view(1, -1, *([1] * (x_kept.dim() - 2)))
        keep = 1 - self.mask
        return keep * scale * torch.tanh(raw_s), keep * t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(self.mask * x)
        y = self.mask * x + (1 - self.mask) * (x * torch.exp(s) + t)
        return y, s.flatten(1).sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self._st(self.mask * y)
        return self.mask * y + (1 - self.mask) * (y - t) * torch.exp(-s)


def squeeze2x2(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block of pixels becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze2x2(y: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H, W) -> (B, C, 2H, 2W), the inverse of :func:`squeeze2x2`."""
    b, c4, h, w = y.shape
    y = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)  # (B, C, H, 2, W, 2)
    return y.reshape(b, c4 // 4, 2 * h, 2 * w)


class Squeeze(nn.Module):
    """Squeeze as a flow layer (a permutation of values: log|det| = 0); ``undo`` flips it."""

    def __init__(self, undo: bool = False):
        super().__init__()
        self.undo = undo

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (unsqueeze2x2(x) if self.undo else squeeze2x2(x)), x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return squeeze2x2(y) if self.undo else unsqueeze2x2(y)


def _mlp(dim: int, hidden: int, n_hidden: int) -> nn.Module:
    """(B, D) -> (B, 2D); the last layer is zero-initialised so the coupling starts as identity."""
    layers: list[nn.Module] = []
    width = dim
    for _ in range(n_hidden):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    last = nn.Linear(width, 2 * dim)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def _convnet(channels: int, hidden: int) -> nn.Module:
    """(B, C, H, W) -> (B, 2C, H, W) conv net; zero-initialised output as in Glow."""
    last = nn.Conv2d(hidden, 2 * channels, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        last,
    )


class _FlowMixin:
    """``log_prob`` and ``sample`` for any flow with forward(x) -> (z, log_det) and inverse(z)."""

    def _prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        # log N(z; 0, I) = -1/2 (D log 2pi + |z|^2), summed over all but the batch dim
        return -0.5 * (z.pow(2) + _LOG_2PI).flatten(1).sum(dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density log p(x) = log N(f(x); 0, I) + log|det df/dx|, (B,) in nats."""
        z, log_det = self(x)
        return self._prior_log_prob(z) + log_det

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples x = f^{-1}(z), z ~ N(0, I), shape (n, *data_shape)."""
        p = next(self.parameters())
        z = torch.randn((n, *self.data_shape), generator=generator, device=p.device, dtype=p.dtype)
        return self.inverse(z)


class _Stack(nn.Module):
    """Run layers in order (forward) or reverse order (inverse), summing log-dets."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z


# -- models -------------------------------------------------------------------------------------


class RealNVP(_FlowMixin, ParamCount, nn.Module):
    """RealNVP on vectors: [ActNorm ->] coupling, masks alternating even / odd features.

    Odd D works: the masks split ceil(D/2) / floor(D/2) features, and alternate so every feature
    is transformed.
    """

    def __init__(self, config: RealNVPConfig):
        super().__init__()
        self.config = config
        c = config
        even = (torch.arange(c.dim) % 2 == 0).float()
        layers: list[nn.Module] = []
        for k in range(c.n_couplings):
            if c.actnorm:
                layers.append(ActNorm(c.dim))
            mask = even if k % 2 == 0 else 1 - even
            layers.append(AffineCoupling(_mlp(c.dim, c.hidden, c.n_hidden_layers), mask.view(1, -1), c.dim))
        self.flow = _Stack(layers)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.config.dim,)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.dim),)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map data to latent.

        Args:
            x: (B, D) float data.

        Returns:
            z (B, D) latent and log_det (B,) = log|det dz/dx|.
        """
        x = check_tensor(self, x, "B D", D=self.config.dim)
        return self.flow(x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent (B, D) back to data (B, D)."""
        z = check_tensor(self, z, "B D", name="z", D=self.config.dim)
        return self.flow.inverse(z)


class RealNVPImage(_FlowMixin, ParamCount, nn.Module):
    """Multi-scale RealNVP on images (Dinh et al. 2017, section 3.6), without factoring out.

    Per scale: ``n_couplings`` checkerboard couplings (alternating parity), a 2x2 squeeze, then
    ``n_couplings`` channel couplings (alternating halves). After the last scale the squeezes are
    undone so z has x's shape. The paper also factors out half the channels at each scale to
    save compute; at these small sizes all dimensions go through every layer instead.
    """

    def __init__(self, config: RealNVPImageConfig):
        super().__init__()
        self.config = config
        c = config
        layers: list[nn.Module] = []
        ch, size = c.in_channels, c.image_size
        for _ in range(c.n_scales):
            yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
            board = ((yy + xx) % 2 == 0).float().view(1, 1, size, size)
            for k in range(c.n_couplings):
                if c.actnorm:
                    layers.append(ActNorm(ch))
                mask = board if k % 2 == 0 else 1 - board
                layers.append(
                    AffineCoupling(_convnet(ch, c.hidden_channels), mask.expand(1, ch, size, size).clone(), ch)
                )
            layers.append(Squeeze())
            ch, size = ch * 4, size // 2
            first = (torch.arange(ch) < ch // 2).float().view(1, ch, 1, 1)
            for k in range(c.n_couplings):
                if c.actnorm:
                    layers.append(ActNorm(ch))
                mask = first if k % 2 == 0 else 1 - first
                layers.append(
                    AffineCoupling(_convnet(ch, c.hidden_channels), mask.expand(1, ch, size, size).clone(), ch)
                )
        self.flow = _Stack(layers)
        self.unsqueeze = _Stack([Squeeze(undo=True) for _ in range(c.n_scales)])

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.rand(batch_size, *self.data_shape),)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map images to latent.

        Args:
            x: (B, C, H, W) float dequantized images (e.g. in [0, 1)).

        Returns:
            z (B, C, H, W) latent and log_det (B,) = log|det dz/dx|.
        """
        c = self.config
        x = check_tensor(self, x, "B C H W", C=c.in_channels, H=c.image_size, W=c.image_size)
        z, log_det = self.flow(x)
        z, _ = self.unsqueeze(z)
        return z, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent (B, C, H, W) back to images (B, C, H, W)."""
        c = self.config
        z = check_tensor(self, z, "B C H W", name="z", C=c.in_channels, H=c.image_size, W=c.image_size)
        return self.flow.inverse(self.unsqueeze.inverse(z))


# -- presets ------------------------------------------------------------------------------------

_WHEN = "Exact likelihood + sampling: density estimation, anomaly scores, learnt priors"
register(
    "realnvp_2d",
    family="flow",
    model=RealNVP,
    config=RealNVPConfig,
    defaults=dict(dim=2, n_couplings=8, hidden=64, n_hidden_layers=2),
    modalities=("points", "tabular"),
    tasks=("flow",),
    description="RealNVP (Dinh et al. 2017) on 2-D points: 8 affine couplings with alternating masks + ActNorm",
    when_to_use=_WHEN,
)
register(
    "realnvp_tabular",
    family="flow",
    model=RealNVP,
    config=RealNVPConfig,
    defaults=dict(dim=8, n_couplings=6, hidden=128, n_hidden_layers=2),
    modalities=("tabular",),
    tasks=("flow",),
    description="RealNVP on 8 continuous tabular features: 6 affine couplings + ActNorm",
    when_to_use=_WHEN,
)
register(
    "realnvp_image",
    family="flow",
    model=RealNVPImage,
    config=RealNVPImageConfig,
    defaults=dict(in_channels=1, image_size=8, n_scales=1, n_couplings=3, hidden_channels=32),
    modalities=("image",),
    tasks=("flow",),
    description="Multi-scale RealNVP on 1x8x8 digits: checkerboard couplings, squeeze, channel couplings (dequantize pixels first)",
    when_to_use=_WHEN + "; report bits/dim on dequantized pixels",
)
