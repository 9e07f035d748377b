"""Autoencoders: compress an input to a small code and reconstruct it.

When to use: anomaly detection, compression, dimensionality
reduction and representation learning on unlabelled data. Train on normal data only with a
reconstruction loss (:mod:`archlab.tasks.reconstruction`); a sample the model reconstructs badly
is unusual (``anomaly_scores`` + ``choose_threshold``). Reference: Hinton & Salakhutdinov,
"Reducing the dimensionality of data with neural networks", Science 2006.

Presets:
- ``autoencoder_784_128_64`` - a two-layer MNIST autoencoder: encoder 784 -> 128 -> ReLU -> 64 (linear code),
  decoder 64 -> 128 -> ReLU -> 784 -> Sigmoid. Inputs are flattened 28x28 images in [0, 1].
- ``autoencoder_784_128`` - a one-layer MNIST autoencoder: encoder Linear(784, 128) -> ReLU (the code is the ReLU
  output), decoder Linear(128, 784) -> Sigmoid.
- ``autoencoder_digits`` - the same shape for scikit-learn's 8x8 digits flattened to 64 values
  scaled to [0, 1]: 64 -> 32 -> ReLU -> 8 and back.
- ``conv_autoencoder`` - convolutional, for 1x28x28 images in [0, 1] (MNIST size): two
  stride-2 3x3 convs (1 -> 16 -> 32 channels, 28 -> 14 -> 7), a Linear to a 32-d code, and the
  mirror image with stride-2 transposed convs. ``image_size`` must be divisible by
  ``2 ** len(channels)`` (28 with two stages, 8 with up to three, ...).

Every autoencoder answers ``encode(x) -> z``, ``decode(z) -> x_hat``; ``forward(x)`` returns the
reconstruction ``x_hat`` with the shape of ``x``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import (
    Activation,
    ArchConfig,
    Extent,
    InitScheme,
    PositiveInts,
    Size,
    Width,
    Widths,
)
from archlab.layers.checks import check_tensor
from archlab.layers.init import init_weights
from archlab.layers.mlp import activation, dense_stack
from archlab.layers.params import ParamCount
from archlab.layers.registry import act_layer
from archlab.registry import register

OutputActivation = Literal["sigmoid", "tanh", "identity"]


# -- configs ------------------------------------------------------------------------------------


class AutoencoderConfig(ArchConfig):
    """Config of a dense (fully connected) autoencoder; the decoder mirrors the encoder."""

    in_features: Size = Field(784, ge=1, description="Size of each (flattened) input vector.")
    hidden_sizes: Widths = Field(
        default_factory=lambda: [128], description="Encoder hidden widths, in order; the decoder uses them reversed."
    )
    latent_dim: Width = Field(64, ge=1, description="Size of the code z.")
    activation: Activation = Field("relu", description="Hidden-layer activation (encoder and decoder).")
    latent_activation: Activation = Field(
        "identity", description="Activation on the code (autoencoder_784_128 uses relu; autoencoder_784_128_64 none)."
    )
    output_activation: OutputActivation = Field(
        "sigmoid",
        description="Output activation: sigmoid for inputs in [0, 1], tanh for [-1, 1], identity for standardised data.",
    )
    init: InitScheme = Field("kaiming", description="Weight init: kaiming for ReLU nets, xavier for tanh.")


class ConvAutoencoderConfig(ArchConfig):
    """Config of a convolutional autoencoder for (C, S, S) images."""

    in_channels: Width = Field(1, ge=1, description="Image channels.")
    image_size: Extent = Field(
        28, ge=2, description="Height = width of the square input images; divisible by 2**len(channels)."
    )
    channels: PositiveInts = Field(
        default_factory=lambda: [16, 32],
        description="Channels of each stride-2 conv stage of the encoder (the decoder mirrors them).",
    )
    latent_dim: Width = Field(32, ge=1, description="Size of the code z.")
    activation: Activation = Field("relu", description="Activation after each conv / transposed conv.")
    norm: Literal["none", "batch"] = Field("none", description="BatchNorm2d after each hidden conv, or none.")
    output_activation: OutputActivation = Field(
        "sigmoid", description="Output activation: sigmoid for pixels in [0, 1], tanh for [-1, 1]."
    )
    init: InitScheme = Field("kaiming", description="Weight init scheme.")

    @model_validator(mode="after")
    def _divisible(self):
        factor = 2 ** len(self.channels)
        if self.image_size % factor:
            raise ValueError(
                f"image_size={self.image_size} must be divisible by 2**len(channels)={factor} "
                f"(channels={self.channels}); pad the images or use fewer stages"
            )
        return self


# -- blocks -------------------------------------------------------------------------------------


def conv_down(in_channels: int, channels: list[int], activation_name: str, norm: str) -> nn.Sequential:
    """Stride-2 3x3 conv stages: (B, C, S, S) -> (B, channels[-1], S / 2**k, S / 2**k)."""
    layers: list[nn.Module] = []
    prev = in_channels
    for c in channels:
        layers += [
            nn.Conv2d(prev, c, 3, stride=2, padding=1),
            nn.BatchNorm2d(c) if norm == "batch" else nn.Identity(),
            activation(activation_name),
        ]
        prev = c
    return nn.Sequential(*layers)


def conv_up(
    channels: list[int], out_channels: int, activation_name: str, norm: str, output_activation: str
) -> nn.Sequential:
    """Mirror of :func:`conv_down` (``channels`` as given to it): each stage doubles H and W."""
    layers: list[nn.Module] = []
    rev = list(reversed(channels))  # e.g. [32, 16]
    for i, c in enumerate(rev):
        last = i == len(rev) - 1
        nxt = out_channels if last else rev[i + 1]
        # kernel 3, padding 1, output_padding 1: exactly doubles the size (7 -> 14 -> 28)
        layers.append(nn.ConvTranspose2d(c, nxt, 3, stride=2, padding=1, output_padding=1))
        if last:
            layers.append(activation(output_activation))
        else:
            layers += [nn.BatchNorm2d(nxt) if norm == "batch" else nn.Identity(), activation(activation_name)]
    return nn.Sequential(*layers)


class ConvCodec(nn.Module):
    """Conv encoder body to a flat feature vector, and a decoder from a flat code back to images.

    Shared by :class:`ConvAutoencoder` and the convolutional VAE; ``config`` is any config with
    ``in_channels, image_size, channels, latent_dim, activation, norm, output_activation``.
    """

    def __init__(self, config: ArchConfig):
        super().__init__()
        c = config
        self.bottom = c.image_size // 2 ** len(c.channels)
        self.bottom_channels = c.channels[-1]
        self.flat = c.channels[-1] * self.bottom * self.bottom
        self.down = conv_down(c.in_channels, list(c.channels), c.activation, c.norm)
        self.from_code = nn.Sequential(nn.Linear(c.latent_dim, self.flat), activation(c.activation))
        self.up = conv_up(list(c.channels), c.in_channels, c.activation, c.norm, c.output_activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, channels[-1] * s * s) with s = S / 2**len(channels)."""
        return self.down(x).flatten(1)  # (B, c, s, s) -> (B, c*s*s)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, S, S)."""
        h = self.from_code(z).view(-1, self.bottom_channels, self.bottom, self.bottom)  # (B, c*s*s) -> (B, c, s, s)
        return self.up(h)


# -- models -------------------------------------------------------------------------------------


class Autoencoder(ParamCount, nn.Module):
    """Dense autoencoder: encoder MLP to a code, mirrored decoder MLP back to the input."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        c = config
        enc_last = c.hidden_sizes[-1] if c.hidden_sizes else c.in_features
        self.encoder = nn.Sequential(
            dense_stack(c.in_features, c.hidden_sizes, act_layer=act_layer(c.activation)),
            nn.Linear(enc_last, c.latent_dim),
            activation(c.latent_activation),
        )
        dec_hidden = list(reversed(c.hidden_sizes))
        dec_last = dec_hidden[-1] if dec_hidden else c.latent_dim
        self.decoder = nn.Sequential(
            dense_stack(c.latent_dim, dec_hidden, act_layer=act_layer(c.activation)),
            nn.Linear(dec_last, c.in_features),
            activation(c.output_activation),
        )
        init_weights(self, c.init, nonlinearity=c.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.rand(batch_size, self.config.in_features),)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> code (B, latent_dim)."""
        check_tensor(self, x, "B F", F=self.config.in_features)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Code (B, latent_dim) -> reconstruction (B, in_features)."""
        check_tensor(self, z, "B Z", name="z", Z=self.config.latent_dim)
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct the input.

        Args:
            x: (B, in_features) float, e.g. flattened 28x28 images in [0, 1].

        Returns:
            x_hat: (B, in_features) reconstruction.
        """
        return self.decoder(self.encode(x))


class ConvAutoencoder(ParamCount, nn.Module):
    """Convolutional autoencoder: stride-2 conv stages -> Linear code -> transposed-conv stages."""

    def __init__(self, config: ConvAutoencoderConfig):
        super().__init__()
        self.config = config
        self.codec = ConvCodec(config)
        self.to_code = nn.Linear(self.codec.flat, config.latent_dim)
        init_weights(self, config.init, nonlinearity=config.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        c = self.config
        return (torch.rand(batch_size, c.in_channels, c.image_size, c.image_size),)

    def _check_image(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return check_tensor(self, x, "B C H W", C=c.in_channels, H=c.image_size, W=c.image_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> code (B, latent_dim)."""
        return self.to_code(self.codec.features(self._check_image(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Code (B, latent_dim) -> reconstruction (B, C, S, S)."""
        check_tensor(self, z, "B Z", name="z", Z=self.config.latent_dim)
        return self.codec.reconstruct(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct the input images.

        Args:
            x: (B, in_channels, image_size, image_size) float, pixels in [0, 1].

        Returns:
            x_hat: (B, in_channels, image_size, image_size) reconstruction.
        """
        return self.codec.reconstruct(self.encode(x))


# -- presets ------------------------------------------------------------------------------------

_WHEN = "Anomaly detection, compression, representation learning on unlabelled data"
_TASKS = ("reconstruction",)
register(
    "autoencoder_784_128_64",
    family="autoencoder",
    model=Autoencoder,
    config=AutoencoderConfig,
    defaults=dict(in_features=784, hidden_sizes=[128], latent_dim=64),
    modalities=("image", "tabular"),
    tasks=_TASKS,
    description="Two-layer MNIST autoencoder: 784-128-64 encoder (ReLU), 64-128-784 decoder, Sigmoid output",
    when_to_use=_WHEN,
)
register(
    "autoencoder_784_128",
    family="autoencoder",
    model=Autoencoder,
    config=AutoencoderConfig,
    defaults=dict(in_features=784, hidden_sizes=[], latent_dim=128, latent_activation="relu"),
    modalities=("image", "tabular"),
    tasks=_TASKS,
    description="One-layer MNIST autoencoder: Linear(784,128)+ReLU encoder, Linear(128,784)+Sigmoid decoder",
    when_to_use=_WHEN,
)
register(
    "autoencoder_digits",
    family="autoencoder",
    model=Autoencoder,
    config=AutoencoderConfig,
    defaults=dict(in_features=64, hidden_sizes=[32], latent_dim=8),
    modalities=("image", "tabular"),
    tasks=_TASKS,
    description="Small dense autoencoder for 8x8 digits (64 values in [0, 1]): 64-32-8-32-64",
    when_to_use=_WHEN,
)
register(
    "conv_autoencoder",
    family="autoencoder",
    model=ConvAutoencoder,
    config=ConvAutoencoderConfig,
    defaults=dict(in_channels=1, image_size=28, channels=[16, 32], latent_dim=32),
    modalities=("image",),
    tasks=_TASKS,
    description="Convolutional autoencoder for 1x28x28 images: convs 16-32 (stride 2), 32-d code",
    when_to_use="Images: anomaly detection / compression where spatial structure matters",
)
