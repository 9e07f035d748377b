"""Config fields and pieces shared by the transformer family and ViT.

:class:`TransformerBaseConfig` holds what every transformer stack has (width, heads, depth, MLP
width, dropout, norm placement); :class:`SequenceConfig` adds a vocabulary, a maximum length and
the kind of positions. :class:`TokenEmbedding` turns token ids into vectors with positions, and
:class:`TransformerStack` is a list of :class:`~archlab.layers.attention.TransformerBlock` with
the final LayerNorm a pre-norm stack needs.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import (
    ArchConfig,
    Depth,
    InitScheme,
    Size,
    Width,
)
from archlab.layers.attention import KVCache, TransformerBlock
from archlab.layers.embeddings import PositionKind, RotaryEmbedding, additive_positions
from archlab.layers.init import init_weights
from archlab.layers.registry import ActLayer, NormLayer, act_layer, norm_layer

TransformerActivation = Literal["gelu", "relu", "silu"]


class TransformerBaseConfig(ArchConfig):
    """Fields shared by every transformer stack."""

    d_model: Width = Field(256, ge=1, description="Width of every token vector (embedding size).")
    n_heads: Width = Field(8, ge=1, description="Attention heads; d_model must be divisible by it.")
    n_layers: Depth = Field(4, ge=1, description="Transformer blocks in the stack.")
    d_ff: Width | None = Field(None, ge=1, description="Hidden width of each block's MLP; None means 4 * d_model.")
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout on attention weights, residual branches and embeddings."
    )
    norm_first: bool = Field(
        True,
        description="Pre-norm (x + f(LN(x)); GPT-2, ViT) if true, post-norm (LN(x + f(x)); BERT, original Transformer) if false.",
    )
    activation: TransformerActivation = Field("gelu", description="MLP activation.")
    bias: bool = Field(True, description="Biases in Linear and LayerNorm layers.")
    norm: Literal["layernorm", "rmsnorm"] = Field(
        "layernorm", description="Norm layer: LayerNorm (GPT-2, BERT, ViT) or RMSNorm (T5, LLaMA; a scale, no shift)."
    )
    norm_eps: float = Field(1e-5, gt=0.0, description="Norm epsilon (BERT uses 1e-12).")
    init: InitScheme = Field("normal", description="Weight init; 'normal' is N(0, 0.02) as in GPT-2 and BERT.")

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        return self

    def layer_classes(self) -> tuple[NormLayer, ActLayer]:
        """The norm and activation classes the blocks take, resolved once from ``norm`` and
        ``activation`` (see :mod:`archlab.layers.registry`)."""
        return norm_layer(self.norm, eps=self.norm_eps, bias=self.bias), act_layer(self.activation)

    @property
    def ff_dim(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class SequenceConfig(TransformerBaseConfig):
    """A transformer over token ids."""

    vocab_size: Size = Field(1000, ge=1, description="Number of token ids; ids must lie in [0, vocab_size).")
    max_seq_len: Size = Field(512, ge=1, description="Longest sequence (context length / block size).")
    pos: PositionKind = Field(
        "learned", description="Positions: learned table, fixed sinusoidal, rotary (RoPE, inside attention) or none."
    )

    @model_validator(mode="after")
    def _rotary_even_heads(self):
        if self.pos == "rotary" and self.head_dim % 2:
            raise ValueError(
                f"pos='rotary' needs an even head size; d_model={self.d_model} / n_heads={self.n_heads} "
                f"= {self.head_dim}"
            )
        return self


class TokenEmbedding(nn.Module):
    """Token ids -> vectors with positions (added, or rotary handed on to attention)."""

    def __init__(
        self,
        config: SequenceConfig,
        *,
        type_vocab_size: int = 0,
        norm: bool = False,
        shared: nn.Embedding | None = None,
    ):
        super().__init__()
        c = config
        # ``shared``: an encoder-decoder's encoder and decoder use one token table (T5, BART).
        self.tok = shared if shared is not None else nn.Embedding(c.vocab_size, c.d_model)
        self.pos = additive_positions(c.pos, c.max_seq_len, c.d_model)
        self.rotary = RotaryEmbedding(c.head_dim, c.max_seq_len) if c.pos == "rotary" else None
        self.types = nn.Embedding(type_vocab_size, c.d_model) if type_vocab_size else None
        self.norm = c.layer_classes()[0](c.d_model) if norm else None
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, tokens: torch.Tensor, offset: int = 0, token_types: torch.Tensor | None = None):
        """(B, T) ids -> ((B, T, C) vectors, rotary (cos, sin) or None)."""
        T = tokens.shape[1]
        x = self.tok(tokens)  # (B, T) -> (B, T, C)
        if self.pos is not None:
            x = x + self.pos(T, offset)  # (B, T, C) + (T, C)
        if self.types is not None:
            if token_types is None:
                token_types = torch.zeros_like(tokens)
            x = x + self.types(token_types)
        if self.norm is not None:
            x = self.norm(x)
        rope = self.rotary(T, offset) if self.rotary is not None else None
        return self.dropout(x), rope


class TransformerStack(nn.Module):
    """``n_layers`` blocks, then a final norm for pre-norm stacks (post-norm blocks already
    end in one)."""

    def __init__(self, config: TransformerBaseConfig, n_layers: int, *, cross_attention: bool = False):
        super().__init__()
        c = config
        norm, act = c.layer_classes()
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.d_model,
                c.n_heads,
                c.ff_dim,
                dropout=c.dropout,
                norm_first=c.norm_first,
                act_layer=act,
                norm_layer=norm,
                bias=c.bias,
                cross_attention=cross_attention,
            )
            for _ in range(n_layers)
        )
        self.norm = norm(c.d_model) if c.norm_first else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask=None,
        is_causal=False,
        rope=None,
        cache: KVCache | None = None,
        memory=None,
        memory_mask=None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        for i, block in enumerate(self.blocks):
            x = block(
                x,
                attn_mask=attn_mask,
                is_causal=is_causal,
                rope=rope,
                cache=cache.self_attn[i] if cache is not None else None,
                memory=memory,
                memory_mask=memory_mask,
                cross_cache=cache.cross_attn[i] if cache is not None else None,
            )
        return self.norm(x)


def init_transformer(model: nn.Module, scheme: str, *, residual_layers: int | None = None) -> None:
    """Initialise with ``scheme``; with ``residual_layers``, the projections that end a residual
    branch get std 0.02 / sqrt(2 * n_layers) (GPT-2: keeps the residual stream's variance from
    growing with depth)."""
    init_weights(model, scheme, nonlinearity="relu")
    if scheme != "normal" or not residual_layers:
        return
    std = 0.02 / math.sqrt(2 * residual_layers)
    for name, p in model.named_parameters():
        if name.endswith(("attn.proj.weight", "mlp.fc2.weight")):
            nn.init.normal_(p, 0.0, std)
