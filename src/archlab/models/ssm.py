"""State-space sequence models: S4D, Mamba (selective SSM) and a long-convolution stand-in.

When to use: very long sequences with sub-quadratic cost - time series with a long
horizon (the alternative to TCN / Transformer), long documents, audio, streaming
inference where a recurrent state beats re-reading the context. For 10k+ context
lengths with reasonable memory try S4/Hyena (Poli et al. 2023); combine with attention for hybrid models.

Papers: Gu, Goel & Re 2022, "Efficiently Modeling Long Sequences with Structured State Spaces"
(S4); Gu, Gupta, Goel & Re 2022, "On the Parameterization and Initialization of Diagonal State
Space Models" (S4D, used here); Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces". The mixers and their math are in :mod:`archlab.models.ssm_layers`.

Every model is a stack of pre-norm residual blocks x + Dropout(mixer(LayerNorm(x))), with
``mixer`` one of ``s4d`` | ``mamba`` | ``longconv``; all are causal, so the forecaster and the
language model never see the future. Sequences of any length work (S4D builds its kernel for
the input length; long-conv's receptive field is ``kernel_size``).

Presets:
- ``ssm_s4d_classifier`` - S4D classifier for (B, L, F) sequences (e.g. MNIST-1D: L=40, F=1).
- ``longconv_classifier`` - the same with a long causal depthwise convolution.
- ``mamba_classifier`` - the same with Mamba blocks.
- ``ssm_forecaster`` - S4D forecaster: (B, L, F) history -> (B, horizon, F_out).
- ``mamba_lm`` - character-level Mamba language model: tokens (B, L) -> logits (B, L, V).
- ``s4d_lm`` - the same with S4D blocks.
"""

from __future__ import annotations

from typing import Any, Literal

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
from archlab.layers.checks import check_index_range, check_tensor
from archlab.layers.params import ParamCount
from archlab.models.ssm_layers import LongConv, S4DLayer, SelectiveSSM
from archlab.registry import register

# -- configs ------------------------------------------------------------------------------------


class SSMConfig(ArchConfig):
    """Backbone fields shared by every SSM model."""

    mixer: Literal["s4d", "mamba", "longconv"] = Field(
        "s4d",
        description="Sequence mixer of each block: S4D (LTI, FFT conv), Mamba (selective scan) or long depthwise conv.",
    )
    d_model: Width = Field(64, ge=1, description="Channels H carried through the blocks.")
    n_layers: Depth = Field(2, ge=1, description="Residual blocks.")
    d_state: Width = Field(
        64, ge=1, description="State size N per channel (S4D: even, N/2 complex conjugate pairs; Mamba: typically 16)."
    )
    dt_min: float = Field(1e-3, gt=0, description="Smallest initial step size dt (S4D, Mamba).")
    dt_max: float = Field(1e-1, gt=0, description="Largest initial step size dt; larger dt = shorter memory.")
    expand: Width = Field(2, ge=1, description="Mamba: inner width = expand * d_model.")
    d_conv: Extent = Field(4, ge=1, description="Mamba: width of the causal depthwise conv before the scan.")
    kernel_size: Extent = Field(64, ge=1, description="Long conv: kernel length = receptive field per block.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on each block's output.")
    seq_len: Extent = Field(40, ge=1, description="Sequence length of example_input (any length is accepted).")

    @model_validator(mode="after")
    def _check(self):
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must be <= dt_max={self.dt_max}")
        if self.mixer == "s4d" and self.d_state % 2:
            raise ValueError(f"d_state={self.d_state} must be even for mixer='s4d' (N/2 complex conjugate pairs)")
        return self


class SSMClassifierConfig(SSMConfig):
    """Config of a sequence classifier."""

    in_features: Size = Field(1, ge=1, description="Features per time step F.")
    num_classes: Size = Field(10, ge=1, description="Classes.")
    pool: Literal["mean", "last"] = Field(
        "mean", description="Sequence pooling before the head: mean over time or the last (causal) step."
    )


class SSMForecasterConfig(SSMConfig):
    """Config of a multi-step forecaster."""

    in_features: Size = Field(1, ge=1, description="Features per time step F of the history.")
    out_features: Size = Field(1, ge=1, description="Forecast targets per step.")
    horizon: Size = Field(12, ge=1, description="Steps forecast after the end of the history.")


class SSMLMConfig(SSMConfig):
    """Config of a language model."""

    vocab_size: Size = Field(65, ge=2, description="Token vocabulary (65 = tiny-shakespeare characters).")


# -- backbone -----------------------------------------------------------------------------------


def make_mixer(c: SSMConfig) -> nn.Module:
    if c.mixer == "s4d":
        return S4DLayer(c.d_model, c.d_state, c.dt_min, c.dt_max)
    if c.mixer == "mamba":
        return SelectiveSSM(c.d_model, c.d_state, c.expand, c.d_conv, c.dt_min, c.dt_max)
    return LongConv(c.d_model, c.kernel_size)


class SSMBlock(nn.Module):
    """x + Dropout(mixer(LayerNorm(x))): pre-norm residual around one causal mixer."""

    def __init__(self, mixer: nn.Module, d_model: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.mixer(self.norm(x)))

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer.step(self.norm(x_t), state)
        return x_t + self.drop(y), state


class SSMBackbone(nn.Module):
    """``n_layers`` SSM blocks and a final LayerNorm: (B, L, H) -> (B, L, H), causal."""

    def __init__(self, c: SSMConfig):
        super().__init__()
        self.blocks = nn.ModuleList(SSMBlock(make_mixer(c), c.d_model, c.dropout) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def step(self, x_t: torch.Tensor, states: list | None = None) -> tuple[torch.Tensor, list]:
        """x_t (B, H) -> (B, H), one block state per layer (None = start of sequence)."""
        states = states if states is not None else [None] * len(self.blocks)
        new = []
        for block, s in zip(self.blocks, states):
            x_t, s = block.step(x_t, s)
            new.append(s)
        return self.norm(x_t), new


# -- models -------------------------------------------------------------------------------------


class SSMClassifier(ParamCount, nn.Module):
    """Linear encoder -> SSM backbone -> mean / last pooling -> Linear head."""

    def __init__(self, config: SSMClassifierConfig):
        super().__init__()
        self.config = config
        self.encoder = nn.Linear(config.in_features, config.d_model)
        self.backbone = SSMBackbone(config)
        self.head = nn.Linear(config.d_model, config.num_classes)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.seq_len, self.config.in_features),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify sequences.

        Args:
            x: (B, L, F) float, F = in_features, any L >= 1.

        Returns:
            (B, num_classes) logits.
        """
        x = check_tensor(self, x, "B L F", F=self.config.in_features)
        h = self.backbone(self.encoder(x))  # (B, L, H)
        h = h.mean(dim=1) if self.config.pool == "mean" else h[:, -1]
        return self.head(h)


class SSMForecaster(ParamCount, nn.Module):
    """Linear encoder -> causal SSM backbone -> last state -> Linear to horizon * out_features."""

    def __init__(self, config: SSMForecasterConfig):
        super().__init__()
        self.config = config
        self.encoder = nn.Linear(config.in_features, config.d_model)
        self.backbone = SSMBackbone(config)
        self.head = nn.Linear(config.d_model, config.horizon * config.out_features)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.seq_len, self.config.in_features),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast the next ``horizon`` steps from a history.

        Args:
            x: (B, L, F) float history, F = in_features.

        Returns:
            (B, horizon, out_features) forecasts.
        """
        c = self.config
        x = check_tensor(self, x, "B L F", F=c.in_features)
        h = self.backbone(self.encoder(x))[:, -1]  # (B, H): summary of the whole history
        return self.head(h).view(-1, c.horizon, c.out_features)  # (B, horizon*F_out) -> (B, horizon, F_out)


class SSMLanguageModel(ParamCount, nn.Module):
    """Token embedding -> causal SSM backbone -> Linear to vocabulary logits.

    ``step(token, states)`` runs one token at a time with constant memory - the recurrent view
    of the same network - for streaming generation.
    """

    def __init__(self, config: SSMLMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.backbone = SSMBackbone(config)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randint(0, self.config.vocab_size, (batch_size, self.config.seq_len)),)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits for every position.

        Args:
            tokens: (B, L) long ids in [0, vocab_size).

        Returns:
            (B, L, vocab_size) logits; position t sees tokens[:, :t+1] only.
        """
        tokens = check_tensor(self, tokens, "B L", name="tokens", dtype="long")
        check_index_range(self, tokens, self.config.vocab_size)
        return self.head(self.backbone(self.embed(tokens)))

    def step(self, token: torch.Tensor, states: list | None = None) -> tuple[torch.Tensor, list]:
        """One token (B,) long -> logits (B, vocab_size) and the new per-layer states."""
        token = check_tensor(self, token, "B", name="token", dtype="long")
        check_index_range(self, token, self.config.vocab_size, name="token")
        h, states = self.backbone.step(self.embed(token), states)
        return self.head(h), states


# -- presets ------------------------------------------------------------------------------------

_WHEN_SEQ = "Long sequences at sub-quadratic cost: S4/SSM, the time-series alternative to TCN/Transformer"
_CLS = dict(in_features=1, num_classes=10, seq_len=40, d_model=64, n_layers=2)
register(
    "ssm_s4d_classifier",
    family="ssm",
    model=SSMClassifier,
    config=SSMClassifierConfig,
    defaults=dict(_CLS, mixer="s4d", d_state=64),
    modalities=("time_series",),
    tasks=("classification",),
    description="S4D (Gu et al. 2022) sequence classifier: 2 diagonal-SSM blocks, FFT convolution, mean pooling",
    when_to_use=_WHEN_SEQ,
)
register(
    "longconv_classifier",
    family="ssm",
    model=SSMClassifier,
    config=SSMClassifierConfig,
    defaults=dict(_CLS, mixer="longconv", kernel_size=64),
    modalities=("time_series",),
    tasks=("classification",),
    description="Long-convolution SSM proxy: causal depthwise conv (k=64) blocks, mean pooling",
    when_to_use=_WHEN_SEQ + "; the simplest long-range baseline",
)
register(
    "mamba_classifier",
    family="ssm",
    model=SSMClassifier,
    config=SSMClassifierConfig,
    defaults=dict(_CLS, mixer="mamba", d_state=16),
    modalities=("time_series",),
    tasks=("classification",),
    description="Mamba (Gu & Dao 2023) sequence classifier: selective-scan blocks, mean pooling",
    when_to_use=_WHEN_SEQ + "; input-dependent (selective) memory",
)
register(
    "ssm_forecaster",
    family="ssm",
    model=SSMForecaster,
    config=SSMForecasterConfig,
    defaults=dict(in_features=1, out_features=1, horizon=12, seq_len=48, mixer="s4d", d_model=64, n_layers=2),
    modalities=("time_series",),
    tasks=("forecasting", "regression"),
    description="S4D forecaster: causal diagonal-SSM blocks, last state -> horizon x targets",
    when_to_use="Time series with a long horizon: S4/SSM, the alternative to TCN / Transformer",
)
register(
    "mamba_lm",
    family="ssm",
    model=SSMLanguageModel,
    config=SSMLMConfig,
    defaults=dict(vocab_size=65, seq_len=32, mixer="mamba", d_model=64, n_layers=2, d_state=16),
    modalities=("text", "time_series"),
    tasks=("language_modeling",),
    description="Character-level Mamba language model (Gu & Dao 2023), streaming step() for generation",
    when_to_use="Text/code generation with long context and constant-memory decoding (SSMs for long sequences)",
)
register(
    "s4d_lm",
    family="ssm",
    model=SSMLanguageModel,
    config=SSMLMConfig,
    defaults=dict(vocab_size=65, seq_len=32, mixer="s4d", d_model=64, n_layers=2, d_state=64),
    modalities=("text", "time_series"),
    tasks=("language_modeling",),
    description="Character-level S4D language model: FFT convolution to train, recurrent step() to generate",
    when_to_use="Text generation with long context (S4 for 10k+ contexts)",
)
