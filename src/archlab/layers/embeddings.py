"""Position information for sequence models: learned, sinusoidal and rotary.

- ``learned`` - a trainable table of ``max_len`` position vectors added to the token embeddings
  (BERT, GPT-2, ViT).
- ``sinusoidal`` - the fixed sin/cos table of Vaswani et al. 2017, "Attention Is All You Need";
  no parameters, added to the token embeddings.
- ``rotary`` - RoPE (Su et al. 2021, "RoFormer"): rotates each query/key pair of channels by an
  angle proportional to the position, so attention scores depend on relative position. It acts
  inside attention (see :func:`apply_rotary`), not on the embeddings.
- ``none`` - no position information (a bag-of-tokens encoder).

Additive kinds take an ``offset`` so a decoder fed one token at a time from a KV cache sees the
same positions as one fed the whole sequence.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

PositionKind = Literal["learned", "sinusoidal", "rotary", "none"]


class LearnedPositionalEmbedding(nn.Module):
    """A trainable (max_len, dim) table; ``forward(T, offset)`` returns rows offset..offset+T-1."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len = max_len
        self.table = nn.Embedding(max_len, dim)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        pos = torch.arange(offset, offset + length, device=self.table.weight.device)  # (T,)
        return self.table(pos)  # (T, C)


def sinusoidal_embedding(
    positions: torch.Tensor, dim: int, *, max_period: float = 10000.0, interleave: bool = False
) -> torch.Tensor:
    """sin/cos of ``positions`` at geometrically spaced frequencies (Vaswani et al. 2017).

    With w_i = max_period^(-2i/dim): ``interleave=True`` gives PE[..., 2i] = sin(p w_i),
    PE[..., 2i+1] = cos(p w_i) (the Transformer's table; an odd ``dim`` has one fewer cos column);
    ``interleave=False`` gives [sin(p w_0..), cos(p w_0..)] halves (the DDPM time embedding,
    ``dim`` even).

    Args:
        positions: (...,) positions or diffusion timesteps (any numeric dtype).
        dim: size of each embedding.

    Returns:
        (..., dim) float32.
    """
    inv_freq = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) * (-math.log(max_period) / dim)
    )  # (ceil(dim/2),)
    args = positions.float()[..., None] * inv_freq  # (..., 1) * (F,) -> (..., F)
    if not interleave:
        if dim % 2:
            raise ValueError(f"a sin/cos embedding in halves needs an even dim; got dim={dim}")
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (..., dim)
    out = torch.zeros(*args.shape[:-1], dim, device=positions.device)
    out[..., 0::2] = torch.sin(args)
    out[..., 1::2] = torch.cos(args[..., : dim // 2])  # odd dim: one fewer cos column
    return out


def sinusoidal_table(max_len: int, dim: int) -> torch.Tensor:
    """The (max_len, dim) table PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    return sinusoidal_embedding(torch.arange(max_len), dim, interleave=True)


class SinusoidalTimeEmbedding(nn.Module):
    """Diffusion step ``t`` (B,) -> (B, dim): :func:`sinusoidal_embedding` in sin/cos halves, as
    in Ho et al. 2020 "Denoising Diffusion Probabilistic Models". No parameters: the learnt part
    is the MLP that follows it."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim={dim} must be even (half sin, half cos)")
        self.dim = dim
        self.max_period = max_period

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return sinusoidal_embedding(t, self.dim, max_period=self.max_period)  # (B,) -> (B, dim)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sin/cos positions (Vaswani et al. 2017). No parameters; the table is recomputed,
    not saved (a non-persistent buffer), so checkpoints stay small."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        return self.table[offset : offset + length]  # (T, C)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021) for heads of size ``head_dim``.

    ``forward(T, offset)`` returns ``(cos, sin)``, each (T, head_dim), for :func:`apply_rotary`.
    Channel pairs are (i, i + head_dim/2), the "rotate half" layout of GPT-NeoX and LLaMA.
    """

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim; got head_dim={head_dim}")
        self.max_len = max_len
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (L, hs/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, hs/2) -> (L, hs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, length: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[offset : offset + length], self.sin[offset : offset + length]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``x`` (B, nh, T, hs) by position; ``cos``/``sin`` are (T, hs)."""
    return (x * cos + _rotate_half(x) * sin).to(x.dtype)


def padded_tokens_example(batch_size: int, vocab_size: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Example ``(tokens (B, T) long, padding_mask (B, T) bool)``, T <= 16; the first row ends in padding."""
    T = min(16, max_len)
    tokens = torch.randint(0, vocab_size, (batch_size, T))
    padding = torch.zeros(batch_size, T, dtype=torch.bool)
    padding[0, T - T // 4 :] = True
    return tokens, padding


def additive_positions(kind: str, max_len: int, dim: int) -> nn.Module | None:
    """The module adding positions to embeddings for ``kind``; None for ``rotary``/``none``."""
    if kind == "learned":
        return LearnedPositionalEmbedding(max_len, dim)
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(max_len, dim)
    if kind in ("rotary", "none"):
        return None
    raise ValueError(f"unknown position kind {kind!r}; choose from learned, sinusoidal, rotary, none")
